"""Stable Diffusion 2 + LoRA on a tiny random-weight model (no download): stages, stitched sampling, rewards."""

from __future__ import annotations

import copy
import json
import sys

import numpy as np
import pytest
import torch

from pgraft import domains
from pgraft.config import ConfigError, SamplerParams, parse_params
from pgraft.io import load_weights
from pgraft.rewards.t2i import REWARDS
from pgraft.stages.common import load_model, save_model

from pipeline_helpers import run_all, write_params


def _params(small_params: dict, **sd2_changes) -> dict:
    p = copy.deepcopy(small_params)
    p.update(domains=["sd2"], seeds=[0], truncation_grid=[0, 2, 4])
    p["sampler"]["num_steps"] = 4
    p["inc"]["domains"] = []
    p["ddpo"]["domains"] = []
    p["sample"].update(num_groups=4, reference_size=100)
    p["finetune"].update(budgets=[2, 4], batch_size=4)
    p["evaluate"]["num_samples"] = 10
    for key, value in sd2_changes.items():
        p["sd2"][key].update(value)
    return p


@pytest.fixture
def domain(small_params):
    return domains.build("sd2", parse_params(_params(small_params)))


def _lora_model(domain, scale=0.3):
    """A fine-tuned-like model: a LoRA copy of the base with random (non-zero) adapter weights."""
    base = domain.build_model()
    ft = copy.deepcopy(base)
    with torch.no_grad():
        for p in ft.lora:
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * scale)
    return base, ft


def test_stitched_sampler_matches_the_diffusers_pipeline(domain):
    """k = 0 is exactly StableDiffusionPipeline on the base; k = N is the pipeline with the LoRA on; in between differs."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    from pgraft.models.sd_lora import stitched_sample

    base, ft = _lora_model(domain)
    parts = domain.parts()
    n_steps, prompts = 4, ["a red apple on a wooden table", "two cats sleeping on a sofa"]
    schedule = domain.schedule(SamplerParams(name="ddim", num_steps=n_steps, eta=1.0))
    tokens = torch.as_tensor(domain.tokens(prompts))

    def ours(k):
        g = torch.Generator().manual_seed(0)
        return stitched_sample(ft, base, k, schedule, torch.randn((2, *domain.shape), generator=g), tokens, g)

    pipe = StableDiffusionPipeline(unet=parts.unet, vae=parts.vae, text_encoder=parts.text_encoder,
                                   tokenizer=parts.tokenizer, scheduler=DDIMScheduler.from_config(parts.scheduler_config),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def reference(adapter):
        parts.activate(adapter)
        g = torch.Generator().manual_seed(0)
        latents = torch.randn((2, *domain.shape), generator=g)
        return pipe(prompts, num_inference_steps=n_steps, guidance_scale=domain.params.model.guidance_scale, eta=1.0,
                    latents=latents, generator=g, output_type="latent").images

    base_ref, lora_ref = reference(None), reference(ft.adapter)
    assert torch.equal(ours(0), base_ref)
    assert torch.allclose(ours(n_steps), lora_ref, atol=1e-5)
    middle = ours(2)
    assert not torch.allclose(middle, base_ref, atol=1e-3) and not torch.allclose(middle, lora_ref, atol=1e-3)


def test_checkpoints_hold_only_lora_tensors(domain, tmp_path):
    base, ft = _lora_model(domain)
    save_model(tmp_path, ft, "sd2", name="b1")
    state = load_weights(tmp_path / "b1.safetensors")
    targets = (".to_q.", ".to_k.", ".to_v.", ".to_out.0.")
    assert state and all(k.startswith("unet.") and (".lora_A." in k or ".lora_B." in k) for k in state)
    assert all(any(t in k for t in targets) for k in state)
    unet_numel = sum(p.numel() for p in domain.parts().unet.parameters())
    assert sum(v.numel() for v in state.values()) < 0.2 * unet_numel
    assert sum(p.numel() for p in ft.parameters()) == sum(v.numel() for v in state.values())
    again = load_model(tmp_path, domain, name="b1")
    x, t = torch.randn((3, *domain.shape)), torch.full((3,), 500)
    tokens = torch.as_tensor(domain.tokens(domain.prompts("train")[:3]))
    assert torch.equal(ft(x, t, tokens), again(x, t, tokens))
    assert not torch.allclose(ft(x, t, tokens), base(x, t, tokens))
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))


def test_stage_commands_run_on_the_tiny_model(small_params, tmp_path, monkeypatch):
    """pretrain -> sample -> reward -> filter -> finetune (LoRA) -> evaluate -> aggregate -> figures, real loading code."""
    params = _params(small_params)
    write_params(tmp_path / "params.yaml", params)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path / ".pgraft"))
    run_all(params, tmp_path)
    seed = tmp_path / "results/sd2/seed0"
    with np.load(seed / "samples.npz", allow_pickle=False) as s:
        assert s["x0"].shape == (32, 4, 8, 8) and len(s["prompt"]) == 32
    for k in (2, 4):
        files = sorted(p.name for p in (seed / f"k{k}/finetuned").iterdir())
        assert files == ["b2.safetensors", "b4.safetensors", "config.json", "loss_history.json"]
        state = load_weights(seed / f"k{k}/finetuned/b4.safetensors")
        assert all(".lora_A." in key or ".lora_B." in key for key in state)
    for k in (0, 2, 4):
        metrics = json.loads((tmp_path / f"results/metrics/sd2/seed0/k{k}/evaluate.json").read_text())
        assert np.isfinite(metrics["b4"]["reward_mean"]) and np.isfinite(metrics["b4"]["reward_mean_heldout"])
    k0 = json.loads((tmp_path / "results/metrics/sd2/seed0/k0/evaluate.json").read_text())
    k4 = json.loads((tmp_path / "results/metrics/sd2/seed0/k4/evaluate.json").read_text())
    assert k0["b4"]["reward_mean"] != k4["b4"]["reward_mean"]  # the LoRA was trained and is used
    assert (tmp_path / "results/figures/sd2_samples.png").exists()


def test_vqascore_without_t2v_metrics_names_the_extra(monkeypatch, domain):
    monkeypatch.setitem(sys.modules, "t2v_metrics", None)  # import fails as if the extra were not installed
    with pytest.raises(ConfigError, match=r"extra 'vqa'.*t2v-metrics==3\.0"):
        REWARDS.get("vqascore")(np.zeros((2, 8, 8, 3), np.uint8), ["a", "b"], domain.params.reward)


SCORER = """
import glob, json, sys
import numpy as np
scores = []
for path in sorted(glob.glob(sys.argv[1] + "/*.npz")):
    with np.load(path, allow_pickle=False) as shard:
        for img, prompt in zip(shard["images"], shard["prompts"]):
            scores.append(float(img[..., 0].mean()) + len(str(prompt)))
