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


@pytest.fixture
def small_params(real_params) -> dict:
    return shrink(real_params)


