"""MLflow mirroring: stages spool a JSON record each; `sync` mirrors the spool into MLflow runs.

Files are the source of truth. A stage only writes its record (no MLflow import, no database lock);
`sync` (run by `aggregate`, by `pgraft track sync`, or after each stage with
tracking.sync_each_stage) creates one parent run per pipeline invocation and one child run per
(domain, truncation point, seed), tagged with the git commit and the stages logged. Any tracking
failure is reported as a warning and never fails a stage; the spool stays for a later sync.
Concurrent syncs (parallel jobs with sync_each_stage) take turns under an exclusive file lock beside
the store (SQLite file or file store; the state dir for a tracking server), so no job meets a locked
database and no run or metric is logged twice.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from pgraft.io import write_json

STATE_DIR_ENV = "PGRAFT_STATE_DIR"
PIPELINE_ENV = "PGRAFT_PIPELINE_ID"
LOCK_TIMEOUT_S = 600.0  # a sync waits this long for the others before it gives up (the spool stays)
_NO_LOCKS: set[str] = set()  # lock files whose filesystem refused flock (warned once)


def state_dir() -> Path:
    return Path(os.environ.get(STATE_DIR_ENV, ".pgraft"))


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def pipeline_id(params_path: str, commit: str) -> str:
    """PGRAFT_PIPELINE_ID if set (one per engine invocation), else git commit + params hash."""
    if os.environ.get(PIPELINE_ENV):
        return os.environ[PIPELINE_ENV]
    try:
        digest = hashlib.sha256(Path(params_path).read_bytes()).hexdigest()[:10]
    except OSError:
        digest = "noparams"
    return f"{commit[:10]}-{digest}"


def record(params, params_path: str, *, stage: str, domain, seed, k, metrics: dict, wall_s: float) -> Path | None:
    """Spool one stage's record; never raises (a tracking problem must not fail a stage)."""
    if not params.tracking.enabled:
        return None
    try:
        artifacts = [str(a) for a in metrics.pop("_artifacts", [])]
        flat = {key: float(v) for key, v in _flatten(metrics).items() if _is_number(v)}
        commit = git_commit()
        rec = {
            "pipeline_id": pipeline_id(params_path, commit), "stage": stage, "domain": domain, "seed": seed,
            "k": k, "metrics": flat, "artifacts": artifacts, "wall_s": wall_s, "git_commit": commit,
            "time": time.time(), "seeds": list(params.seeds), "grid": list(params.truncation_grid),
            "params": {key: str(v) for key, v in _flatten(params.model_dump(mode="json")).items()},
        }
        name = f"{stage}-{domain}-s{seed}-k{k}.json"
        path = state_dir() / "spool" / rec["pipeline_id"] / name
        write_json(path, rec)
        if params.tracking.sync_each_stage:
            sync(params.tracking.uri, params.tracking.experiment, pipeline=rec["pipeline_id"])
        return path
    except Exception as err:  # noqa: BLE001 - tracking must never fail a stage
        warn(f"could not spool the tracking record ({err!r}); results are in the files")
        return None


def warn(msg: str) -> None:
    print(f"pgraft tracking: warning: {msg}", file=sys.stderr)


def sync(uri: str, experiment: str, pipeline: str | None = None) -> dict:
    """Mirror every spooled record (of one pipeline id, if given) into MLflow. Returns counts; on any
    failure warns and returns."""
    stats = {"records": 0, "logged": 0, "skipped": 0, "ok": False}
    spool = state_dir() / "spool"
    if not spool.exists():
        stats["ok"] = True
        return stats
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        from mlflow.tracking import MlflowClient

        with store_lock(uri):  # one writer at a time: table creation, run lookup + creation, logging
            client = MlflowClient(tracking_uri=uri)
            exp = client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
            for pdir in sorted(p for p in spool.iterdir() if p.is_dir() and pipeline in (None, p.name)):
                records = [json.loads(f.read_text()) for f in sorted(pdir.glob("*.json"))]
                stats["records"] += len(records)
                _sync_pipeline(client, exp_id, pdir.name, records, stats)
        stats["ok"] = True
    except Exception as err:  # noqa: BLE001 - an outage is reported, never raised
        warn(f"MLflow at {uri!r} unavailable ({type(err).__name__}: {str(err)[:200]}); "
             f"results are in the files, the spool in {spool} is kept: rerun `pgraft track sync`")
    return stats


