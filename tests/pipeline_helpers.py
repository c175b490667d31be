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

def stage_commands(params: dict, pfile: str = "params.yaml") -> list[tuple[object, list[str]]]:
    """Every stage command of the pipeline in table order (a topological order), from the stage table."""
    import importlib

    from pgraft.pipeline.table import STAGES, instances

    cmds = []
    for stage in STAGES:
        module = importlib.import_module(stage.module)
        for point in instances(stage, params):
            argv = stage.command_at(params, point).split()[3:]  # drop "python -m <module>"
            cmds.append((module, ["--params", pfile, *argv]))
    return cmds


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
    p["variance"] = {"states": 8, "branches": 2, "ceiling_branches": 1, "bootstrap": 100}
    p["tracking"]["enabled"] = False
    p["gaussian"]["model"].update(hidden=32, layers=1)
    p["gaussian"]["pretrain"].update(steps=50, batch_size=64)
    p["inc"].update(base_steps=[2, 4], corrected_steps=[2], num_inverted=40, num_samples=40, batch_size=40,
                    iterations=5, max_residual=10.0, roundtrip_threshold=10.0)  # an untrained base: keep all
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


# one unconditional and one prompt-conditioned (with DDPO) domain, and the flow domain (INC)
ENGINE_DOMAINS = ["gaussian", "digits_t2i", "digits_flow"]


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


def engine_env(cwd: Path | None = None) -> dict:
    """The environment of an engine run in a project copy: the copy's own src/ first on the path (the code its
    dvc.yaml and Snakefile track), one torch thread per stage."""
    env = dict(os.environ)
    if cwd is not None and (Path(cwd) / "src").is_dir():
        env["PYTHONPATH"] = str(Path(cwd) / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["PGRAFT_THREADS"] = "1"
    for var in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env.setdefault(var, "pgraft-tests")
    for var in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env.setdefault(var, "tests@pgraft.invalid")
    env.pop("PGRAFT_STATE_DIR", None)
    return env


def run_cmd(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=engine_env(cwd), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout + out.stderr


def project_copy(dst: Path, params: dict | None) -> Path:
    for name in ("src", "workflow"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    if params is None:
        shutil.copy(ROOT / "params.yaml", dst / "params.yaml")
        shutil.copy(ROOT / "dvc.yaml", dst / "dvc.yaml")
    else:
        write_params(dst / "params.yaml", params)
        run_cmd([f"{BIN}/pgraft", "pipeline", "dvc"], dst)  # dvc.yaml for these params' domains
    run_cmd(["git", "init", "-q"], dst)
    run_cmd([f"{BIN}/dvc", "init", "-q"], dst)
    run_cmd([f"{BIN}/dvc", "config", "core.analytics", "false"], dst)
    return dst


def study_script(name: str):
    """Yield scripts/<name>.py imported as module `name` (a study script has no package); unregister it after."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)
