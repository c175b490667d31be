"""Shared fixtures: a shrunk copy of the real params.yaml, so tests exercise the real configuration."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def shrink(raw: dict) -> dict:
    """The real params with every size cut down so the whole pipeline runs in seconds."""
    p = copy.deepcopy(raw)
    p["seeds"] = [0, 1]
    p["sampler"]["num_steps"] = 4
    p["truncation_grid"] = [0, 2, 4]
    p["filter"] = {"name": "top_k", "params": {"m": 8, "k": 2}}
    p["sample"].update(num_groups=16, reference_size=200, batch_size=512)
    p["finetune"].update(budgets=[5, 10], batch_size=32)
    p["evaluate"]["num_samples"] = 100
    p["tracking"]["enabled"] = False
    p["gaussian"]["model"].update(hidden=32, layers=1)
    p["gaussian"]["pretrain"].update(steps=50, batch_size=64)
    return p


@pytest.fixture(scope="session")
def real_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture
def small_params(real_params) -> dict:
    return shrink(real_params)


def write_params(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
