"""Mirror the tracking spool into MLflow, in its own process: once (`sync`) or until idle (`drain`, the background
syncer that stages start); `python -m pgraft.tracking.sync sync|drain`, `pgraft track sync`.

No stage imports this module or MLflow (pgraft.tracking.spool starts it). Writers of one store (the background
syncer, aggregate's sync, `pgraft track sync`) take turns under a file lock beside the store; a ledger per store
in the state dir remembers which spooled pipelines are mirrored (by their files' names, times and sizes), so a
pass touches MLflow only for what changed. How records become runs: pgraft.tracking.runs.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

from pgraft.io import write_json
from pgraft.tracking import spool as tracking
from pgraft.tracking.spool import state_dir, warn
from pgraft.tracking.runs import PipelineMirror

POLL_S = 1.0  # the background syncer looks at the spool this often
#: after a pass that mirrored something, the syncer waits this long (at most idle_s) before the next one, so the
#: records of stages ending meanwhile go into MLflow in one pass: each pass reads every record of the pipeline
BATCH_S = 30.0
LOCK_TIMEOUT_S = tracking.LOCK_TIMEOUT_S
_NO_LOCKS: set[str] = set()  # lock files whose filesystem refused flock (warned once)


# ---- entry points ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=f"python -m {tracking.SYNC_MODULE}",
                                description="Mirror the tracking spool into MLflow: once (sync) or until idle (drain).")
    p.add_argument("action", choices=["sync", "drain"])
    p.add_argument("--uri", required=True, help="MLflow tracking URI")
    p.add_argument("--experiment", required=True, help="MLflow experiment name")
    p.add_argument("--pipeline", help="sync only this pipeline id")
    p.add_argument("--force", action="store_true", help="recheck every pipeline against MLflow, ignoring the ledger")
    p.add_argument("--idle-s", type=float, default=10.0, help="drain: exit after this many seconds without records")
    p.add_argument("--lock-fd", type=int, help="drain: the syncer lock, already taken by the starting stage")
    args = p.parse_args(argv)
    if args.action == "drain":
        return drain(args.uri, args.experiment, args.idle_s, args.lock_fd)
    stats = sync(args.uri, args.experiment, pipeline=args.pipeline, force=args.force)
    print(json.dumps(stats))
    return 0 if stats["ok"] else 1


def sync(uri: str, experiment: str, pipeline: str | None = None, force: bool = False,
         attempted: dict | None = None, quick: bool = False) -> dict:
    """Mirror the spooled pipelines that changed since the store last saw them; warn and return on any failure.

    `attempted` (drain): pipeline -> spool fingerprint already tried, not retried until a new record arrives.
    `quick`: look at the spool first and touch MLflow only when something changed.
    """
    stats = {"ok": False, "pipelines": 0, "records": 0, "logged": 0, "skipped": 0, "carried": 0, "outside": 0}
    spool = state_dir() / "spool"
    if not spool.is_dir() or (quick and not pending(uri, experiment, pipeline, attempted)):
        stats["ok"] = True
        return stats
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    try:
        from mlflow.tracking import MlflowClient

        with store_lock(uri):  # one writer at a time: run lookup + creation, logging, the ledger
            client = MlflowClient(tracking_uri=uri)
            exp = client.get_experiment_by_name(experiment) or client.get_experiment(
                client.create_experiment(experiment, artifact_location=artifact_root(uri)))
            ledger = _ledger(uri, experiment)
            if ledger.get("experiment") != [exp.experiment_id, exp.creation_time]:  # a new or recreated store
                ledger = {"experiment": [exp.experiment_id, exp.creation_time], "pipelines": {}}
            for pdir in sorted(p for p in spool.iterdir() if p.is_dir() and pipeline in (None, p.name)):
                entries = _entries(pdir)
                fp = _fingerprint(entries)
                if not force and (ledger["pipelines"].get(pdir.name) == fp or (attempted or {}).get(pdir.name) == fp):
                    continue
                if attempted is not None:
                    attempted[pdir.name] = fp
                stats["pipelines"] += 1
                carried = PipelineMirror(client, exp.experiment_id, pdir, stats).sync(sorted(entries))
                entries.update({name: _stat(pdir / name) for name in carried})  # written by this sync
                ledger["pipelines"][pdir.name] = _fingerprint(entries)
                write_json(_ledger_path(uri, experiment), ledger)
        stats["ok"] = True
    except Exception as err:  # noqa: BLE001 - an outage is reported, never raised
        stats["error"] = f"MLflow at {uri!r} unavailable ({type(err).__name__}: {str(err)[:200]})"
        warn(f"{stats['error']}; results are in the files, the spool in {spool} is kept: rerun `pgraft track sync`")
    return stats


def drain(uri: str, experiment: str, idle_s: float, lock_fd: int | None = None) -> int:
    """The background syncer: sync, look for new records every POLL_S (BATCH_S after a pass that mirrored some),
    exit after idle_s without any.

    It holds the syncer lock while it runs (a stage that finds it held starts nothing; the stage that starts it
    passes the lock on as `lock_fd`); after releasing it, it looks at the spool once more, so a record spooled
    meanwhile is never left behind.
    """
    files = tracking.syncer_files(uri, experiment)
    fd = os.open(files["lock"], os.O_RDWR | os.O_CREAT, 0o644) if lock_fd is None else lock_fd
    try:
        if lock_fd is not None:
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        elif not _take(fd):
            return 0  # another syncer runs
        attempted: dict[str, str] = {}
        first, last = True, time.monotonic()
        while True:
            stats = sync(uri, experiment, attempted=attempted, quick=not first)
            if not stats["ok"]:  # an outage: each pipeline is tried again once a new record of it arrives
                attempted.update(_fingerprints())
            if stats["pipelines"] or not stats["ok"] or first:
                last = time.monotonic()
                write_json(files["status"], {"ok": stats["ok"], "time": time.time(), "message": stats.get("error")})
                print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {os.getpid()} {json.dumps(stats)}", flush=True)
            first = False
            if stats["pipelines"]:
                time.sleep(max(0.0, min(BATCH_S, idle_s) - POLL_S))
            if time.monotonic() - last >= idle_s:
                fcntl.flock(fd, fcntl.LOCK_UN)
                if not pending(uri, experiment, None, attempted) or not _take(fd):
                    return 0
                last = time.monotonic()
            time.sleep(POLL_S)
    finally:
        os.close(fd)


def pending(uri: str, experiment: str, pipeline: str | None = None, attempted: dict | None = None) -> bool:
    """Whether a spooled pipeline changed since the store's ledger (or the drain's last attempt) saw it."""
    done = _ledger(uri, experiment).get("pipelines", {})
    return any(fp != done.get(pid) and fp != (attempted or {}).get(pid)
               for pid, fp in _fingerprints().items() if pipeline in (None, pid))


def _fingerprints() -> dict[str, str]:
    """Each spooled pipeline's fingerprint (its files' names, times and sizes)."""
    spool = state_dir() / "spool"
    dirs = [p for p in spool.iterdir() if p.is_dir()] if spool.is_dir() else []
    return {p.name: _fingerprint(_entries(p)) for p in dirs}


def _take(fd: int) -> bool:
    """Take the syncer lock without waiting and write this process's id into it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return True


