"""The warm stage server (pgraft.runtime.warm): a stage handed to it writes the same bytes and exits with the same
status as the plain command; a caller that dies takes its child with it; a caller that differs runs itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pipeline_helpers import engine_env, shrink, write_params

from pgraft.pipeline.table import BY_NAME
from pgraft.runtime import warm


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _start(home: Path) -> tuple[subprocess.Popen, Path, dict]:
    env = engine_env()
    sock, ready = home / "s.sock", home / "ready"
    proc = subprocess.Popen([sys.executable, "-m", "pgraft.runtime.warm", "serve", str(sock), str(ready)],
                            cwd=home, env=env)
    t0 = time.monotonic()
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() - t0 < 120, "the warm server did not start"
        time.sleep(0.05)
    return proc, sock, env


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One warm server for the module's tests; yields (process, socket path, env)."""
    proc, sock, env = _start(tmp_path_factory.mktemp("warm"))
    yield proc, sock, env
    proc.terminate()
    proc.wait(timeout=30)


def _pretrain(tmp_path, raw, out: str) -> list[str]:
    cmd = BY_NAME["pretrain"].command_at(raw, {"domain": "gaussian"}).split()
    cmd[cmd.index("--out") + 1] = out
    cmd[cmd.index("--metrics") + 1] = out + ".json"
    return [sys.executable, *cmd[1:]]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Unix sockets with file-descriptor passing")
def test_a_stage_through_the_server_writes_the_same_bytes_and_status(tmp_path, real_params, server):
    proc, sock, env = server
    raw = shrink(real_params)
    raw["domains"] = ["gaussian"]
    write_params(tmp_path / "params.yaml", raw)
    runs = {}
    for mode in ("cold", "warm"):
        run_env = {**env, warm.ENV: str(sock)} if mode == "warm" else env
        log = tmp_path / f"{mode}.log"
        with open(log, "w") as fh:
            code = subprocess.call(_pretrain(tmp_path, raw, f"base_{mode}"), cwd=tmp_path, env=run_env,
                                   stdout=fh, stderr=subprocess.STDOUT)
        runs[mode] = (code, log.read_text())
        if mode == "warm":
            assert "pgraft pretrain: done in" in runs[mode][1], runs[mode][1]
    assert runs["cold"][0] == runs["warm"][0] == 0, runs
    assert (tmp_path / "base_cold/model.safetensors").read_bytes() == \
        (tmp_path / "base_warm/model.safetensors").read_bytes()

    bad = [sys.executable, "-m", "pgraft.stages.sample", "--domain", "nope", "--seed", "0", "--model", "m",
           "--out", "o.npz", "--reference", "r.npz", "--metrics", "m.json"]
    cold = subprocess.run(bad, cwd=tmp_path, env=env, capture_output=True, text=True)
    hot = subprocess.run(bad, cwd=tmp_path, env={**env, warm.ENV: str(sock)}, capture_output=True, text=True)
    assert cold.returncode == hot.returncode == 2
    assert "--domain 'nope' is not in params 'domains'" in hot.stderr and hot.stderr == cold.stderr
    assert proc.poll() is None and _children(proc.pid) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc children list")
def test_a_caller_that_dies_takes_its_stage_with_it(tmp_path, real_params, server):
    proc, sock, env = server
    raw = shrink(real_params)
    raw["domains"] = ["gaussian"]
    raw["gaussian"]["pretrain"]["steps"] = 10 ** 6  # runs until killed
    write_params(tmp_path / "params.yaml", raw)
    caller = subprocess.Popen(_pretrain(tmp_path, raw, "base"), cwd=tmp_path, env={**env, warm.ENV: str(sock)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while not _children(proc.pid):
        assert time.monotonic() - t0 < 60 and caller.poll() is None, "the server never forked the stage"
        time.sleep(0.05)
    caller.send_signal(signal.SIGKILL)
    caller.wait()
    t0 = time.monotonic()
    while _children(proc.pid):
        assert time.monotonic() - t0 < 10, "the stage kept running after its caller died"
        time.sleep(0.05)
    assert not (tmp_path / "base").exists()  # atomic output: nothing half-written


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc children list")
def test_a_server_that_dies_fails_its_running_stages(tmp_path, real_params):
    proc, sock, env = _start(tmp_path)
    raw = shrink(real_params)
    raw["domains"] = ["gaussian"]
    raw["gaussian"]["pretrain"]["steps"] = 10 ** 6
    write_params(tmp_path / "params.yaml", raw)
    caller = subprocess.Popen(_pretrain(tmp_path, raw, "base"), cwd=tmp_path, env={**env, warm.ENV: str(sock)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    while not _children(proc.pid):
        assert time.monotonic() - t0 < 60 and caller.poll() is None, "the server never forked the stage"
        time.sleep(0.05)
    child = _children(proc.pid)[0]
    proc.kill()  # no clean-up: the caller must notice and stop the orphaned stage itself
    proc.wait()
    _, err = caller.communicate(timeout=60)
    assert caller.returncode == 1 and "went away while the stage ran" in err, err
    t0 = time.monotonic()
    while Path(f"/proc/{child}").exists() and "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
        assert time.monotonic() - t0 < 10, "the orphaned stage kept running"
        time.sleep(0.05)
    assert not (tmp_path / "base").exists()


def test_a_caller_unlike_the_server_runs_the_stage_itself(tmp_path, server, monkeypatch):
    proc, sock, _ = server
    monkeypatch.setenv(warm.ENV, str(sock))
    monkeypatch.chdir(tmp_path)
    # a variable that libraries read when imported differs from the server's: it declines, the caller runs it
    monkeypatch.setenv("MPLBACKEND", "not-the-servers")
    assert warm.delegate("sample", ["--help"]) is None
    monkeypatch.setenv(warm.ENV, str(tmp_path / "no-such.sock"))
    assert warm.delegate("sample", ["--help"]) is None  # no server there: run here
    monkeypatch.delenv(warm.ENV)
    assert warm.delegate("sample", ["--help"]) is None
    assert os.path.exists(sock) and proc.poll() is None
