"""The two engines: DVC and Snakemake run the same stage commands over the same DAG, end to end."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import yaml

from pipeline_helpers import BIN, ROOT, engine_shrink, project_copy as _project_copy, run_cmd as _run


def _norm(cmd: str) -> str:
    cmd = re.sub(r"\s*>\s*\S+\s+2>&1\s*$", "", cmd.strip())  # Snakemake's per-rule log redirect
    return " ".join(cmd.split())


def dvc_commands(repo: Path) -> set[str]:
    code = ("import sys; from dvc.repo import Repo\n"
            "for s in Repo(sys.argv[1]).index.stages:\n"
            "    print(s.cmd.replace('\\n', ' ') if isinstance(s.cmd, str) else ' && '.join(s.cmd))")
    return {_norm(c) for c in _run([sys.executable, "-c", code, str(repo)], repo).splitlines() if c.strip()}


def dvc_outputs(repo: Path) -> set[str]:
    code = ("import sys; from dvc.repo import Repo\n"
            "for s in Repo(sys.argv[1]).index.stages:\n"
            "    [print(o.def_path) for o in s.outs]")
    return set(_run([sys.executable, "-c", code, str(repo)], repo).split())


def snakemake_commands(repo: Path) -> set[str]:
    out = _run([f"{BIN}/snakemake", "-n", "--forceall", "-p", "--profile", "workflow/profiles/local"], repo)
    marker = "python -m pgraft.stages."
    return {_norm(line[line.index(marker):]) for line in out.splitlines() if marker in line}


def snakemake_outputs(repo: Path) -> set[str]:
    out = _run([f"{BIN}/snakemake", "--forceall", "--detailed-summary", "--profile", "workflow/profiles/local"], repo)
    rows = [line.split("\t") for line in out.splitlines() if "\t" in line]
    return {r[0] for r in rows[1:] if r[0].startswith("results/")}


@pytest.mark.slow
def test_dvc_stages_and_snakemake_rules_agree(tmp_path):
    """Same commands (hence same stage set, arguments and output paths) on the real params.yaml."""
    repo = _project_copy(tmp_path, None)
    dvc, smk = dvc_commands(repo), snakemake_commands(repo)
    assert dvc == smk, f"only in DVC: {sorted(dvc - smk)[:5]}\nonly in Snakemake: {sorted(smk - dvc)[:5]}"
    p = yaml.safe_load((repo / "params.yaml").read_text())
    seeds, grid, inc = len(p["seeds"]), len(p["truncation_grid"]), p["inc"]
    flow = len(inc["domains"]) * (1 + len(inc["corrected_steps"]) * (1 + seeds) + seeds)
    ddpo = 2 * len(p["ddpo"]["domains"]) * seeds  # ddpo + evaluate_ddpo per seed
    assert len(dvc) == len(p["domains"]) * (1 + 3 * seeds + 2 * seeds * grid) + flow + ddpo + 3  # + validate
    outs = {o.rstrip("/") for o in dvc_outputs(repo)}
    smk_outs = {o.rstrip("/") for o in snakemake_outputs(repo)}
    assert outs <= smk_outs, sorted(outs - smk_outs)[:5]


@pytest.fixture(scope="module")
def engine_runs(tmp_path_factory, real_params):
    params = engine_shrink(real_params)
    dvc_repo = _project_copy(tmp_path_factory.mktemp("dvc"), params)
    _run([f"{BIN}/dvc", "repro"], dvc_repo)
    smk_repo = _project_copy(tmp_path_factory.mktemp("smk"), params)
    _run([f"{BIN}/snakemake", "--profile", "workflow/profiles/local"], smk_repo)
    return dvc_repo, smk_repo


@pytest.mark.slow
def test_dvc_repro_end_to_end(engine_runs):
    repo, _ = engine_runs
    assert (repo / "results/figures/gaussian_tradeoff.png").exists()
    shown = _run([f"{BIN}/dvc", "metrics", "show"], repo)
    assert "evaluate.json" in shown and "b10.reward_mean" in shown
    again = _run([f"{BIN}/dvc", "repro"], repo)
    assert "up to date" in again and "Running stage" not in again
    html = _run([f"{BIN}/dvc", "plots", "show", "--html-template",
                 str(ROOT / "workflow/plots/offline_template.html"), "-o", "plots_out"], repo)
    page = (repo / "plots_out/index.html").read_text()
    assert "cdn.jsdelivr" not in page and "<script src=" not in page and "vega" in page, html


@pytest.mark.slow
def test_snakemake_run_matches_dvc_run(engine_runs):
    dvc_repo, smk_repo = engine_runs
    assert (smk_repo / "results/figures/gaussian_reward_vs_k.png").exists()
    assert (smk_repo / "logs/finetune/gaussian-0-2.log").exists()
    # both engines ran the same deterministic commands: identical tidy tables
    assert (dvc_repo / "results/summary.csv").read_bytes() == (smk_repo / "results/summary.csv").read_bytes()


@pytest.mark.slow
def test_dvc_exp_run_with_set_param(engine_runs):
    repo, _ = engine_runs
    _run(["git", "add", "-A"], repo)
    _run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "base"], repo)
    out = _run([f"{BIN}/dvc", "exp", "run", "-S", "finetune.learning_rate=0.002"], repo)
    assert "Running stage 'finetune-gaussian@0-2'" in out and "Running stage 'pretrain-gaussian'" not in out
