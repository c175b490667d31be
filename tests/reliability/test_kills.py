"""SIGKILL at any point leaves no output an engine would take as done; finetune resumes to the same result."""

from __future__ import annotations

import filecmp
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pgraft.stages import aggregate, evaluate, figures, filter as filter_stage, finetune, pretrain, reward, sample

from pipeline_helpers import stage_commands
from reliability_helpers import readable

STAGES = (pretrain, sample, reward, filter_stage, finetune, evaluate, aggregate, figures)
DELAYS = (0.4, 1.2, 2.5)


def _outputs(mod, args: list[str]) -> list[str]:
    keys = ("--out", "--metrics", "--acceptance", "--plots-dir") + (("--reference",) if mod is sample else ())
    return [args[i + 1] for i, a in enumerate(args) if a in keys]


def _command(params, mod, seed="1", k="2"):
    for m, args in stage_commands(params):
        if m is not mod:
            continue
        if "--seed" in args and args[args.index("--seed") + 1] != seed:
            continue
        if "--k" in args and args[args.index("--k") + 1] != k:
            continue
        return args
    raise AssertionError(mod)


def _start(work: Path, mod, args):
    env = {**os.environ, "PGRAFT_THREADS": "1", "PGRAFT_STATE_DIR": str(work / ".pgraft")}
    return subprocess.Popen([sys.executable, "-m", mod.__name__, *args], cwd=work, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("mod", STAGES, ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def test_kill_leaves_no_half_written_output(prepared, mod):
    work, params = prepared
    args = _command(params, mod)
    outs = _outputs(mod, args)
    reference = {o: readable(work / o) for o in outs}  # the complete outputs of the earlier run
    for delay in DELAYS:
        for o in outs:  # as DVC and Snakemake do: outputs are removed before a stage runs
            subprocess.run(["rm", "-rf", str(work / o)], check=True)
        proc = _start(work, mod, args)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        for o in outs:
            path = work / o
            if path.exists():  # the stage got to rename it: then it is complete
                assert readable(path) == reference[o], f"{o} exists after a kill at {delay}s but differs"
        leftovers = [p.name for o in outs for p in (work / o).parent.glob(f".{Path(o).name}.*.tmp")]
        # temporary siblings are never declared outputs; the rerun below must still succeed
        rerun = _start(work, mod, args)
        _, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err
        for o in outs:
            assert readable(work / o) == reference[o], f"{o} differs after the rerun ({leftovers})"


@pytest.mark.slow
def test_finetune_resumes_after_a_kill_to_the_same_result(prepared):
    """Kill finetune mid-training, rerun: it resumes from its checkpoint and ends byte-identical."""
    import copy

    from pipeline_helpers import write_params

    work, params = prepared
    longer = copy.deepcopy(params)
    longer["finetune"].update(budgets=[20, 100, 1500], checkpoint_every=50)
    write_params(work / "params_long.yaml", longer)
    args = _command(params, finetune)
    args[args.index("--params") + 1] = "params_long.yaml"

    def with_out(name):
        a = list(args)
        a[a.index("--out") + 1] = name
        return a

    ref = _start(work, finetune, with_out("uninterrupted_ft"))
    assert ref.wait(timeout=300) == 0
    proc = _start(work, finetune, with_out("killed_ft"))
    meta = work / "killed_ft.partial" / "resume.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (meta.exists() and json.loads(meta.read_text())["step"] >= 200):
        time.sleep(0.02)
    assert proc.poll() is None, "finetune finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert meta.exists(), "no resumable checkpoint was written before the kill"
    assert not (work / "killed_ft").exists()
    rerun = _start(work, finetune, with_out("killed_ft"))
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "resumed from step" in err
    for b in longer["finetune"]["budgets"]:
        assert filecmp.cmp(work / "uninterrupted_ft" / f"b{b}.safetensors", work / "killed_ft" / f"b{b}.safetensors",
                           shallow=False), f"budget {b} differs after resume"
    assert not (work / "killed_ft.partial").exists()
