"""MLflow as an experiment browser: runs per (domain, seed, k) with their params, curves by step, status and times,
a parent with the summary and figures, carried-forward jobs, failures; outages never fail a stage."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient

from pgraft.config import parse_params
from pgraft.tracking import spool as tracking, sync as tracking_sync

from tracking_helpers import spool_pipeline

DOMAINS = ["gaussian", "digits_t2i", "digits_flow"]  # the three run families: GRAFT k-sweep, DDPO, INC


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite store for the module (creating its tables takes seconds); each test uses its own experiment."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"
    MlflowClient(uri).search_experiments()
    return uri


@pytest.fixture
def env(tmp_path, monkeypatch, small_params, store, request):
    """Params of a run over DOMAINS (or the test's own list) with tracking on, mirrored by the test itself (no
    background syncer here: tests/test_tracking_parallel.py runs it)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path / ".pgraft"))
    monkeypatch.setenv("PGRAFT_PIPELINE_ID", "pipeA")
    blocking = []
    monkeypatch.setattr(tracking, "sync", lambda uri, exp, pipeline=None, force=False: blocking.append(pipeline))
    raw = {**small_params, "domains": getattr(request, "param", DOMAINS)}
    raw["tracking"] = {"enabled": True, "uri": store, "experiment": request.node.name, "live": False}
    params = parse_params(raw)
    return params, params.model_dump(mode="json"), tmp_path / "out", blocking


def _runs(params, pipeline: str = "pipeA") -> dict:
    client = MlflowClient(params.tracking.uri)
    exp = client.get_experiment_by_name(params.tracking.experiment)
    found = client.search_runs([exp.experiment_id], f"tags.`pgraft.pipeline_id` = '{pipeline}'", max_results=500)
    return {r.data.tags["pgraft.key"]: r for r in found}


def _history(params, run, metric: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in MlflowClient(params.tracking.uri).get_metric_history(run.info.run_id, metric)]


def test_runs_per_k_with_params_curves_status_and_a_parent(env):
    params, raw, out, blocking = env
    n = spool_pipeline(params, raw, out)
    assert blocking == ["pipeA", "pipeA"], "without live sync, aggregate and figures mirror at once"
    t = params.tracking
    stats = tracking_sync.sync(t.uri, t.experiment)
    assert stats["ok"] and stats["records"] == n and stats["outside"] == 0
    client = MlflowClient(t.uri)
    exp = client.get_experiment_by_name(t.experiment)
    runs = _runs(params)
    grid, seeds = raw["truncation_grid"], raw["seeds"]
    assert len(runs) == 1 + 2 * len(seeds) * len(grid) + 2 * len(seeds), sorted(runs)  # parent, k runs, ddpo, inc
    assert not [r for r in runs.values() if "None" in r.info.run_name], "no junk runs"

    # compare k at equal budget: filter on params, one run per seed
    k4 = client.search_runs([exp.experiment_id], "params.k = '4' and params.domain = 'gaussian'")
    assert sorted(r.data.params["seed"] for r in k4) == ["0", "1"]
    child = next(r for r in k4 if r.data.params["seed"] == "0")
    p = child.data.params
    assert (p["k"], p["method"], p["budgets"]) == ("4", "graft", "[5, 10]")
    assert p["filter.name"] == "top_k" and p["filter.params.k"] == "2", "Top-K's K is filter.params.k, not k"
    assert p["gaussian.mixture.num_modes"] and p["finetune.learning_rate"] == "0.0003"
    assert not [key for key in p if key.split(".")[0] in ("digits_t2i", "digits_flow", "qm9", "ddpo", "inc",
                                                          "tracking")], "no other domain's or chain's settings"
    # curves: the result per budget, the training loss per fine-tuning step
    assert _history(params, child, "reward_mean") == [(5, 4.05), (10, 4.1)]
    assert [s for s, _ in _history(params, child, "train_loss")] == list(range(1, 11))
    assert child.data.metrics["filter/acceptance_rate"] == 0.25 and "sample/wall_s" in child.data.metrics
    assert child.info.status == "FINISHED" and child.info.end_time >= child.info.start_time > 0
    full = client.get_run(child.info.run_id)
    assert {d.dataset.name for d in full.inputs.dataset_inputs} == {"gaussian/seed0/samples", "gaussian/seed0/reference"}
    assert len(full.inputs.model_inputs) == 1, "the base model as a LoggedModel input"

    # the DDPO baseline and the INC runs: their own steps, no truncation point
    ddpo = runs["digits_t2i/ddpo/seed0"]
    assert "k" not in ddpo.data.params and ddpo.data.params["method"] == "ddpo"
    assert [s for s, _ in _history(params, ddpo, "reward_mean")] == raw["ddpo"]["checkpoints"]
    assert [s for s, _ in _history(params, runs["digits_flow/inc/seed1"], "base.fid")] == raw["inc"]["base_steps"]

    # the parent: seed-averaged summary by budget, per-domain records, artifacts
    parent = runs["parent"]
    assert parent.info.status == "FINISHED" and child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert _history(params, parent, "gaussian/k2/reward_mean") == [(5, 1.5), (10, 4.0)]
    assert "gaussian/pretrain/final_loss" in parent.data.metrics
    assert parent.data.params["truncation_grid"] == "[0, 2, 4]" and "k" not in parent.data.params
    paths = {a.path for folder in ("", "figures", "base_models/gaussian")
             for a in client.list_artifacts(parent.info.run_id, folder or None)}
    assert {"summary.csv", "figures/gaussian_reward_vs_k.png", "base_models/gaussian/config.json"} <= paths

    again = tracking_sync.sync(t.uri, t.experiment)  # the ledger: nothing changed, nothing touched
    assert again["ok"] and again["pipelines"] == 0
    forced = tracking_sync.sync(t.uri, t.experiment, force=True)  # rechecked against the runs' record digests
    assert forced["logged"] == 0 and forced["skipped"] == stats["logged"]


