"""Concurrent stages logging to one SQLite MLflow store (tracking.sync_each_stage): no lock errors, no duplicates."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import yaml

from pgraft.config import parse_params
from pgraft.stages import tracking

from pipeline_helpers import engine_env

PROCS = 6
KS = (0, 2, 4)

# one "stage" process: imports what a sync needs, waits until every process is ready, then logs one record
# per k, each synced at once (so that the syncs really meet)
CHILD = """
import os, sys, time, yaml
from pathlib import Path
import mlflow.tracking
from pgraft.config import parse_params
from pgraft.stages import tracking
params = parse_params(yaml.safe_load(open(sys.argv[1])))
seed, procs, ready = int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
(ready / str(seed)).touch()
deadline = time.time() + 120
while len(list(ready.iterdir())) < procs and time.time() < deadline:
    time.sleep(0.01)
for k in (%s):
    path = tracking.record(params, sys.argv[1], stage="evaluate", domain="gaussian", seed=seed, k=k,
                           metrics={"reward_mean": 10.0 * seed + k}, wall_s=1.0)
    assert path is not None and path.exists(), "record not spooled"
print("child", seed, "done")
""" % ", ".join(map(str, KS))


def test_concurrent_stages_log_every_record_once(tmp_path, small_params):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    small_params["tracking"].update(enabled=True, uri=uri, experiment="parallel", sync_each_stage=True)
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(small_params, sort_keys=False))
    env = {**engine_env(), "PGRAFT_STATE_DIR": str(tmp_path / ".pgraft"), "PGRAFT_PIPELINE_ID": "parallel-test"}

    ready = tmp_path / "ready"
    ready.mkdir()
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(pfile), str(seed), str(PROCS), str(ready)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for seed in range(PROCS)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    elapsed = time.perf_counter() - t0
    for seed, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"process {seed} exited {p.returncode}:\n{out[-3000:]}"
        assert "database is locked" not in out and "warning" not in out, f"process {seed}:\n{out[-3000:]}"

    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("parallel")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    keys = [r.data.tags["pgraft.key"] for r in runs]
    expected = {f"gaussian/seed{s}/k{k}" for s in range(PROCS) for k in KS}
    assert sorted(keys) == sorted(expected | {"parent"}), "one parent and one child run per record, no duplicates"
    parent = next(r for r in runs if r.data.tags["pgraft.key"] == "parent")
    for r in runs:
        if r.data.tags["pgraft.key"] == "parent":
            continue
        seed, k = int(r.data.tags["seed"]), int(r.data.tags["k"])
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        history = client.get_metric_history(r.info.run_id, "evaluate/reward_mean")
        assert [m.value for m in history] == [10.0 * seed + k], f"{r.data.tags['pgraft.key']}: {history}"
    assert elapsed < 120, f"{PROCS} concurrent processes took {elapsed:.0f} s"
    print(f"{PROCS} processes x {len(KS)} records: {elapsed:.1f} s")


def test_lock_lives_beside_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path / "state"))
    assert tracking.lock_path("sqlite:///mlflow.db") == Path("mlflow.db.lock")
    assert tracking.lock_path(f"sqlite:///{tmp_path}/m.db") == tmp_path / "m.db.lock"
    assert tracking.lock_path(f"file://{tmp_path}/mlruns") == tmp_path / "mlruns/.pgraft-sync.lock"
    assert tracking.lock_path("http://127.0.0.1:5000") == tmp_path / "state/mlflow-sync.lock"


def test_a_sync_that_cannot_get_the_lock_warns_and_keeps_the_spool(tmp_path, monkeypatch, small_params, capsys):
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path / ".pgraft"))
    monkeypatch.setattr(tracking, "LOCK_TIMEOUT_S", 0.5)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    small_params["tracking"].update(enabled=True, uri=uri, sync_each_stage=True)
    params = parse_params(small_params)
    with open(tracking.lock_path(uri), "w") as held:  # another writer holds the store
        holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1]); "
                                   "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                                   held.name], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            path = tracking.record(params, "params.yaml", stage="reward", domain="gaussian", seed=0, k=None,
                                   metrics={"a": 1.0}, wall_s=0.0)
        finally:
            holder.kill()
            holder.wait()
    assert path is not None and path.exists()
    assert "TimeoutError" in capsys.readouterr().err
