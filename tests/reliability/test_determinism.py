"""Same params and seed, same bytes: two `dvc repro --force` runs record identical output hashes."""

from __future__ import annotations

import pytest
import yaml

from pipeline_helpers import BIN, engine_shrink, project_copy, run_cmd


def _out_hashes(repo) -> dict:
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {(stage, o["path"]): o["md5"] for stage, s in lock.items() for o in s.get("outs", [])}


@pytest.mark.slow
def test_two_forced_repros_give_identical_output_hashes(tmp_path, real_params):
    repo = project_copy(tmp_path, engine_shrink(real_params))
    run_cmd([f"{BIN}/dvc", "repro"], repo)
    first = _out_hashes(repo)
    run_cmd([f"{BIN}/dvc", "repro", "--force"], repo)
    second = _out_hashes(repo)
    assert len(first) >= 20
    changed = sorted(k for k in first if first[k] != second.get(k))
    assert not changed, f"outputs that differ between identical runs: {changed}"
