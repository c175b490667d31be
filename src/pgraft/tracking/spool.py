"""MLflow tracking, stage side: a stage spools one JSON record and wakes the background mirror; never MLflow itself.

Files are the source of truth. `record` writes the stage's record to <state dir>/spool/<pipeline id>/<name>.json
(its matrix point, status, metrics, curves, file options, start and end time) beside the pipeline's params
(`_pipeline.json`). With tracking.live it then starts the background syncer (`python -m
pgraft.tracking.sync drain`, a detached process with its log in the state dir) unless one already runs
for the store; that process mirrors the spool into MLflow and exits once idle. A stage never imports MLflow and
never waits for it; any tracking problem is a warning, never a failed stage, and the spool stays for a later
`pgraft track sync`. How records become runs: pgraft.tracking.runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import numbers
import os
import subprocess
import sys
import time
from pathlib import Path

from pgraft.io import write_json

STATE_DIR_ENV = "PGRAFT_STATE_DIR"
PIPELINE_ENV = "PGRAFT_PIPELINE_ID"
FORMAT = 2  # records of another format (older code) are left alone by the mirror
PIPELINE_FILE = "_pipeline.json"  # beside the records: the pipeline's params (records are the other *.json)
LOCK_TIMEOUT_S = 600.0  # a sync waits this long for other writers of the store before it gives up (spool kept)
SYNC_MODULE = "pgraft.tracking.sync"  # run as a separate process: stages never import it nor MLflow
REPORT_STAGES = ("aggregate", "figures")  # without tracking.live, their records are mirrored at once (blocking)
DDPO_METHOD = "ddpo"  # the `method` that the ddpo stage writes into its checkpoints' config.json


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


def record_name(stage: str, variant=None, domain=None, seed=None, k=None, n=None) -> str:
    """The spool file of one stage instance: its stage, variant and matrix point (unique within a pipeline)."""
    parts = [stage, variant, domain] + [f"{a}{v}" for a, v in (("s", seed), ("k", k), ("n", n)) if v is not None]
    return "-".join(str(p) for p in parts if p is not None) + ".json"


def record(params, params_path: str, *, stage: str, options: dict, metrics: dict, wall_s: float,
           error: BaseException | str | None = None) -> Path | None:
    """Spool one stage's record (a failed stage's too, with `error`) and wake the mirror; never raises.

    `options`: the stage's parsed command-line options: its matrix point (domain, seed, k, n) and file paths.
    `metrics`: flat or nested numbers; `_artifacts` (small files to attach) and `_curves` ({name: [[step,
    value], ...]}, logged as step-wise metrics) are taken out of it.
    """
    if not params.tracking.enabled:
        return None
    try:
        metrics = dict(metrics)
        artifacts = [str(a) for a in metrics.pop("_artifacts", [])]
        curves = _curves(metrics.pop("_curves", None) or {})
        point = {a: options.get(a) for a in ("domain", "seed", "k", "n")}
        variant = _variant(stage, options)
        commit = git_commit()
        pid = pipeline_id(params_path, commit)
        end = time.time()
        rec = {"format": FORMAT, "pipeline_id": pid, "stage": stage, "variant": variant, **point,
               "status": "FAILED" if error is not None else "FINISHED",
               "error": None if error is None else _error_text(error),
               "metrics": {key: float(v) for key, v in flatten(metrics).items() if _is_number(v)},
               "curves": curves, "artifacts": artifacts,
               "options": {key: str(v) for key, v in options.items() if v is not None and key not in point},
               "start": end - wall_s, "end": end, "wall_s": wall_s, "git_commit": commit}
        pdir = state_dir() / "spool" / pid
        if not (pdir / PIPELINE_FILE).exists():  # the same for every record of the pipeline: written once
            write_json(pdir / PIPELINE_FILE, {"format": FORMAT, "pipeline_id": pid, "params_path": str(params_path),
                                              "git_commit": commit, "params": params.model_dump(mode="json")})
        path = pdir / record_name(stage, variant, **point)
        write_json(path, rec)
    except Exception as err:  # noqa: BLE001 - tracking must never fail a stage
        warn(f"could not spool the tracking record ({err!r}); results are in the files")
        return None
    t = params.tracking
    try:
        if t.live:
            start_syncer(t.uri, t.experiment, t.idle_s)
        elif stage in REPORT_STAGES:
            sync(t.uri, t.experiment, pipeline=pid)
    except Exception as err:  # noqa: BLE001 - tracking must never fail a stage
        warn(f"could not start the MLflow sync ({err!r}); the record stays in the spool for `pgraft track sync`")
    return path


def _variant(stage: str, options: dict) -> str | None:
    """"ddpo" when `evaluate` scores DDPO checkpoints (the evaluate_ddpo jobs), else None."""
    finetuned = options.get("finetuned")
    if stage != "evaluate" or not finetuned:
        return None
    try:
        cfg = json.loads((Path(finetuned) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return DDPO_METHOD if isinstance(cfg, dict) and cfg.get("method") == DDPO_METHOD else None


def _curves(curves: dict) -> dict:
    """{name: [[step, value], ...]} with integer steps and finite values (anything else dropped)."""
    out = {}
    for name, points in curves.items():
        pairs = [p for p in points if isinstance(p, (list, tuple)) and len(p) == 2]
        out[str(name)] = [[int(s), float(v)] for s, v in pairs
                          if _is_number(s) and _is_number(v) and math.isfinite(float(v))]
    return out


def store_id(uri: str, experiment: str) -> str:
    """A short name for one MLflow store + experiment (its syncer lock, ledger and status files)."""
    return hashlib.sha256(f"{uri}\n{experiment}".encode()).hexdigest()[:12]


def syncer_files(uri: str, experiment: str) -> dict[str, Path]:
    """The background syncer's lock (held while it runs; its pid inside), status and shared log."""
    base = state_dir() / f"syncer-{store_id(uri, experiment)}"
    return {"lock": base.with_suffix(".lock"), "status": base.with_suffix(".status.json"),
            "log": state_dir() / "syncer.log"}