@pytest.mark.parametrize("env", [["gaussian"]], indirect=True)
def test_a_failed_stage_fails_its_run_until_a_rerun_replaces_it(env):
    params, raw, out, _ = env
    t = params.tracking
    failing = {"domain": "gaussian", "seed": 0, "k": 2}
    spool_pipeline(params, raw, out, only=lambda job, point: job not in ("aggregate", "figures"),
                   fail=lambda job, point: job == "evaluate" and point == failing)
    tracking_sync.sync(t.uri, t.experiment)
    runs = _runs(params)
    failed = runs["gaussian/k2/seed0"]
    assert failed.info.status == "FAILED" and failed.info.end_time
    assert runs["gaussian/k4/seed0"].info.status == "FINISHED"
    assert runs["parent"].info.status == "FAILED"

    spool_pipeline(params, raw, out, only=lambda job, point: job == "evaluate" and point == failing
                   or job in ("aggregate", "figures"))  # the engine reruns the failed job, then the reports
    tracking_sync.sync(t.uri, t.experiment)
    runs = _runs(params)
    rebuilt = runs["gaussian/k2/seed0"]
    assert rebuilt.info.status == "FINISHED" and rebuilt.info.run_id != failed.info.run_id
    assert _history(params, rebuilt, "reward_mean") == [(5, 2.05), (10, 2.1)], "one point per step"
    assert rebuilt.data.metrics["filter/acceptance_rate"] == 0.25
    assert runs["parent"].info.status == "FINISHED"


