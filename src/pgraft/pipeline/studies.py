"""What the study scripts (scripts/*.py) share: a stage's real command at one matrix point, running it in a
study's work directory, and the per-setting directories (their params.yaml, inputs linked from a shared one)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pgraft.pipeline.table import BY_NAME


def command(stage: str, params: dict, **point) -> list[str]:
    """The stage's command at one matrix point, exactly as both engines run it."""
    return [sys.executable, *BY_NAME[stage].command_at(params, point).split()[1:]]


def run(cmd: list[str], cwd: Path, log_name: str = "study.log") -> tuple[float, float]:
    """Run a stage command in `cwd` on one thread, its output appended to cwd/log_name; stop the study if it
    fails. Returns its wall-clock and CPU seconds (user + system of that process, whatever else runs)."""
    env = {**os.environ, "PGRAFT_THREADS": "1"}
    log = cwd / log_name
    start = time.perf_counter()
    with open(log, "a") as fh:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}; see {log}")
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def write_params(path: Path, raw: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))


def link_inputs(work: Path, prep: Path, domain: str, seed: int) -> None:
    """Link a seed's base model, samples, reference pool, rewards and selection from `prep` into `work`."""
    inputs = ("samples.npz", "reference.npz", "rewards.parquet", "selection.parquet")
    for rel in (f"results/{domain}/base", *(f"results/{domain}/seed{seed}/{f}" for f in inputs)):
        link = work / rel
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            try:
                link.symlink_to(prep / rel)
            except FileExistsError:  # a parallel job of the same directory linked it first
                pass
