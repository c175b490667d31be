"""Shared fixtures: a shrunk copy of the real params.yaml, so tests exercise the real configuration."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pipeline_helpers import shrink, write_params  # noqa: F401 (re-exported for tests)

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def real_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="session")
def tiny_sd2(tmp_path_factory) -> Path:
    """A random-weight Stable Diffusion 2 directory (diffusers layout, 64x64 images), built once per session."""
    from pgraft.models.sd_random import save_random_sd2

    return save_random_sd2(tmp_path_factory.mktemp("tiny_sd2") / "model")


@pytest.fixture
def small_params(real_params, tiny_sd2) -> dict:
    p = shrink(real_params)
    if "sd2" in p:  # the sd2 section loads the tiny random model through the real loading code
        p["sd2"]["model"]["pretrained"] = str(tiny_sd2)
    return p




def pytest_collection_modifyitems(config, items):
    """Tests marked gpu need a CUDA device: skipped without one (torch is imported only when some are collected)."""
    marked = [item for item in items if item.get_closest_marker("gpu")]
    if not marked:
        return
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
        for item in marked:
            item.add_marker(skip)


# --- reliability summary: the figures printed at the end of every run that includes those tests ---
_OUTCOMES: dict[str, str] = {}
_CATEGORIES = {
    "kills (SIGKILL at 3 points per stage, then rerun; finetune resume)": ("reliability/test_kills.py",),
    "bad inputs (params, artifacts, rewards, paths)": ("reliability/test_bad_inputs.py", "test_config.py::test_bad",
                                                       "test_config.py::test_stage_exits", "test_config.py::test_unreadable"),
    "identical output hashes over two forced dvc repro runs": ("reliability/test_determinism.py",),
    "tracking outage (unreachable server, locked SQLite)": ("reliability/test_outage.py", "test_tracking.py::test_outage"),
    "safe loading (no pickle anywhere, payload refused)": ("reliability/test_safe_loading.py",),
}


def pytest_runtest_logreport(report):
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _OUTCOMES[report.nodeid] = report.outcome


def pytest_terminal_summary(terminalreporter):
    lines = []
    for name, patterns in _CATEGORIES.items():
        hits = [o for nid, o in _OUTCOMES.items() if any(p in nid for p in patterns)]
        if hits:
            ok = sum(o == "passed" for o in hits)
            lines.append(f"{name}: {len(hits)} tried, {ok} handled, {len(hits) - ok} not handled")
    if lines:
        terminalreporter.write_sep("-", "reliability summary")
        for line in lines:
            terminalreporter.write_line(line)