json.dump({"scores": scores}, open(sys.argv[2], "w"))
"""


def test_subprocess_reward_round_trip(small_params, tmp_path):
    script = tmp_path / "scorer.py"
    script.write_text(SCORER)
    params = _params(small_params, reward={"name": "subprocess", "command": [sys.executable, str(script)],
                                           "batch_size": 3, "chunk_size": 5})
    d = domains.build("sd2", parse_params(params))
    x = torch.randn((7, *d.shape), generator=torch.Generator().manual_seed(0)).numpy()
    prompts = [f"prompt {'x' * i}" for i in range(7)]
    r = d.reward(x, prompts)  # 2 chunks, shards of 3 images
    images = d.images(x)
    assert np.allclose(r, images[..., 0].reshape(7, -1).mean(1) + [len(p) for p in prompts])
    script.write_text("import sys; sys.exit('scorer broke')")
    with pytest.raises(ConfigError, match="sd2.reward.command.*exited 1.*scorer broke"):
        d.reward(x, prompts)


def test_prompt_files_and_split(small_params, tmp_path):
    texts = [f"prompt number {i}" for i in range(8)]
    (tmp_path / "p.txt").write_text("\n".join(texts + ["", texts[0]]))
    (tmp_path / "list.json").write_text(json.dumps([{"id": i, "prompt": t} for i, t in enumerate(texts)]))
    (tmp_path / "map.json").write_text(json.dumps({str(i): {"prompt": t} for i, t in enumerate(texts)}))
    for name in ("p.txt", "list.json", "map.json"):
        d = domains.build("sd2", parse_params(_params(small_params, prompts={"path": str(tmp_path / name)})))
        train, held = d.prompts("train"), d.prompts("heldout")
        assert sorted(train + held) == sorted(texts) and len(held) == 2
    missing = domains.build("sd2", parse_params(_params(small_params, prompts={"path": str(tmp_path / "no.txt")})))
    with pytest.raises(ConfigError, match="sd2.prompts.path"):
        missing.prompts("train")


def test_unloadable_pretrained_names_the_key(small_params, tmp_path):
    (tmp_path / "empty").mkdir()
    for where in (str(tmp_path / "empty"), "no-such-org/no-such-model"):
        d = domains.build("sd2", parse_params(_params(small_params, model={"pretrained": where})))
        with pytest.raises(ConfigError, match="sd2.model.pretrained"):
            d.build_model()
