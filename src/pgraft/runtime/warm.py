"""Warm stage processes: a server that has imported torch, diffusers and the other heavy libraries once, and forks
a fresh child for every stage command (docs/PIPELINE.md "Threads and reproducibility", "Where the time goes").

A stage process spends about 4 s importing its libraries before any work; the default pipeline runs ~235 of
them. `pgraft warm <command>` starts the server, runs the command (an engine: `snakemake ...`, `dvc repro`) with
PGRAFT_WARM naming the server's socket, and stops the server afterwards. Each stage command the engine starts is
unchanged: `run_stage` hands its stage name and arguments to the server along with its stdin/stdout/stderr, the
server forks, and the child runs the stage's `main` exactly as the command would (the project's own modules are
imported afresh from disk in the child; only third-party libraries are shared), writing to the caller's files;
the caller exits with the child's exit status. The caller dying (an engine cancelling the job) kills the child.

Results do not change: the child is the same code on the same interpreter, with the caller's working directory
and environment. The server serves only callers whose interpreter, module search path, thread count and the
environment variables libraries read at import time (FINGERPRINT_VARS) equal its own; any other caller, or any
caller when the server is unreachable, runs the stage itself as before.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV = "PGRAFT_WARM"  # the socket of the server a stage hands itself to; unset or empty: run in this process
#: read by libraries when they are imported (the server imported them under its own values)
FINGERPRINT_VARS = ("HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "TRANSFORMERS_OFFLINE", "TORCH_HOME",
                    "CUDA_VISIBLE_DEVICES", "MPLBACKEND", "PYTORCH_CUDA_ALLOC_CONF")
#: imported once by the server (no threads started, nothing that reads a stage's inputs): ~4 s per stage saved.
#: pandas / pyarrow stay out (and scikit-learn, which imports pandas): importing pyarrow starts jemalloc's
#: background thread, which a fork does not carry.
PRELOAD = ("numpy", "scipy.special", "scipy.optimize", "scipy.stats", "torch", "torch.optim", "diffusers",
           "safetensors.torch", "pydantic", "yaml", "tqdm", "rdkit.Chem", "rdkit.Chem.QED")
_HEADER = struct.Struct("!Q")  # length of the JSON request that follows the file descriptors


def fingerprint() -> dict:
    """What must be equal between the server and a caller for a forked child to behave like the caller."""
    from pgraft.runtime.threads import thread_count

    # sys.path[0] is the directory a command started in (the child takes the caller's whole path)
    # python and python3 of one virtualenv are links to one interpreter (the path below tells virtualenvs apart)
    return {"python": os.path.realpath(sys.executable), "path": [os.path.abspath(p or ".") for p in sys.path[1:]],
            "threads": thread_count(), "env": {v: os.environ.get(v) for v in FINGERPRINT_VARS}}


# ---- the caller side (run_stage) --------------------------------------------------------------------------------

def delegate(stage: str, argv: list[str]) -> int | None:
    """Run stage `stage` with `argv` in a child of the warm server; its exit status, or None when there is no
    server to hand it to (PGRAFT_WARM unset, unreachable, or a server that does not match this process)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        return None
    with conn:
        body = json.dumps({"stage": stage, "argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ),
                           "path": sys.path, "fingerprint": fingerprint()}).encode()
        socket.send_fds(conn, [_HEADER.pack(len(body))], [0, 1, 2])
        conn.sendall(body)
        replies = conn.makefile("rb")
        first = json.loads(replies.readline() or b'{"run": "here"}')
        if "started" not in first:  # declined (or gone before taking it): this process runs the stage
            return None
        last = replies.readline()
    if not last:  # the server died while the stage ran: stop its child, fail like a killed stage
        try:
            os.kill(int(first["started"]), signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
        print(f"pgraft {stage}: the warm stage server ({path}) went away while the stage ran", file=sys.stderr)
        return 1
    return int(json.loads(last)["exit"])


# ---- the server ---------------------------------------------------------------------------------------------------

def _read_request(conn: socket.socket) -> tuple[dict, list[int]]:
    head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, 3)
    (size,) = _HEADER.unpack(head)
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError("caller closed the connection mid-request")
        data += chunk
    return json.loads(data), fds


def _child(request: dict, fds: list[int]) -> None:
    """In the forked child: become the caller's stage process, run the stage, exit with its status."""
    code = 1
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.pop(ENV, None)  # the child runs the stage itself
        sys.path[:] = request["path"]
        for name in [m for m in sys.modules if m == "pgraft" or m.startswith("pgraft.")]:
            del sys.modules[name]  # the project's code as it is on disk now, like a fresh process
        import importlib

        sys.argv = [f"pgraft {request['stage']}", *request["argv"]]
        code = importlib.import_module(f"pgraft.stages.{request['stage']}").main(request["argv"])
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, (int, type(None))):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported as the stage process would, then its status
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001
                pass
        os._exit(code if isinstance(code, int) else 1)


