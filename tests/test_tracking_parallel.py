"""Live tracking under parallel jobs: stages only spool and wake one background syncer (never importing MLflow);
every record reaches MLflow once, the syncer exits when idle; concurrent writers of one SQLite store take turns."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pgraft.config import parse_params
from pgraft.tracking import spool as tracking, sync as tracking_sync

from pipeline_helpers import engine_env

PROCS = 6
KS = (0, 2, 4)

# one "stage" process: waits until every process is ready, then spools one evaluate record per k (each one
# wakes the background syncer, so that the wake-ups really meet), and reports whether it imported MLflow
CHILD = """
import sys, time, yaml
from pathlib import Path
from pgraft.config import parse_params
from pgraft.tracking import spool as tracking
params = parse_params(yaml.safe_load(open(sys.argv[1])))
seed, procs, ready = int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
(ready / str(seed)).touch()
deadline = time.time() + 120
while len(list(ready.iterdir())) < procs and time.time() < deadline:
    time.sleep(0.01)
slowest = 0.0
for k in (%s):
    t0 = time.perf_counter()
    path = tracking.record(params, sys.argv[1], stage="evaluate", options={"domain": "gaussian", "seed": seed, "k": k},
                           metrics={"reward_mean": 10.0 * seed + k}, wall_s=1.0)
    slowest = max(slowest, time.perf_counter() - t0)
    assert path is not None and path.exists(), "record not spooled"
assert "mlflow" not in sys.modules, "a stage must not import MLflow"
print("child", seed, "done; slowest record %%.3f s" %% slowest)
""" % ", ".join(map(str, KS))


def test_parallel_stages_reach_mlflow_live_through_one_background_syncer(tmp_path, monkeypatch, small_params):
    db = tmp_path / "mlflow.db"
    uri = f"sqlite:///{db}"
    small_params["seeds"] = list(range(PROCS))
    small_params["tracking"].update(enabled=True, uri=uri, experiment="parallel", live=True, idle_s=2.0)
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(small_params, sort_keys=False))
    state = tmp_path / ".pgraft"
    env = {**engine_env(), "PGRAFT_STATE_DIR": str(state), "PGRAFT_PIPELINE_ID": "parallel-test"}

    ready = tmp_path / "ready"
    ready.mkdir()
    t0 = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(pfile), str(seed), str(PROCS), str(ready)],
                              cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for seed in range(PROCS)]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    stages_s = time.perf_counter() - t0
    for seed, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0, f"process {seed} exited {p.returncode}:\n{out[-3000:]}"
        assert "warning" not in out, f"process {seed}:\n{out[-3000:]}"

    params = parse_params(small_params)
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(state))  # wait_idle looks at this state dir's syncer lock
    assert tracking.wait_idle(uri, "parallel", timeout=180), "the background syncer did not exit when idle"
    live_s = time.perf_counter() - t0
    log = (state / "syncer.log").read_text()
    assert "database is locked" not in log and "warning" not in log, log[-3000:]
    syncers = set(re.findall(r"^\d{4}-\d\d-\d\d \S+ (\d+) \{", log, flags=re.M))  # a line per pass

    from mlflow.tracking import MlflowClient

    client = MlflowClient(params.tracking.uri)
    exp = client.get_experiment_by_name("parallel")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    keys = [r.data.tags["pgraft.key"] for r in runs]
    expected = {f"gaussian/k{k}/seed{s}" for s in range(PROCS) for k in KS}
    assert sorted(keys) == sorted(expected | {"parent"}), "one parent and one child run per record, no duplicates"
    parent = next(r for r in runs if r.data.tags["pgraft.key"] == "parent")
    for r in runs:
        if r is parent:
            continue
        seed, k = int(r.data.params["seed"]), int(r.data.params["k"])
        assert r.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert r.info.status == "FINISHED", "evaluate is the last stage of a k run"
        history = client.get_metric_history(r.info.run_id, "reward_mean")
        assert [m.value for m in history] == [10.0 * seed + k], f"{r.data.tags['pgraft.key']}: {history}"
    slowest = max(float(out.split("slowest record ")[1].split()[0]) for out in outs)
    assert slowest < 1.0, f"spooling a record took {slowest:.2f} s"
    print(f"{PROCS} processes x {len(KS)} records: stages done in {stages_s:.1f} s (slowest record "
          f"{slowest * 1000:.0f} ms), all in MLflow and the syncer gone after {live_s:.1f} s; "
          f"{len(syncers)} syncer process(es)")


def test_lock_lives_beside_the_store(tmp_path, monkeypatch):
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path / "state"))
    assert tracking_sync.lock_path("sqlite:///mlflow.db") == Path("mlflow.db.lock")
    assert tracking_sync.lock_path(f"sqlite:///{tmp_path}/m.db") == tmp_path / "m.db.lock"
    assert tracking_sync.lock_path(f"file://{tmp_path}/mlruns") == tmp_path / "mlruns/.pgraft-sync.lock"
    assert tracking_sync.lock_path("http://127.0.0.1:5000") == tmp_path / "state/mlflow-sync.lock"


def test_a_sync_that_cannot_get_the_lock_warns_and_keeps_the_spool(tmp_path, monkeypatch, small_params, capsys):
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path / ".pgraft"))
    monkeypatch.setattr(tracking_sync, "LOCK_TIMEOUT_S", 0.5)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    small_params["tracking"].update(enabled=True, uri=uri, live=False)
    params = parse_params(small_params)
    path = tracking.record(params, "params.yaml", stage="reward", options={"domain": "gaussian", "seed": 0},
                           metrics={"a": 1.0}, wall_s=0.0)
    with open(tracking_sync.lock_path(uri), "w") as held:  # another writer holds the store
        holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1]); "
                                   "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                                   held.name], stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "held"
            stats = tracking_sync.sync(uri, "pgraft")
        finally:
            holder.kill()
            holder.wait()
    assert not stats["ok"] and path is not None and path.exists()
    assert "TimeoutError" in capsys.readouterr().err


def test_an_outage_never_fails_a_stage_and_the_syncer_still_exits(tmp_path, monkeypatch, small_params, capsys):
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path / ".pgraft"))
    monkeypatch.setenv("PGRAFT_PIPELINE_ID", "outage")
    uri = "http://127.0.0.1:9"  # nothing listens there
    small_params["tracking"].update(enabled=True, uri=uri, live=True, idle_s=1.0)
    params = parse_params(small_params)

    def spool(seed):
        t0 = time.perf_counter()
        path = tracking.record(params, "params.yaml", stage="reward", options={"domain": "gaussian", "seed": seed},
                               metrics={"reward_mean": 1.0}, wall_s=0.1)
        assert path is not None and path.exists() and time.perf_counter() - t0 < 1.0
    spool(0)
    assert tracking.wait_idle(uri, "pgraft", timeout=120), "the syncer must give up and exit, not retry forever"
    assert "unavailable" in (tmp_path / ".pgraft" / "syncer.log").read_text()
    capsys.readouterr()
    spool(1)  # the next stage reports the failed sync, and completes
    assert "pgraft track sync" in capsys.readouterr().err
    assert tracking.wait_idle(uri, "pgraft", timeout=120)
    assert len(list((tmp_path / ".pgraft" / "spool").rglob("reward-*.json"))) == 2, "the records stay spooled"
