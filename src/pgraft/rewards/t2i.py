"""Text-to-image rewards r(images, prompts): VQAScore (t2v-metrics, optional extra), an external command, a cheap one.

Every reward takes uint8 images (n, H, W, 3), one prompt per image and the domain's reward settings, and
returns n finite floats. Heavy libraries are imported when a reward runs. The `subprocess` reward lets a
reward live in another process or Python environment (e.g. t2v-metrics' own): it writes the images in
a few .npz shards and runs a command that writes the scores back as JSON.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from pgraft.errors import ArtifactError, ConfigError
from pgraft.registry import Registry

REWARDS: Registry = Registry("text-to-image reward")
VQA_QUESTION = 'Does this figure show "{}"? Please answer yes or no.'  # t2v-metrics' default VQAScore question
_VQA_MODELS: dict = {}


def brightness(images: np.ndarray, prompts: list[str], cfg) -> np.ndarray:
    """Mean pixel value in [0, 1]: a cheap reward with no model (tests, smoke runs)."""
    return images.reshape(len(images), -1).astype(np.float64).mean(axis=1) / 255.0


def vqascore(images: np.ndarray, prompts: list[str], cfg) -> np.ndarray:
    """P(VQA model answers "Yes" to the question about the prompt), with t2v-metrics 3.0's CLIP-FlanT5."""
    try:
        import t2v_metrics
    except ImportError as err:
        raise ConfigError("sd2.reward.name='vqascore' needs the optional extra 'vqa' (t2v-metrics==3.0): "
                          "pip install -e '.[vqa]'; or score in another environment with sd2.reward.name="
                          "'subprocess' and sd2.reward.command (see scripts/vqascore_command.py)") from err
    if cfg.vqa_model not in _VQA_MODELS:
        _VQA_MODELS[cfg.vqa_model] = t2v_metrics.VQAScore(model=cfg.vqa_model)
    model = _VQA_MODELS[cfg.vqa_model]
    from PIL import Image

    with tempfile.TemporaryDirectory(prefix="pgraft-vqa-") as tmp:  # t2v-metrics reads images from files
        paths = []
        for i, img in enumerate(images):
            paths.append(str(Path(tmp) / f"{i}.png"))
            Image.fromarray(img).save(paths[-1])
        pairs = [{"images": [p], "texts": [t]} for p, t in zip(paths, prompts)]
        scores = model.batch_forward(dataset=pairs, batch_size=cfg.batch_size)  # (n, 1, 1)
    return np.asarray(scores.float().cpu()).reshape(len(images))


def write_shards(directory: Path, images: np.ndarray, prompts: list[str], shard_size: int) -> list[Path]:
    """images + prompts as shard_00000.npz, ... (arrays 'images' uint8 (m, H, W, 3), 'prompts', 'index')."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for j, start in enumerate(range(0, len(images), shard_size)):
        stop = min(start + shard_size, len(images))
        paths.append(directory / f"shard_{j:05d}.npz")
        np.savez(paths[-1], images=images[start:stop], prompts=np.asarray(prompts[start:stop], dtype=str),
                 index=np.arange(start, stop, dtype=np.int64))
    return paths


def external(images: np.ndarray, prompts: list[str], cfg) -> np.ndarray:
    """Run `cfg.command + [shard_dir, scores.json]`; the command writes one score per image, in shard order,
    as a JSON list (or {"scores": [...]})."""
    if not cfg.command:
        raise ConfigError("sd2.reward.command: the 'subprocess' reward needs a command (a list: program, arguments)")
    with tempfile.TemporaryDirectory(prefix="pgraft-reward-") as tmp:
        shards, out = Path(tmp) / "shards", Path(tmp) / "scores.json"
        write_shards(shards, images, prompts, cfg.batch_size)
        try:
            proc = subprocess.run([*cfg.command, str(shards), str(out)], capture_output=True, text=True,
                                  timeout=cfg.timeout_s)
        except (OSError, subprocess.TimeoutExpired) as err:
            raise ConfigError(f"sd2.reward.command={cfg.command}: could not run ({type(err).__name__}: {err})") from err
        if proc.returncode != 0:
            raise ConfigError(f"sd2.reward.command={cfg.command}: exited {proc.returncode}: {proc.stderr[-2000:]}")
        try:
            scores = json.loads(out.read_text())
        except (OSError, ValueError) as err:
            raise ArtifactError(f"sd2.reward.command={cfg.command}: no readable JSON scores in {out.name} "
                                f"({type(err).__name__}: {err})") from err
    scores = scores.get("scores") if isinstance(scores, dict) else scores
    try:
        r = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ArtifactError(f"sd2.reward.command={cfg.command}: scores are not numbers ({err})") from err
    if r.shape != (len(images),):
        raise ArtifactError(f"sd2.reward.command={cfg.command}: wrote {r.size} scores for {len(images)} images")
    return r


REWARDS.register("vqascore", vqascore)
REWARDS.register("brightness", brightness)
REWARDS.register("subprocess", external)
