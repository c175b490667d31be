"""Model checkpoints: a network's safetensors weights beside a config.json that rebuilds it (no pickle)."""

from __future__ import annotations

from pathlib import Path

from pgraft.errors import ArtifactError
from pgraft.io import load_weights, read_json, save_weights, write_json
from pgraft.seeds import base_index


def save_model(out_dir: Path, model, domain: str, name: str = "model", meta: dict | None = None) -> None:
    """Write `name`.safetensors and config.json (the domain, the network's `config`, `meta`) into out_dir."""
    save_weights(out_dir / f"{name}.safetensors", model.state_dict(), metadata={"domain": domain})
    write_json(out_dir / "config.json", {"domain": domain, "model": model.config, **(meta or {})})


def base_name(model_dir: Path, seed: int) -> str:
    """The weights file (without .safetensors) of the base model that `seed` uses: base `seed mod base_models`,
    the count recorded in the directory's config.json by pretrain (`model` is base 0, `model_base<b>` base b)."""
    count = int(read_json(Path(model_dir) / "config.json").get("base_models", 1))
    b = base_index(seed, count)
    return "model" if b == 0 else f"model_base{b}"


def load_base(model_dir: Path, domain, seed: int):
    """The base model of one seed from a pretrain directory (one base, or several independently trained ones)."""
    return load_model(model_dir, domain, name=base_name(model_dir, seed))


def load_model(model_dir: Path, domain, name: str = "model", build=None):
    """Build the domain's network (or `build(config)`) from `config.json`, load `name`.safetensors (no pickle)."""
    model_dir = Path(model_dir)
    cfg = read_json(model_dir / "config.json")
    if cfg.get("domain") != domain.name:
        raise ArtifactError(f"{model_dir}: model of domain {cfg.get('domain')!r}, expected {domain.name!r}")
    model = (build or domain.model_from_config)(cfg["model"])
    state = load_weights(model_dir / f"{name}.safetensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ArtifactError(f"{model_dir}/{name}.safetensors: weights do not fit the model ({err})") from err
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