def lock_path(uri: str) -> Path:
    """The lock file concurrent syncs share: beside a SQLite database or file store, else (a tracking
    server, which serialises its own writes) in the state dir, so one project's syncs still take turns."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        db = unquote(parsed.path)[1:]  # sqlite:///rel.db -> rel.db, sqlite:////abs.db -> /abs.db
        if db and db != ":memory:":
            return Path(db + ".lock")
    elif parsed.scheme == "file" or (parsed.scheme == "" and not uri.startswith("databricks")):
        return Path(unquote(parsed.path) or ".") / ".pgraft-sync.lock"
    return state_dir() / "mlflow-sync.lock"


@contextlib.contextmanager
def store_lock(uri: str, timeout: float | None = None):
    """Hold an exclusive inter-process lock (fcntl.flock) for writing to the store at `uri`."""
    timeout = LOCK_TIMEOUT_S if timeout is None else timeout
    path = lock_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        deadline, delay, locked = time.monotonic() + timeout, 0.02, True
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another process held {path} for over {timeout:.0f} s") from None
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)
            except OSError as err:
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                if not _NO_LOCKS:
                    warn(f"file locks do not work on the filesystem of {path} ({err.strerror}): concurrent "
                         f"syncs are not serialised; use a tracking server or tracking.sync_each_stage: false")
                _NO_LOCKS.add(str(path))
                locked = False
                break
        try:
            yield path
        finally:
            if locked:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _sync_pipeline(client, exp_id: str, pid: str, records: list[dict], stats: dict) -> None:
    from mlflow.entities import Metric, Param, RunTag

    existing = client.search_runs([exp_id], filter_string=f"tags.`pgraft.pipeline_id` = '{pid}'", max_results=5000)
    runs = {r.data.tags.get("pgraft.key"): r for r in existing}
    tags_of = {key: dict(r.data.tags) for key, r in runs.items()}
    commit = records[0]["git_commit"] if records else "unknown"

    def get_run(key: str, tags: dict):
        if key not in runs:
            runs[key] = client.create_run(exp_id, tags={"pgraft.pipeline_id": pid, "pgraft.key": key,
                                                        "git_commit": commit, **tags})
            tags_of[key] = {}
        return runs[key]

    parent = get_run("parent", {"mlflow.runName": f"pipeline {pid}"})
    for rec in records:
        seeds = [rec["seed"]] if rec["seed"] is not None else rec["seeds"]
        ks = [rec["k"]] if rec["k"] is not None else rec["grid"]
        digest = hashlib.sha256(json.dumps(rec, sort_keys=True).encode()).hexdigest()[:16]
        for seed in seeds:
            for k in ks:
                key = f"{rec['domain']}/seed{seed}/k{k}"
                run = get_run(key, {"mlflow.parentRunId": parent.info.run_id, "domain": str(rec["domain"]),
                                    "seed": str(seed), "k": str(k), "mlflow.runName": key})
                tag = f"stage.{rec['stage']}"
                if tags_of[key].get(tag) == digest:
                    stats["skipped"] += 1
                    continue
                now = int(rec["time"] * 1000)
                metrics = [Metric(f"{rec['stage']}/{m}", v, now, 0) for m, v in rec["metrics"].items()]
                metrics.append(Metric(f"{rec['stage']}/wall_s", rec["wall_s"], now, 0))
                params = [] if tags_of[key].get("pgraft.params") else [Param(n, v[:6000]) for n, v in rec["params"].items()]
                tags = [RunTag(tag, digest), RunTag("pgraft.params", "1"), RunTag("git_commit", rec["git_commit"]),
                        RunTag("stage", rec["stage"])]
                for i in range(0, max(len(metrics), len(params), 1), 100):
                    client.log_batch(run.info.run_id, metrics=metrics[i:i + 100], params=params[i:i + 100],
                                     tags=tags if i == 0 else [])
                for art in rec["artifacts"]:
                    if Path(art).is_file() and Path(art).stat().st_size < 5_000_000:
                        client.log_artifact(run.info.run_id, art, artifact_path=rec["stage"])
                tags_of[key].update({tag: digest, "pgraft.params": "1"})
                stats["logged"] += 1


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, v in d.items():
        name = f"{prefix}{key}"
        if isinstance(v, dict):
            out.update(_flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
