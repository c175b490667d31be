"""A prepared pipeline state (base model, samples, rewards, selection) for the reliability tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline_helpers import engine_shrink, write_params
from pipeline_helpers import stage_commands


def run_cli(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full = {**os.environ, "PGRAFT_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=full, capture_output=True, text=True,
                          timeout=timeout)


def module_args(mod, args: list[str]) -> list[str]:
    return [mod.__name__, *args]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, real_params):
    """Run the real stages once (shrunk params) up to and including the whole pipeline."""
    work = tmp_path_factory.mktemp("rel")
    params = engine_shrink(real_params)
    # the intermediate target reads the states after k steps too: more inputs whose faults must be caught
    params["finetune"].update(budgets=[20, 60, 200], checkpoint_every=20, target="intermediate")
    write_params(work / "params.yaml", params)
    mp = pytest.MonkeyPatch()
    mp.setenv("PGRAFT_STATE_DIR", str(work / ".pgraft"))
    mp.setenv("PGRAFT_THREADS", "1")
    mp.chdir(work)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for mod, args in stage_commands(params):
        assert mod.main(args) == 0, args
    torch.set_num_threads(threads)
    mp.undo()
    return work, params