_SPAWNED: list[subprocess.Popen] = []  # syncers started by this process (reaped by wait_idle)


def start_syncer(uri: str, experiment: str, idle_s: float) -> bool:
    """Start the background syncer for the store unless one runs (it will see the new record); never raises.

    A running syncer holds an exclusive lock; this process only tests it (LOCK_NB), so it never waits.
    """
    files = syncer_files(uri, experiment)
    try:
        _report_failed_sync(files["status"])
        files["lock"].parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(files["lock"], os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a syncer runs: it rescans the spool before it exits
            os.ftruncate(fd, 0)
            env = {**os.environ, STATE_DIR_ENV: str(state_dir().resolve())}
            with open(files["log"], "a") as log:  # the lock passes to the syncer with its descriptor: no gap
                proc = subprocess.Popen([sys.executable, "-m", SYNC_MODULE, "drain", "--uri", uri, "--experiment",
                                         experiment, "--idle-s", str(idle_s), "--lock-fd", str(fd)],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                        start_new_session=True, pass_fds=(fd,))
        finally:
            os.close(fd)  # the lock stays held by the syncer's copy of the descriptor (flock)
        _SPAWNED.append(proc)
        return True
    except OSError as err:
        warn(f"could not start the background MLflow syncer ({err!r}); records stay in the spool for "
             f"`pgraft track sync` (aggregate also syncs)")
        return False


def _report_failed_sync(status_path: Path) -> None:
    """Warn when the background syncer's last attempt failed (e.g. the tracking server is down)."""
    try:
        status = json.loads(status_path.read_text())
    except (OSError, ValueError):
        return
    if isinstance(status, dict) and not status.get("ok", True):
        warn(f"the last background MLflow sync failed ({status.get('message', '?')}); results are in the files "
             f"and the records stay in the spool: run `pgraft track sync` once MLflow is back")


def sync(uri: str, experiment: str, pipeline: str | None = None, force: bool = False) -> dict:
    """Mirror the spool into MLflow now, in a separate process (so this one never imports MLflow), and wait.

    Returns the mirror's counts ({"ok": bool, ...}); on any failure warns and returns ok False.
    """
    cmd = [sys.executable, "-m", SYNC_MODULE, "sync", "--uri", uri, "--experiment", experiment]
    cmd += (["--pipeline", pipeline] if pipeline else []) + (["--force"] if force else [])
    env = {**os.environ, STATE_DIR_ENV: str(state_dir().resolve())}
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=LOCK_TIMEOUT_S + 600)
    except (OSError, subprocess.SubprocessError) as err:
        warn(f"could not run the MLflow sync ({err!r}); the spool is kept: rerun `pgraft track sync`")
        return {"ok": False}
    sys.stderr.write(out.stderr)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        warn(f"the MLflow sync exited {out.returncode} without counts; the spool is kept: rerun `pgraft track sync`")
        return {"ok": False}


def wait_idle(uri: str, experiment: str, timeout: float = 120.0) -> bool:
    """Wait until no background syncer runs for the store (tests; scripts that read MLflow right after a run)."""
    lock = syncer_files(uri, experiment)["lock"]
    deadline = time.monotonic() + timeout
    for proc in _SPAWNED:  # reap the syncers this process started
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
    _SPAWNED.clear()
    if not lock.exists():
        return True
    with open(lock) as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
                continue
            pid = fh.read().strip()
            fcntl.flock(fh, fcntl.LOCK_UN)
            while pid.isdigit() and _alive(int(pid)):  # it released the lock and is about to exit
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
            fh.seek(0)
            if fh.read().strip() == pid:  # no new syncer took over meanwhile
                return True


def _alive(pid: int) -> bool:
    """Whether process `pid` still runs (a zombie waiting for its parent counts as ended)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _error_text(error: BaseException | str) -> str:
    text = f"{type(error).__name__}: {error}" if isinstance(error, BaseException) else str(error)
    return text[:2000]


def warn(msg: str) -> None:
    print(f"pgraft tracking: warning: {msg}", file=sys.stderr)


def flatten(d: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, v in d.items():
        name = f"{prefix}{key}"
        if isinstance(v, dict):
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real)  # numpy scalars and bools too (1.0 / 0.0): e.g. invert's `converged`
