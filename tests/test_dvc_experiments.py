"""DVC experiments a researcher can read: a one-domain sweep fits `dvc exp show`, and `dvc exp run -S` keeps
params.yaml's comments and layout."""

from __future__ import annotations

import csv
import difflib
import re
import io
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline_helpers import BIN, ROOT, engine_env

# A stand-in for the pipeline with the real aggregate's metrics writer: the seed-averaged summary of a synthetic
# tidy table whose rewards move with finetune.learning_rate (what a learning-rate experiment changes).
STAGE = """\
import json, pathlib, sys
import pandas as pd
from pgraft.config import load_params
from pgraft.report.summary import seed_summary
p = load_params("params.yaml")
lr = p.finetune.learning_rate
rows = [dict(kind="evaluate", domain=d, rule=None, seed=s, k=k, budget=b, metric="reward_mean", x=None,
             value=(0.0 if k == 0 else lr * (1 + k + b / 1000)) + 0.01 * s)
        for d in p.reward_domains for s in p.seeds for k in p.truncation_grid for b in p.finetune.budgets]
out = pathlib.Path("results/summary"); out.mkdir(parents=True, exist_ok=True)
for d, entry in seed_summary(pd.DataFrame(rows), p).items():
    (out / f"{d}.json").write_text(json.dumps(entry))
"""


def _run(cmd: list[str], cwd: Path) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=engine_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{' '.join(cmd)}:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"
    return out.stdout


def _project(tmp_path: Path, params_text: str) -> Path:
    repo = tmp_path / "exp"
    repo.mkdir()
    (repo / "params.yaml").write_text(params_text)
    (repo / "stage.py").write_text(STAGE)
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"aggregate": {
        "cmd": f"{sys.executable} stage.py", "deps": ["stage.py"], "params": [{"params.yaml": None}],
        "metrics": [{"results/summary": {"cache": False}}]}}}))
    for cmd in (["git", "init", "-q"], [f"{BIN}/dvc", "init", "-q"], [f"{BIN}/dvc", "config", "core.analytics", "false"],
                [f"{BIN}/dvc", "repro", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "baseline"]):
        _run(cmd, repo)
    return repo


@pytest.mark.slow
def test_one_domain_sweep_fits_dvc_exp_show(tmp_path):
    text = (ROOT / "params.yaml").read_text()
    raw = yaml.safe_load(text)
    raw["domains"] = ["gaussian"]
    repo = _project(tmp_path, yaml.safe_dump(raw, sort_keys=False))
    _run([f"{BIN}/dvc", "exp", "run", "-q", "-S", "finetune.learning_rate=0.002"], repo)
    shown = _run([f"{BIN}/dvc", "exp", "show", "--only-changed", "--csv", "--no-pager"], repo)
    header = next(csv.reader(io.StringIO(shown)))
    assert "finetune.learning_rate" in header and "gaussian.k20.b500.reward.mean" in header, header
    assert len(header) <= 40, f"{len(header)} columns: {header}"


@pytest.mark.slow
def test_dvc_exp_run_set_param_keeps_params_yaml_layout(tmp_path):
    before = (ROOT / "params.yaml").read_text()
    repo = _project(tmp_path, before)
    _run([f"{BIN}/dvc", "exp", "run", "-q", "-S", "finetune.learning_rate=0.002", "-S", "seeds=[0,1,2,3,4,5]"], repo)
    after = (repo / "params.yaml").read_text()
    # DVC's YAML writer renders a null value as an empty one (`key:`, the same YAML): not a layout change
    # (and moves that comment by the width of "null": compared with runs of spaces squeezed, as below)
    squeeze = lambda line: re.sub(r" +", " ", line)  # noqa: E731
    plain = re.sub(r": null(?=\s|$)", ":", before, flags=re.M)
    diff = [line for line in difflib.unified_diff([squeeze(x) for x in plain.splitlines()],
                                                  [squeeze(x) for x in after.splitlines()], lineterm="", n=0)
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]
    # only the learning rate's line and the new seeds' items change; every comment stays on its line
    lr = next(line for line in before.splitlines() if line.startswith("  learning_rate:"))  # finetune's
    value = str(yaml.safe_load(before)["finetune"]["learning_rate"])
    # (the comment keeps its column, so only the spaces before it may differ from a plain substitution)
    assert sorted(map(squeeze, diff)) == sorted(map(squeeze, [
        f"-{lr}", "+" + lr.replace(value, "0.002", 1),
        *[f"+- {s}" for s in range(len(yaml.safe_load(before)["seeds"]), 6)]])), diff