# ---- files ----------------------------------------------------------------------------------------------------

def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_mtime_ns, st.st_size]


def _entries(pdir: Path) -> dict[str, list[int]]:
    out = {}
    for entry in os.scandir(pdir):
        if entry.name.endswith(".json"):
            with contextlib.suppress(FileNotFoundError):
                st = entry.stat()
                out[entry.name] = [st.st_mtime_ns, st.st_size]
    return out


def _fingerprint(entries: dict) -> str:
    return hashlib.sha256(json.dumps(sorted(entries.items())).encode()).hexdigest()[:16]


def _ledger_path(uri: str, experiment: str) -> Path:
    return state_dir() / f"synced-{tracking.store_id(uri, experiment)}.json"


def _ledger(uri: str, experiment: str) -> dict:
    try:
        ledger = json.loads(_ledger_path(uri, experiment).read_text())
    except (OSError, ValueError):
        return {"experiment": None, "pipelines": {}}
    return ledger if isinstance(ledger, dict) and isinstance(ledger.get("pipelines"), dict) else \
        {"experiment": None, "pipelines": {}}


# ---- the store ------------------------------------------------------------------------------------------------

def artifact_root(uri: str) -> str | None:
    """Where a new experiment keeps its artifacts: `mlartifacts/` beside a SQLite database (not ./mlruns under
    whatever directory the first sync ran in); MLflow's default for other stores."""
    parsed = urlparse(uri)
    db = unquote(parsed.path)[1:] if parsed.scheme == "sqlite" else ""
    if not db or db == ":memory:":
        return None
    return (Path(db).parent / "mlartifacts").resolve().as_uri()



def lock_path(uri: str) -> Path:
    """The lock file concurrent writers share: beside a SQLite database or file store, else (a tracking
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
                         f"syncs are not serialised; use a tracking server or tracking.live: false")
                _NO_LOCKS.add(str(path))
                locked = False
                break
        try:
            yield path
        finally:
            if locked:
                fcntl.flock(fh, fcntl.LOCK_UN)


if __name__ == "__main__":
    raise SystemExit(main())
