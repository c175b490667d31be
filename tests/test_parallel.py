"""Data-parallel training: Snakemake starts a training stage given several GPUs under `accelerate launch`; two
processes (gloo, on the CPU) fine-tune to the checkpoints of one process and resume after a kill."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipeline_helpers import ROOT, shrink, stage_commands, write_params

TOLERANCE = 1e-5  # max abs parameter difference between 1 and 2 processes (float sums in another order)


def test_training_stages_start_under_accelerate_with_several_gpus(real_params):
    from pgraft.pipeline.snakemake import Plan
    from pgraft.pipeline.table import BY_NAME

    rules = {r.name: r for r in Plan(real_params, ROOT).rules()}
    point = {"domain": "gaussian", "seed": "0", "k": "20", "n": "5"}
    for name, rule in rules.items():
        plain = rule.params["cmd"](point, {})
        assert rule.params["cmd"](point, {"gpu": 1}) == plain  # one GPU: the command DVC runs too
        two = rule.params["cmd"](point, {"gpu": 2})
        if BY_NAME[name].parallel:
            assert two == ("python -m accelerate.commands.launch --multi_gpu --num_processes 2 --num_machines 1 "
                           "--mixed_precision no --dynamo_backend no " + plain.removeprefix("python "))
        else:
            assert two == plain
    assert {n for n, s in BY_NAME.items() if s.parallel} == {"pretrain", "finetune", "ddpo", "pretrain_flow",
                                                             "correct"}


def _env(work: Path) -> dict:
    return {**os.environ, "PGRAFT_THREADS": "1", "PGRAFT_STATE_DIR": str(work / ".pgraft"),
            "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}


def _finetune(work: Path, args: list[str], out: str, processes: int, **popen) -> subprocess.Popen:
    args = list(args)
    args[args.index("--out") + 1] = out
    head = [sys.executable, "-m"]
    if processes > 1:  # what Snakemake runs for a job with `gpu: 2`; on CPUs the processes talk through gloo
        head += ["accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes), "--num_machines",
                 "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m"]
    return subprocess.Popen([*head, "pgraft.stages.finetune", *args], cwd=work, env=_env(work),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen)


def _weights(path: Path) -> dict:
    from pgraft.io import load_weights

    return load_weights(path)


@pytest.mark.slow
def test_two_processes_fine_tune_like_one_and_resume_after_a_kill(tmp_path, real_params):
    p = shrink(real_params)
    p.update(domains=["gaussian"], seeds=[0], truncation_grid=[0, p["sampler"]["num_steps"]])
    p["inc"]["domains"], p["ddpo"]["domains"] = [], []
    p["finetune"].update(budgets=[50, 600], batch_size=64, checkpoint_every=50)
    write_params(tmp_path / "params.yaml", p)
    env = _env(tmp_path)
    commands = [(m, a) for m, a in stage_commands(p) if m.__name__.rsplit(".", 1)[-1] in
                ("validate", "pretrain", "sample", "reward", "filter", "finetune")]
    for mod, args in commands[:-1]:  # everything finetune reads
        done = subprocess.run([sys.executable, "-m", mod.__name__, *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    args = next(a for m, a in commands if m.__name__.endswith("finetune") and a[a.index("--k") + 1] != "0")

    one, two = _finetune(tmp_path, args, "ft1", 1), _finetune(tmp_path, args, "ft2", 2)
    for proc in (one, two):
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    assert err.count("pgraft finetune: done") == 1  # the main process alone reports (and writes)
    files = sorted(f.name for f in (tmp_path / "ft2").iterdir())
    assert files == ["b50.safetensors", "b600.safetensors", "config.json", "loss_history.json"]
    worst = 0.0
    for b in (50, 600):
        w1, w2 = _weights(tmp_path / "ft1" / f"b{b}.safetensors"), _weights(tmp_path / "ft2" / f"b{b}.safetensors")
        assert w1.keys() == w2.keys()
        worst = max(worst, max(float((w1[k] - w2[k]).abs().max()) for k in w1))
    print(f"max abs parameter difference, 1 vs 2 processes: {worst:.2e}")
    assert worst < TOLERANCE
    h1, h2 = (json.loads((tmp_path / d / "loss_history.json").read_text())["train_loss"] for d in ("ft1", "ft2"))
    assert [s for s, _ in h1] == [s for s, _ in h2]
    assert max(abs(a - b) for (_, a), (_, b) in zip(h1, h2)) < 1e-4  # the global batch's loss in both

    # kill the two-process run after a checkpoint (the launcher and its workers, as SLURM kills a job's
    # processes; torchrun starts each worker in its own session), then rerun: it resumes
    killed = _finetune(tmp_path, args, "ft_killed", 2)
    meta = tmp_path / "ft_killed.partial" / "resume.json"
    deadline = time.time() + 240
    while time.time() < deadline and not (meta.exists() and json.loads(meta.read_text())["step"] >= 100):
        time.sleep(0.02)
    assert killed.poll() is None, "finetune finished before it could be killed"
    for proc in [psutil.Process(killed.pid), *psutil.Process(killed.pid).children(recursive=True)]:
        proc.send_signal(signal.SIGKILL)
    killed.wait()
    time.sleep(0.5)
    step = json.loads(meta.read_text())["step"]
    assert 100 <= step < 600 and not (tmp_path / "ft_killed").exists()
    rerun = _finetune(tmp_path, args, "ft_killed", 2)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    assert "resumed from step" in err
    for b in (50, 600):
        w2, wk = (_weights(tmp_path / d / f"b{b}.safetensors") for d in ("ft2", "ft_killed"))
        assert max(float((w2[k] - wk[k]).abs().max()) for k in w2) < TOLERANCE, f"budget {b} after resume"


@pytest.mark.slow
def test_two_process_ddpo_matches_one_process(tmp_path, real_params):
    """DDPO split over two processes (trajectories sampled and scored in halves, PPO minibatches split, gradients
    averaged): the same checkpoints and training log as one process."""
    p = shrink(real_params)
    p.update(domains=["digits_t2i"], seeds=[0])
    p["inc"]["domains"] = []
    write_params(tmp_path / "params.yaml", p)
    env = _env(tmp_path)
    commands = [(m, a) for m, a in stage_commands(p) if m.__name__.rsplit(".", 1)[-1] in ("validate", "pretrain")]
    for mod, args in commands:
        done = subprocess.run([sys.executable, "-m", mod.__name__, *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    args = next(a for m, a in stage_commands(p) if m.__name__.endswith(".ddpo"))
    for out, processes in (("d1", 1), ("d2", 2)):
        a = list(args)
        a[a.index("--out") + 1], a[a.index("--metrics") + 1] = out, f"{out}.json"
        head = [sys.executable, "-m"] + (["accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                                          "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend",
                                          "no", "-m"] if processes > 1 else [])
        done = subprocess.run([*head, "pgraft.stages.ddpo", *a], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    for b in p["ddpo"]["checkpoints"]:
        w1, w2 = (_weights(tmp_path / d / f"b{b}.safetensors") for d in ("d1", "d2"))
        assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < TOLERANCE, f"checkpoint b{b}"
    log1, log2 = (json.loads((tmp_path / f"{d}.json").read_text())["log"] for d in ("d1", "d2"))
    assert [r["reward_mean"] for r in log1] == pytest.approx([r["reward_mean"] for r in log2], abs=1e-6)
    assert [r["loss"] for r in log1] == pytest.approx([r["loss"] for r in log2], abs=1e-6)
