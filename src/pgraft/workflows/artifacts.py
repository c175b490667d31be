"""Checks of the sample files the stages pass on, before any compute."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pgraft.errors import ArtifactError


def check_samples(path: Path, data: dict, domain) -> None:
    """Artifacts from another domain or another grid are refused before any compute."""
    if str(data.get("domain", "")) != domain.name:
        raise ArtifactError(f"{path}: samples of domain {data.get('domain')!r}, expected {domain.name!r}")
    x0 = data["x0"]
    if len(x0) == 0:
        raise ArtifactError(f"{path}: contains no samples")
    if x0.ndim != 1 + len(domain.shape) or tuple(x0.shape[1:]) != tuple(domain.shape):
        raise ArtifactError(f"{path}: x0 has shape {x0.shape}, expected (n, {', '.join(map(str, domain.shape))})")
    if not np.issubdtype(x0.dtype, np.floating):
        raise ArtifactError(f"{path}: x0 has dtype {x0.dtype}, expected a float dtype")
    if domain.conditional and (data.get("prompt") is None or len(data["prompt"]) != len(x0)):
        raise ArtifactError(f"{path}: a {domain.name} sample file needs one 'prompt' per sample; rerun sample")


def state_key(k: int) -> str:
    """The array of a samples file that holds every trajectory's state after the first k sampler steps."""
    return f"state_k{k}"


def training_key(k: int, num_steps: int, target: str) -> str:
    """The array P-GRAFT at k trains on: the states after k steps, or x0 for GRAFT (k = N) and `target: x0`
    (docs/METHOD.md §2)."""
    from pgraft.samplers.stitched import method

    return "x0" if target == "x0" or method(k, num_steps) == "graft" else state_key(k)