@pytest.mark.parametrize("env", [["gaussian", "digits_t2i"]], indirect=True)
def test_a_partial_rerun_carries_forward_the_jobs_that_did_not_rerun(env, monkeypatch, small_params):
    params, raw, out, _ = env
    t = params.tracking
    spool_pipeline(params, raw, out)
    tracking_sync.sync(t.uri, t.experiment)

    # `dvc exp run -S finetune.learning_rate=0.01`: a new pipeline id; only finetune, evaluate and the reports rerun
    monkeypatch.setenv("PGRAFT_PIPELINE_ID", "pipeB")
    changed = {**small_params, "domains": raw["domains"], "tracking": raw["tracking"],
               "finetune": {**small_params["finetune"], "learning_rate": 0.01}}
    params_b = parse_params(changed)
    reran = ("finetune", "evaluate", "aggregate", "figures")
    spool_pipeline(params_b, params_b.model_dump(mode="json"), out, only=lambda job, point: job in reran)
    stats = tracking_sync.sync(t.uri, t.experiment)
    assert stats["ok"] and stats["carried"] > 0
    runs = _runs(params, "pipeB")
    assert len(runs) == 1 + 2 * 2 * 3 + 2, "every run of the matrix, also those whose jobs did not rerun"
    child = runs["gaussian/k2/seed1"]
    assert child.data.params["finetune.learning_rate"] == "0.01", "params are the new pipeline's"
    assert child.data.metrics["filter/acceptance_rate"] == 0.25, "the filter record carried from pipeA"
    assert child.data.tags["pgraft.carried.filter"] == "pipeA" and "pgraft.carried.evaluate" not in child.data.tags
    assert runs["digits_t2i/ddpo/seed0"].info.status == "FINISHED" and runs["parent"].info.status == "FINISHED"
    assert "gaussian/pretrain/final_loss" in runs["parent"].data.metrics


def test_a_real_stage_that_fails_spools_a_failed_record(env):
    params, raw, out, _ = env
    from pgraft.stages import reward
    from tracking_helpers import write_params_file

    pfile = write_params_file(raw)
    missing = str(out / "missing.npz")
    code = reward.main(["--params", pfile, "--domain", "gaussian", "--seed", "1", "--model", str(out / "base"),
                        "--samples", missing, "--reference", missing, "--out", str(out / "rewards.parquet")])
    assert code == 2
    (path,) = (out.parent / ".pgraft" / "spool").rglob("reward-gaussian-s1.json")
    rec = json.loads(path.read_text())
    assert rec["status"] == "FAILED" and "missing.npz" in rec["error"] and rec["end"] >= rec["start"]
    assert rec["options"]["samples"] == missing
    tracking_sync.sync(params.tracking.uri, params.tracking.experiment)
    runs = _runs(params)
    assert runs["gaussian/k0/seed1"].info.status == "FAILED" and runs["parent"].info.status == "FAILED"


def test_records_outside_the_matrix_make_no_runs(env):
    params, raw, out, _ = env
    spool_pipeline(params, raw, out, only=lambda job, point: job == "pretrain")
    assert tracking.record(params, "params.yaml", stage="evaluate", options={"domain": "gaussian", "seed": 0, "k": 3},
                           metrics={}, wall_s=0.1, error="refused --k") is not None
    stats = tracking_sync.sync(params.tracking.uri, params.tracking.experiment)
    assert stats["outside"] == 1
    runs = _runs(params)
    assert list(runs) == ["parent"] and runs["parent"].info.status == "RUNNING"


def test_outage_warns_and_keeps_the_spool(env, capsys):
    params, raw, out, _ = env
    spool_pipeline(params, raw, out, only=lambda job, point: job == "pretrain")
    stats = tracking_sync.sync("http://127.0.0.1:9", "pgraft-test")
    assert not stats["ok"]
    assert "unavailable" in capsys.readouterr().err
    assert list((out.parent / ".pgraft" / "spool").rglob("pretrain-*.json"))


def test_tracking_switch_off_writes_nothing(tmp_path, monkeypatch, small_params):
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path / ".pgraft"))
    params = parse_params(small_params)  # tracking.enabled is false in the shrunk params
    assert tracking.record(params, "params.yaml", stage="x", options={"domain": "gaussian"}, metrics={},
                           wall_s=0.0) is None
    assert not (tmp_path / ".pgraft").exists()


def test_unwritable_spool_warns_never_raises(tmp_path, monkeypatch, small_params, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(blocker))
    small_params["tracking"].update(enabled=True, live=False)
    params = parse_params(small_params)
    assert tracking.record(params, "params.yaml", stage="x", options={"domain": "gaussian"}, metrics={"a": 1.0},
                           wall_s=0.0) is None
    assert "warning" in capsys.readouterr().err
