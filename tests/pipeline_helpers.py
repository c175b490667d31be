"""Run the real stage commands in-process over a shrunk params file (the paths dvc.yaml uses)."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]

from pgraft.stages import (aggregate, correct, ddpo, evaluate, evaluate_flow, figures, filter as filter_stage,
                           finetune, invert, pretrain, reward, sample)


def stage_commands(params: dict, pfile: str = "params.yaml") -> list[tuple[object, list[str]]]:
    cmds = []
    for d in params["domains"]:
        cmds.append((pretrain, ["--domain", d, "--out", f"results/{d}/base",
                                "--metrics", f"results/metrics/{d}/pretrain.json"]))
        for s in params["seeds"]:
            sd, md = f"results/{d}/seed{s}", f"results/metrics/{d}/seed{s}"
            common = ["--domain", d, "--seed", str(s)]
            cmds.append((sample, common + ["--model", f"results/{d}/base", "--out", f"{sd}/samples.npz",
                                           "--reference", f"{sd}/reference.npz", "--metrics", f"{md}/sample.json"]))
            cmds.append((reward, common + ["--model", f"results/{d}/base", "--samples", f"{sd}/samples.npz", "--reference", f"{sd}/reference.npz",
                                           "--out", f"{sd}/rewards.parquet"]))
            cmds.append((filter_stage, common + ["--samples", f"{sd}/samples.npz", "--rewards", f"{sd}/rewards.parquet",
                                                 "--out", f"{sd}/selection.parquet", "--acceptance",
                                                 f"{md}/acceptance.csv", "--metrics", f"{md}/filter.json"]))
            for k in params["truncation_grid"]:
                ck = common + ["--k", str(k)]
                cmds.append((finetune, ck + ["--model", f"results/{d}/base", "--samples", f"{sd}/samples.npz",
                                             "--selection", f"{sd}/selection.parquet", "--out", f"{sd}/k{k}/finetuned"]))
                cmds.append((evaluate, ck + ["--model", f"results/{d}/base", "--finetuned", f"{sd}/k{k}/finetuned",
                                             "--reference", f"{sd}/reference.npz", "--rewards", f"{sd}/rewards.parquet",
                                             "--out", f"{md}/k{k}/evaluate.json", "--gallery", f"{md}/k{k}/gallery.npz"]))
            if d in params.get("ddpo", {}).get("domains", []):
                n_steps = str(params.get("sampler", {}).get("num_steps", 20))
                cmds.append((ddpo, common + ["--model", f"results/{d}/base", "--out", f"{sd}/ddpo/finetuned",
                                             "--metrics", f"{md}/ddpo/train.json"]))
                cmds.append((evaluate, common + ["--k", n_steps, "--model", f"results/{d}/base", "--finetuned",
                                                 f"{sd}/ddpo/finetuned", "--reference", f"{sd}/reference.npz",
                                                 "--rewards", f"{sd}/rewards.parquet", "--out", f"{md}/ddpo/evaluate.json",
                                                 "--gallery", f"{md}/ddpo/gallery.npz"]))
    for d in params.get("inc", {}).get("domains", []):
        cmds.append((pretrain, ["--domain", d, "--out", f"results/{d}/base", "--metrics",
                                f"results/metrics/{d}/pretrain.json", "--features", f"results/{d}/features"]))
        for n in params["inc"]["corrected_steps"]:
            cmds.append((invert, ["--domain", d, "--n", str(n), "--model", f"results/{d}/base", "--out",
                                  f"results/{d}/inc/n{n}/inverted.npz", "--metrics",
                                  f"results/metrics/{d}/inc/n{n}/invert.json"]))
            for s in params["seeds"]:
                cmds.append((correct, ["--domain", d, "--seed", str(s), "--n", str(n), "--inverted",
                                       f"results/{d}/inc/n{n}/inverted.npz", "--out",
                                       f"results/{d}/seed{s}/inc/n{n}/corrector"]))
        for s in params["seeds"]:
            cmds.append((evaluate_flow, ["--domain", d, "--seed", str(s), "--model", f"results/{d}/base",
                                         "--features", f"results/{d}/features", "--correctors-dir",
                                         f"results/{d}/seed{s}/inc", "--out", f"results/metrics/{d}/seed{s}/inc.json"]))
    cmds.append((aggregate, ["--metrics-dir", "results/metrics", "--out", "results/summary.csv",
                             "--plots-dir", "results/plots", "--galleries", "results/galleries.npz"]))
    cmds.append((figures, ["--summary", "results/summary.csv", "--galleries", "results/galleries.npz",
                           "--out", "results/figures"]))
    return [(mod, ["--params", pfile, *args]) for mod, args in cmds]


def run_all(params: dict, workdir: Path) -> None:
    for mod, args in stage_commands(params):
        code = mod.main(args)
        assert code == 0, f"{mod.__name__} {' '.join(args)} exited {code}"


def shrink(raw: dict) -> dict:
    """The real params with every size cut down so the whole pipeline runs in seconds."""
    p = copy.deepcopy(raw)
    p["seeds"] = [0, 1]
    p["sampler"]["num_steps"] = 4
    p["truncation_grid"] = [0, 2, 4]
    p["filter"] = {"name": "top_k", "params": {"m": 8, "k": 2}}
    p["sample"].update(num_groups=16, reference_size=200, batch_size=512)
    p["finetune"].update(budgets=[5, 10], batch_size=32)
    p["evaluate"]["num_samples"] = 100
    p["tracking"]["enabled"] = False
    p["gaussian"]["model"].update(hidden=32, layers=1)
    p["gaussian"]["pretrain"].update(steps=50, batch_size=64)
    p["inc"].update(base_steps=[2, 4], corrected_steps=[2], num_inverted=40, num_samples=40, batch_size=40,
                    iterations=5)
    p["inc"]["corrector"].update(hidden=16, layers=1, steps=10, batch_size=16)
    p["digits_flow"]["model"].update(block_out_channels=[8, 16])
    p["digits_flow"]["pretrain"].update(steps=5, batch_size=16)
    p["digits_flow"]["features"]["steps"] = 20
    if "digits_t2i" in p:
        p["digits_t2i"]["model"].update(hidden=32, layers=1, text_dim=16)
        p["digits_t2i"]["pretrain"].update(steps=5, batch_size=16)
        p["digits_t2i"]["judges"]["steps"] = 30
        p["digits_t2i"]["features"]["steps"] = 20
        p["digits_t2i"].pop("finetune", None)
    if "sd2" in p:  # pretrained stays as given: tests point it at a tiny random model (conftest tiny_sd2)
        p["sd2"]["model"].update(resolution=64, precision="fp32", device="cpu", guidance_scale=3.0)
        p["sd2"]["reward"].update(name="brightness", batch_size=32, chunk_size=64)
    if "ddpo" in p:
        p["ddpo"].update(checkpoints=[16, 32], prompts_per_batch=4, samples_per_prompt=4, minibatch_size=8)
    for d in ("qm9", "qm9_dedup"):
        if d in p:
            p[d]["model"].update(hidden=32, layers=1)
            p[d]["pretrain"].update(steps=20, batch_size=64)
            if p[d].get("filter"):
                p[d]["filter"]["params"]["m"] = 8
    if "layouts" in p:
        p["layouts"]["data"]["num_layouts"] = 300
        p["layouts"]["model"].update(d_model=16, layers=1, heads=2, ff=16)
        p["layouts"]["pretrain"].update(steps=20, batch_size=32)
        p["layouts"]["features"].update(steps=5, batch_size=16, d_model=16, layers=1, feature_dim=8)
        p["layouts"]["metrics"].update(max_iou_layouts=20, max_iou_candidates=5)
    return p


ENGINE_DOMAINS = ["gaussian", "digits_t2i"]  # one unconditional and one prompt-conditioned (with DDPO) domain


def engine_shrink(raw: dict) -> dict:
    """shrink() cut to ENGINE_DOMAINS (and the flow chain): for the whole-workflow runs of the engines, where
    every extra domain adds the same stage kinds again (each domain's stages run in test_stages)."""
    p = shrink(raw)
    p["domains"] = [d for d in p["domains"] if d in ENGINE_DOMAINS]
    return p


def write_params(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


BIN = str(Path(sys.executable).parent)


def engine_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["PGRAFT_THREADS"] = "1"
    for var in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env.setdefault(var, "pgraft-tests")
    for var in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env.setdefault(var, "tests@pgraft.invalid")
    env.pop("PGRAFT_STATE_DIR", None)
    return env


def run_cmd(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=engine_env(), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def project_copy(dst: Path, params: dict | None) -> Path:
    for name in ("src", "workflow"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "dvc.yaml", dst / "dvc.yaml")
    if params is None:
        shutil.copy(ROOT / "params.yaml", dst / "params.yaml")
    else:
        write_params(dst / "params.yaml", params)
    run_cmd(["git", "init", "-q"], dst)
    run_cmd([f"{BIN}/dvc", "init", "-q"], dst)
    run_cmd([f"{BIN}/dvc", "config", "core.analytics", "false"], dst)
    return dst
