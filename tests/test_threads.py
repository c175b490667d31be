"""Thread policy: one thread per stage unless PGRAFT_THREADS asks for more, never more than the cores granted;
results do not depend on how many cores the machine has."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline_helpers import engine_env, shrink, write_params
from pgraft.runtime.threads import thread_count


def test_one_thread_by_default(monkeypatch):
    monkeypatch.delenv("PGRAFT_THREADS", raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    assert thread_count() == 1


def test_never_more_threads_than_granted_cores(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.setenv("PGRAFT_THREADS", "8")
    assert thread_count() == 2
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    assert thread_count() == 1


def test_stage_sets_every_thread_pool_before_numpy(tmp_path):
    code = ("import os, pgraft.stages.common, torch; from pgraft.stages.common import set_threads; set_threads(); "
            "print(os.environ['OMP_NUM_THREADS'], os.environ['OPENBLAS_NUM_THREADS'], torch.get_num_threads())")
    env = {k: v for k, v in engine_env().items() if k not in ("PGRAFT_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "1"]


@pytest.mark.skipif(not shutil.which("taskset") or len(os.sched_getaffinity(0)) < 2, reason="needs taskset, 2 cores")
def test_results_do_not_depend_on_the_cores_available(tmp_path, real_params):
    """The same stage on one core and on every core writes byte-identical outputs (the default policy)."""
    params = shrink(real_params)
    params["gaussian"]["model"].update(hidden=128, layers=2)  # matmuls large enough for threads to split them
    params["gaussian"]["pretrain"].update(steps=100, batch_size=512)
    write_params(tmp_path / "params.yaml", params)
    env = {k: v for k, v in engine_env().items() if k != "PGRAFT_THREADS"}
    outs = []
    for cores, name in (("0", "one"), (",".join(map(str, sorted(os.sched_getaffinity(0)))), "all")):
        out = tmp_path / name
        subprocess.run(["taskset", "-c", cores, sys.executable, "-m", "pgraft.stages.pretrain", "--domain", "gaussian",
                        "--out", str(out), "--metrics", f"{out}.json"], cwd=tmp_path, env=env, check=True,
                       capture_output=True)
        outs.append(out)
    assert (outs[0] / "model.safetensors").read_bytes() == (outs[1] / "model.safetensors").read_bytes()
    assert yaml.safe_load(Path(f"{outs[0]}.json").read_text()) == yaml.safe_load(Path(f"{outs[1]}.json").read_text())
