"""The stage table: dvc.yaml is written from it and fresh, its DAG is sound, and edits rerun what they touch."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from pgraft.pipeline import rerun
from pgraft.pipeline.code_deps import domain_modules, module_file, stage_files
from pgraft.pipeline.dvc_yaml import render
from pgraft.pipeline.table import STAGES, instance_name, instances, lookup, params_keys

ROOT = Path(__file__).resolve().parents[1]


def test_dvc_yaml_is_generated_and_fresh(real_params):
    assert (ROOT / "dvc.yaml").read_text() == render(real_params, ROOT), \
        "dvc.yaml is stale: run `pgraft pipeline dvc` and commit it"


def test_every_stage_is_a_real_command_over_earlier_outputs(real_params):
    made = {"params.yaml"}
    for stage in STAGES:
        assert callable(importlib.import_module(stage.module).main), stage.module
        for point in instances(stage, real_params):
            for p in stage.inputs:
                path = p.pattern.format(**point)
                assert path in made or any(m.startswith(path + "/") for m in made), (stage.name, path)
        outs = {p.pattern.format(**pt) for pt in instances(stage, real_params) for p in stage.outputs}
        assert not outs & made, f"{stage.name} writes an output another stage writes: {sorted(outs & made)[:3]}"
        made |= outs


def test_params_keys_of_every_stage_exist(real_params):
    """Every key a stage reads is a key of the params model (a default fills what params.yaml leaves out)."""
    from pgraft.pipeline.stamps import resolved

    full, missing = resolved(real_params), object()
    for stage in STAGES:
        for point in instances(stage, real_params):
            for key in params_keys(stage, point.get("domain"), real_params):
                assert lookup(full, key, missing) is not missing, (stage.name, key)


def test_code_deps_come_from_the_import_graph():
    files = stage_files("pgraft.stages.finetune", "gaussian", ROOT)
    assert "src/pgraft/stages/finetune.py" in files and "src/pgraft/domains/gaussian.py" in files
    assert "src/pgraft/finetune/loop.py" in files  # imported by the stage, not listed by hand anywhere
    assert "src/pgraft/domains/qm9.py" not in files and "src/pgraft/rewards/molecules.py" not in files
    assert "src/pgraft/domains/mol_graph.py" in stage_files("pgraft.stages.finetune", "qm9", ROOT)


@pytest.mark.parametrize("domain", ["gaussian", "qm9", "layouts", "digits_t2i", "digits_flow"])
def test_edit_of_one_domain_module_reruns_that_domain_only(real_params, domain):
    f = module_file(domain_modules()[domain]).resolve().relative_to(ROOT).as_posix()
    hit = rerun.affected(real_params, files=[f], root=ROOT)
    shares_module = {d for d, m in domain_modules().items() if m == domain_modules()[domain]}  # qm9 / qm9_dedup
    sweep = {"validate", "aggregate", "figures"}
    for name in hit:
        assert name in sweep or name.split("@")[0].split("-", 1)[1] in shares_module, (f, name)
    assert any(name.startswith(f"finetune-{domain}@") or name.startswith(f"correct-{domain}@") for name in hit)


def test_params_edits_rerun_what_reads_them(real_params):
    lr = rerun.affected(real_params, keys=["finetune.learning_rate"])
    assert "finetune-gaussian@0-5" in lr and "evaluate-gaussian@0-5" in lr and "sample-gaussian@0" not in lr
    assert not any(n.startswith(("pretrain", "invert", "correct")) for n in lr)
    rw = rerun.affected(real_params, keys=["gaussian.reward.temperature"])
    assert "reward-gaussian@0" in rw and not any("qm9" in n or "layouts" in n for n in rw)
    assert "validate" in rw


def test_pipeline_dvc_drops_lock_entries_of_stages_dvc_yaml_no_longer_has(real_params, tmp_path, monkeypatch):
    import yaml

    from pgraft.cli import _write_dvc_yaml
    from pgraft.pipeline.dvc_yaml import stage_names

    kept = sorted(stage_names(real_params))[:2]
    entry = "    cmd: python -m pgraft.stages.x\n    deps:\n    - path: params.yaml\n      md5: 0\n"
    text = "schema: '2.0'\nstages:\n" + "".join(f"  {n}:\n{entry}" for n in [*kept, "evaluate@layouts-2-5"])
    lock = tmp_path / "dvc.lock"
    lock.write_text(text)
    monkeypatch.chdir(ROOT)  # the stage table's code files
    assert _write_dvc_yaml(real_params, tmp_path / "dvc.yaml", check=False) == 0
    assert list(yaml.safe_load(lock.read_text())["stages"]) == kept
    before = lock.read_text()
    assert _write_dvc_yaml(real_params, tmp_path / "dvc.yaml", check=False) == 0
    assert lock.read_text() == before  # nothing stale: untouched


def test_snakemake_runs_the_inc_chain_first(real_params):
    """The INC chain is one long serial chain: its rules outrank the wide reward chain so that it does not run
    alone at the end of a run on few cores (a scheduling choice only: the commands are unchanged)."""
    from pgraft.pipeline.snakemake import Plan

    priorities = {r.name: r.priority for r in Plan(real_params, ROOT).rules()}
    assert {n for n, p in priorities.items() if p > 0} == {"pretrain_flow", "invert", "correct", "evaluate_flow"}
    assert len(set(priorities.values())) == 2
    assert "priority: r.priority" in (ROOT / "workflow" / "Snakefile").read_text()
