"""Stable Diffusion 2 + LoRA on a tiny random-weight model (no download): stages, stitched sampling, rewards."""

from __future__ import annotations

import copy
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pgraft import cli, domains
from pgraft.config import ConfigError, SamplerParams, parse_params
from pgraft.io import load_weights
from pgraft.rewards.t2i import REWARDS
from pgraft.stages.common import load_model, save_model

from pipeline_helpers import ROOT, run_all, write_params


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


# --- the paper's SD2 sweep (configs/sd2_paper.yaml): validation, the GPU-time estimate, the generated pipeline ---

PAPER = ROOT / "configs" / "sd2_paper.yaml"


def _paper(tiny_sd2, tmp_path, shrink: bool = False) -> Path:
    """configs/sd2_paper.yaml on the tiny random model in tmp_path/configs (with its prompt file); shrunk: tiny
    sizes (64x64 images, 4 sampler steps, still 5 truncation points and 3 seeds), 2 prompts, a cheap reward."""
    raw = yaml.safe_load(PAPER.read_text())
    raw["sd2"]["model"]["pretrained"] = str(tiny_sd2)
    (tmp_path / "configs").mkdir(exist_ok=True)
    shutil.copytree(ROOT / "configs" / "prompts", tmp_path / "configs" / "prompts", dirs_exist_ok=True)
    if shrink:
        (tmp_path / "configs" / "two.txt").write_text("a red apple on a table\ntwo cats on a sofa\n")
        raw.update(truncation_grid=[0, 1, 2, 3, 4])
        raw["sampler"]["num_steps"] = 4
        raw["sample"].update(num_groups=4, reference_size=100, batch_size=4)
        raw["finetune"].update(budgets=[2, 4], batch_size=4)
        raw["evaluate"]["num_samples"] = 10
        raw["ddpo"].update(checkpoints=[32, 64], prompts_per_batch=2, samples_per_prompt=16, minibatch_size=8)
        raw["sd2"]["model"].update(resolution=64, precision="fp32", device="cpu", guidance_scale=3.0)
        raw["sd2"]["prompts"]["path"] = "configs/two.txt"
        raw["sd2"]["reward"].update(name="brightness", batch_size=4, chunk_size=8)
    return write_params(tmp_path / "configs" / "sd2_paper.yaml", raw)


def test_paper_config_is_the_papers_sweep():
    """As shipped: SD2-base + LoRA, VQAScore, a GenAI-Bench-style prompt file, 5 truncation points with 0 and N,
    >= 3 seeds, and a DDPO checkpoint at GRAFT's reward evaluations."""
    from pgraft.config import load_params
    from pgraft.domains.sd2 import read_prompts

    p = load_params(PAPER)
    assert p.domains == ["sd2"] and p.ddpo.domains == ["sd2"] and len(p.seeds) >= 3
    assert len(p.truncation_grid) == 5 and p.truncation_grid[0] == 0 and p.truncation_grid[-1] == p.sampler.num_steps
    assert p.sd2.model.pretrained == "stabilityai/stable-diffusion-2-base" and p.sd2.reward.name == "vqascore"
    assert p.sample.num_groups * p.group_size("sd2") * p.finetune.rounds in p.ddpo.checkpoints
    assert len(read_prompts(str(ROOT / p.sd2.prompts.path))) >= 4