def _threads() -> int:
    """Threads of this process (Linux: /proc; elsewhere Python's own count)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def _exit_status(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code  # killed by signal s: 128 + s, as a shell reports it


class _Server:
    """The serve loop's state: the listening socket, the running children (pid -> caller connection) and counts."""

    def __init__(self, listener: socket.socket, own: dict):
        self.listener, self.own = listener, own
        self.sel = selectors.DefaultSelector()
        self.sel.register(listener, selectors.EVENT_READ)
        self.children: dict[int, socket.socket] = {}
        self.served, self.declined = 0, []
        self.stopping = False

    def stop(self, *_):
        self.stopping = True

    def accept(self) -> None:
        """Read one caller's request; fork its stage, or tell it to run the stage itself."""
        conn, _ = self.listener.accept()
        try:
            request, fds = _read_request(conn)
        except (OSError, ValueError, ConnectionError):
            conn.close()
            return
        if request.get("fingerprint") != self.own or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            conn.sendall(b'{"run": "here"}\n')
            conn.close()
            self.declined.append(_difference(self.own, request.get("fingerprint") or {}))
            return
        self.served += 1
        pid = os.fork()
        if pid == 0:
            self.listener.close()
            conn.close()
            _child(request, fds)
        for fd in fds:
            os.close(fd)
        try:
            conn.sendall(json.dumps({"started": pid}).encode() + b"\n")
        except OSError:  # the caller is already gone: its child is stopped below (EOF on conn)
            pass
        self.children[pid] = conn
        self.sel.register(conn, selectors.EVENT_READ, pid)

    def caller_readable(self, conn: socket.socket, pid: int) -> None:
        """A caller's connection is readable: the caller is gone (it never sends more), so stop its child."""
        if not conn.recv(1):
            self.sel.unregister(conn)
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def reap(self) -> None:
        """Collect every finished child and send its caller the exit status."""
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            conn = self.children.pop(pid, None)
            if conn is None:
                continue
            try:
                self.sel.unregister(conn)
            except (KeyError, ValueError):
                pass
            try:
                conn.sendall(json.dumps({"exit": _exit_status(status)}).encode() + b"\n")
            except OSError:
                pass
            conn.close()

    def run(self, parent: int) -> None:
        """Serve until stopped and every child has finished; stop on our own if `parent` (`pgraft warm`) dies."""
        while not self.stopping or self.children:
            if os.getppid() != parent and not self.stopping:  # `pgraft warm` is gone (killed): stop what runs
                self.stopping = True
                for pid in self.children:
                    os.kill(pid, signal.SIGTERM)
            for key, _ in self.sel.select(timeout=0.1):
                if key.fileobj is self.listener:
                    if not self.stopping:
                        self.accept()
                else:
                    self.caller_readable(key.fileobj, key.data)
            self.reap()

    def summary(self) -> str:
        declined = self.declined
        return f"pgraft warm: served {self.served} stages" + (
            f", {len(declined)} ran cold ({declined[0]} differed from the server's)" if declined else "")


def serve(path: str, ready: str | None = None) -> int:
    """Preload, listen on the Unix socket `path`, fork a child per request until SIGTERM or SIGINT.
    Single-threaded (every fork happens with no other thread alive). Writes `ready` (a file) once listening."""
    import importlib

    from pgraft.runtime.threads import thread_count  # noqa: F401 - sets the thread variables before torch is imported

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    if _threads() > 1:  # a fork would lose a running thread (a library changed what its import does)
        print(f"pgraft warm: {_threads()} threads after the preload; not serving (stages start cold)", file=sys.stderr)
        return 1
    own = fingerprint()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    server = _Server(listener, own)
    signal.signal(signal.SIGTERM, server.stop)
    signal.signal(signal.SIGINT, server.stop)
    if ready:
        Path(ready).write_text(str(os.getpid()))
    server.run(parent=os.getppid())
    listener.close()
    print(server.summary(), file=sys.stderr)
    return 0


def _difference(own: dict, theirs: dict) -> str:
    """The first fingerprint entry where a caller differs from the server (for the server's summary line)."""
    for key in own:
        if key == "env":
            for var in own["env"]:
                if own["env"][var] != (theirs.get("env") or {}).get(var):
                    return var
        elif own[key] != theirs.get(key):
            return {"python": "the interpreter", "path": "the module search path", "threads": "the thread count"}[key]
    return "the request"


# ---- `pgraft warm <command>` ------------------------------------------------------------------------------------

def run_with_server(command: list[str], timeout_s: float = 120.0) -> int:
    """Start a server, run `command` with PGRAFT_WARM set, stop the server; the command's exit status. If the
    server does not come up, the command runs anyway (every stage then starts cold)."""
    tmp = Path(tempfile.mkdtemp(prefix="pgraft-warm-"))
    sock, ready = tmp / "stages.sock", tmp / "ready"
    server = subprocess.Popen([sys.executable, "-m", "pgraft.runtime.warm", "serve", str(sock), str(ready)])
    t0 = time.monotonic()
    while not ready.exists() and server.poll() is None and time.monotonic() - t0 < timeout_s:
        time.sleep(0.05)
    env = dict(os.environ)
    if ready.exists():
        env[ENV] = str(sock)
        print(f"pgraft warm: stage server up in {time.monotonic() - t0:.1f} s ({sock})", file=sys.stderr)
    else:
        print("pgraft warm: the stage server did not start; stages start cold", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # killed: still stop the server
    try:
        return subprocess.call(command, env=env)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        for f in (sock, ready):
            f.unlink(missing_ok=True)
        tmp.rmdir()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"] and len(argv) in (2, 3):
        return serve(argv[1], argv[2] if len(argv) == 3 else None)
    print("usage: python -m pgraft.runtime.warm serve SOCKET [READY_FILE]  (`pgraft warm <command>` runs one)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
