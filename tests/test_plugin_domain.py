"""A domain added from outside src/ (its module, params.yaml and this test) runs through both engines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline_helpers import BIN, project_copy, run_cmd, shrink

PLUGIN = Path(__file__).parent / "plugins" / "ring_domain.py"


def ring_params(real: dict) -> dict:
    p = shrink(real)
    p["plugins"] = ["ring_domain"]
    p["domains"] = ["ring"]
    p["seeds"] = [0]
    p["ddpo"]["domains"] = []
    p["inc"]["domains"] = []
    p["ring"] = {**p["gaussian"], "angle": 1.0}
    return p


def _repo(tmp: Path, params: dict) -> Path:
    tmp.mkdir(parents=True)
    shutil.copy(PLUGIN, tmp / PLUGIN.name)  # before project_copy: it writes dvc.yaml, which imports the plugin
    return project_copy(tmp, params)


@pytest.mark.slow
def test_plugin_domain_runs_under_dvc_and_snakemake(tmp_path, real_params):
    params = ring_params(real_params)
    dvc_repo = _repo(tmp_path / "dvc", params)
    dvc_yaml = (dvc_repo / "dvc.yaml").read_text()
    assert "finetune-ring:" in dvc_yaml
    code = json.loads((dvc_repo / "results/stamps/finetune-ring.json").read_text())["code"]  # the plugin's stamp
    assert "ring_domain.py" in code and "src/pgraft/domains/gaussian.py" in code, sorted(code)
    run_cmd([f"{BIN}/dvc", "repro"], dvc_repo)
    smk_repo = _repo(tmp_path / "smk", params)
    run_cmd([f"{BIN}/snakemake", "--profile", "workflow/profiles/local"], smk_repo)
    summary = (dvc_repo / "results/summary.csv").read_bytes()
    assert b"ring" in summary and summary == (smk_repo / "results/summary.csv").read_bytes()
    assert (dvc_repo / "results/figures/ring_reward_vs_k.png").exists()
