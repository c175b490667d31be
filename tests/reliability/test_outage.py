"""Tracking outages (server unreachable, SQLite file locked): stages complete, results are in the files."""

from __future__ import annotations

import sqlite3
import time

from pgraft.stages import aggregate, reward

from pipeline_helpers import stage_commands, write_params


def _with_tracking(work, params, uri, live):
    tracked = {**params, "tracking": {**params["tracking"], "enabled": True, "uri": uri, "live": live,
                                      "idle_s": 1.0}}
    write_params(work / "tracked.yaml", tracked)


def _args(params, mod):
    args = list(next(a for m, a in stage_commands(params) if m is mod))
    args[args.index("--params") + 1] = "tracked.yaml"
    return args


def test_unreachable_server_never_fails_a_stage(prepared, monkeypatch, capsys):
    work, params = prepared
    monkeypatch.chdir(work)
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(work / ".pgraft-outage"))
    _with_tracking(work, params, "http://127.0.0.1:9", live=True)
    t0 = time.perf_counter()
    assert reward.main(_args(params, reward)) == 0
    assert time.perf_counter() - t0 < 60
    from pgraft.tracking import spool as tracking

    assert tracking.wait_idle("http://127.0.0.1:9", params["tracking"]["experiment"], timeout=120)
    log = (work / ".pgraft-outage" / "syncer.log").read_text()
    assert "unavailable" in log and "pgraft track sync" in log
    assert list((work / ".pgraft-outage" / "spool").rglob("reward-*.json")), "the record must stay spooled"


def test_locked_sqlite_never_fails_aggregate(prepared, monkeypatch, capsys, tmp_path):
    work, params = prepared
    monkeypatch.chdir(work)
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(work / ".pgraft-locked"))
    db = tmp_path / "mlflow.db"
    _with_tracking(work, params, f"sqlite:///{db}", live=False)
    assert aggregate.main(_args(params, aggregate)) == 0  # creates the database
    capsys.readouterr()
    holder = sqlite3.connect(db, timeout=0.1)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        (work / "results/summary.csv").unlink()
        t0 = time.perf_counter()
        assert aggregate.main(_args(params, aggregate)) == 0
        elapsed = time.perf_counter() - t0
    finally:
        holder.rollback()
        holder.close()
    err = capsys.readouterr().err
    assert (work / "results/summary.csv").exists()
    assert "unavailable" in err, err[-2000:]
    assert elapsed < 120