def test_paper_config_errors_name_the_key_and_file(tiny_sd2, tmp_path, monkeypatch, capsys):
    """A bad key, a missing prompt file or base model stops `pipeline use` before it writes anything."""
    monkeypatch.chdir(tmp_path)
    path = _paper(tiny_sd2, tmp_path)
    good = path.read_text()
    cases = {"sd2.model.lora_rnk": good.replace("lora_rank:", "lora_rnk:"),
             "sd2.prompts.path": good.replace("configs/prompts/genai_bench_example.json", "configs/none.json"),
             "sd2.model.pretrained": good.replace(str(tiny_sd2), str(tmp_path / "no-model"))}
    for key, text in cases.items():
        path.write_text(text)
        assert cli.main(["pipeline", "use", "--params", str(path)]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and key in err, err
    assert not (tmp_path / "params.yaml").exists() and not (tmp_path / "dvc.yaml").exists()


def test_paper_config_applied_generates_the_sd2_pipeline(tiny_sd2, tmp_path, monkeypatch, capsys):
    """`pgraft pipeline use` makes the file params.yaml and writes dvc.yaml: every sd2 stage over the paper grid."""
    from pgraft.pipeline.table import BY_NAME, instances

    monkeypatch.chdir(tmp_path)
    path = _paper(tiny_sd2, tmp_path)
    assert cli.main(["pipeline", "use", "--params", str(path)]) == 0
    assert "6 training and 2 held-out prompts" in capsys.readouterr().out
    assert (tmp_path / "params.yaml").read_text() == path.read_text()
    stages = yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["validate", "pretrain-sd2", "sample-sd2", "reward-sd2", "filter-sd2", "finetune-sd2",
                            "evaluate-sd2", "variance-sd2", "ddpo-sd2", "evaluate_ddpo-sd2", "aggregate",
                            "figures"]
    assert stages["finetune-sd2"]["matrix"] == {"seed": "${seeds}", "k": "${truncation_grid}"}
    raw = yaml.safe_load(path.read_text())
    jobs = {name: list(instances(BY_NAME[name], raw)) for name in ("sample", "finetune", "evaluate", "ddpo")}
    assert sorted({j["k"] for j in jobs["finetune"]}) == [0, 10, 20, 30, 40]
    assert [len(jobs[n]) for n in ("sample", "finetune", "evaluate", "ddpo")] == [3, 15, 15, 3]


def _estimate(argv, capsys) -> tuple[int, dict, str]:
    code = cli.main(["pipeline", "estimate", *argv])
    out = capsys.readouterr()
    rows = {line.split()[0]: line.split()[1:4] for line in out.out.splitlines() if line.split()[:1]
            and line.split()[0].endswith("-sd2")}
    return code, rows, out.out + out.err


def test_estimate_dry_run_prints_jobs_hours_and_totals(tmp_path, capsys):
    """The paper config with the default throughput table: jobs x hours per job per stage, the total; a
    measurement file replaces the values it names; a bad one names its key."""
    from pgraft.pipeline.estimate import DEFAULT_THROUGHPUT as T

    code, rows, out = _estimate(["--params", str(PAPER)], capsys)
    assert code == 0
    jobs = {"pretrain-sd2": 1, "sample-sd2": 3, "reward-sd2": 3, "filter-sd2": 3, "finetune-sd2": 15,
            "variance-sd2": 3, "evaluate-sd2": 15, "ddpo-sd2": 3, "evaluate_ddpo-sd2": 3}
    assert {s: int(r[0]) for s, r in rows.items()} == jobs
    sample_h = (T["startup"] + (1024 * 16 + 2048) * 40 * T["sample_step"]) / 3600
    assert rows["sample-sd2"][1:] == [f"{sample_h:.2f}", f"{3 * sample_h:.2f}"]
    finetune_h = (T["startup"] + 1000 * 16 * T["train_step"]) / 3600  # k > 0; k = 0 trains nothing
    assert rows["finetune-sd2"][1:] == [f"{finetune_h:.2f}", f"{(12 * finetune_h + 3 * T['startup'] / 3600):.2f}"]
    total = float(out.split("total: ")[1].split()[0])
    assert total == pytest.approx(sum(float(r[2]) for s, r in rows.items() if s != "filter-sd2"), abs=0.1)
    assert "GRAFT / P-GRAFT 16,384; DDPO checkpoints [4096, 8192, 16384]" in out

    measured = tmp_path / "throughput.json"
    measured.write_text(json.dumps({"sample_step": 2 * T["sample_step"]}))
    code, rows2, out = _estimate(["--params", str(PAPER), "--throughput", str(measured)], capsys)
    kinds = {line.split()[0]: line.split()[1:3] for line in out.splitlines() if line.startswith("  ")}
    assert code == 0 and kinds["sample_step"] == [f"{2 * T['sample_step']:.4g}", str(measured)]
    assert kinds["train_step"] == [f"{T['train_step']:.4g}", "default"]
    assert float(rows2["sample-sd2"][1]) > 1.9 * float(rows["sample-sd2"][1]) - 0.1
    assert rows2["finetune-sd2"] == rows["finetune-sd2"]
    measured.write_text(json.dumps({"sample_stp": 0.1}))
    code, _, out = _estimate(["--params", str(PAPER), "--throughput", str(measured)], capsys)
    assert code == 2 and f"{measured}: sample_stp: unknown kind of work" in out


def test_estimate_measures_the_configured_model(tiny_sd2, tmp_path, monkeypatch, capsys):
    """--measure on the shrunk paper config: seconds per image of the tiny model on this CPU, written and used."""
    monkeypatch.chdir(tmp_path)
    path = _paper(tiny_sd2, tmp_path, shrink=True)
    code, rows, out = _estimate(["--params", str(path), "--measure", "m.json"], capsys)
    assert code == 0, out
    m = json.loads((tmp_path / "m.json").read_text())
    assert all(m[k] > 0 for k in ("sample_step", "train_step", "reward", "startup"))
    assert m["measured_on"]["device"] == "cpu" and m["measured_on"]["domain"] == "sd2"
    assert "m.json" in out and int(rows["finetune-sd2"][0]) == 15 and int(rows["ddpo-sd2"][0]) == 3
