"""MLflow mirroring: parent run per invocation, child per (domain, k, seed); outages never fail a stage."""

from __future__ import annotations

import json

import pytest

from pgraft.config import parse_params
from pgraft.stages import tracking


@pytest.fixture
def spool(tmp_path, monkeypatch, small_params):
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path / ".pgraft"))
    monkeypatch.setenv("PGRAFT_PIPELINE_ID", "test-pipeline")
    small_params["tracking"]["enabled"] = True
    params = parse_params(small_params)
    tracking.record(params, "params.yaml", stage="pretrain", domain="gaussian", seed=None, k=None,
                    metrics={"final_loss": 0.5}, wall_s=1.0)
    tracking.record(params, "params.yaml", stage="filter", domain="gaussian", seed=0, k=None,
                    metrics={"acceptance_rate": 0.25}, wall_s=1.0)
    for k in params.truncation_grid:
        tracking.record(params, "params.yaml", stage="evaluate", domain="gaussian", seed=0, k=k,
                        metrics={"b5": {"reward_mean": float(k)}}, wall_s=1.0)
    return tmp_path, params


def test_sync_creates_parent_and_children(spool):
    tmp_path, params = spool
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    stats = tracking.sync(uri, "pgraft-test")
    assert stats["ok"] and stats["records"] == 2 + len(params.truncation_grid)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("pgraft-test")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("pgraft.key") == "parent"]
    children = [r for r in runs if r.data.tags.get("pgraft.key") != "parent"]
    assert len(parents) == 1
    # pretrain fans out over every seed and k; the seed-0 runs carry filter and evaluate too
    assert len(children) == len(params.seeds) * len(params.truncation_grid)
    child = next(r for r in children if r.data.tags["pgraft.key"] == "gaussian/seed0/k4")
    assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
    assert child.data.metrics["evaluate/b5.reward_mean"] == 4.0
    assert child.data.metrics["filter/acceptance_rate"] == 0.25
    assert "git_commit" in child.data.tags and "stage.evaluate" in child.data.tags
    again = tracking.sync(uri, "pgraft-test")  # idempotent
    assert again["logged"] == 0 and again["skipped"] == stats["logged"]


def test_outage_warns_and_keeps_the_spool(spool, capsys):
    tmp_path, _ = spool
    stats = tracking.sync("http://127.0.0.1:9", "pgraft-test")
    assert not stats["ok"]
    assert "unavailable" in capsys.readouterr().err
    assert list((tmp_path / ".pgraft" / "spool").rglob("*.json"))


def test_tracking_switch_off_writes_nothing(tmp_path, monkeypatch, small_params):
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path / ".pgraft"))
    params = parse_params(small_params)  # tracking.enabled is false in the shrunk params
    assert tracking.record(params, "params.yaml", stage="x", domain="gaussian", seed=0, k=0,
                           metrics={}, wall_s=0.0) is None
    assert not (tmp_path / ".pgraft").exists()


def test_unwritable_spool_warns_never_raises(tmp_path, monkeypatch, small_params, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(blocker))
    small_params["tracking"]["enabled"] = True
    params = parse_params(small_params)
    assert tracking.record(params, "params.yaml", stage="x", domain="gaussian", seed=0, k=0,
                           metrics={"a": 1.0}, wall_s=0.0) is None
    assert "warning" in capsys.readouterr().err
