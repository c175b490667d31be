"""A predictor of P-GRAFT's best truncation point before any real fine-tuning (docs/METHOD.md §2, "Predicting the
best k"), from the variance stage's output (each k's ceiling c(k) and conditional reward variance V(k)) and the
learning-error probe (pgraft.finetune.probe, run by pgraft.stages.probe: per sampler step, held-out and training
denoising losses of a short GRAFT fine-tune, and the base's held-out loss).

    predicted reward R(k) = c(k) − ρ · s(k) · (c(N) − c(0))₊,      k̂ = argmax over the candidate k of R(k)

ρ ∈ [0, 1], the share of the probe's fitted change that does not generalise: Σ_j e_j / (Σ_j e_j + Σ_j g_j) with
the excess e_j = (held-out − training loss of the probe)₊ and the gain g_j = (base − probe held-out loss)₊ at
step j.
s(k) ∈ [0, 1], the share of that learning error P-GRAFT(k) takes on: its first k steps' excess, each block of steps
between two grid points weighted by the reward variance the block resolves, ΔV = (V(k_b) − V(k_b+1))₊ (an error
where the reward is decided costs reward; where V is flat it costs none). s(0) = 0, s(N) = 1."""

from __future__ import annotations

import numpy as np


def grid_of(variance: dict) -> list[int]:
    """The truncation points of a variance.json (its "k" keys), increasing."""
    return sorted(int(k) for k in variance["k"])


def generalisation_share(probe: dict) -> float:
    """ρ: the probe's held-out excess over its held-out gain plus that excess (0 when it changed nothing)."""
    excess = np.clip(np.subtract(probe["heldout_probe"], probe["train_probe"]), 0.0, None).sum()
    gain = np.clip(np.subtract(probe["heldout_base"], probe["heldout_probe"]), 0.0, None).sum()
    return float(excess / (excess + gain)) if excess + gain > 0 else 0.0


def error_share(probe: dict, variance: dict) -> dict[int, float]:
    """s(k) on the variance grid: the share of the V-weighted probe excess in the first k sampler steps."""
    grid = grid_of(variance)
    excess = np.clip(np.subtract(probe["heldout_probe"], probe["train_probe"]), 0.0, None)
    if len(excess) != grid[-1]:
        raise ValueError(f"probe: {len(excess)} sampler steps, the variance grid ends at N = {grid[-1]}")
    v = {k: float(variance["k"][str(k)]["within"]) for k in grid}
    blocks = []
    for lo, hi in zip(grid[:-1], grid[1:]):
        drop = max(0.0, v[lo] - v[hi])
        blocks.append((hi, float(excess[lo:hi].sum()) * drop, drop, hi - lo))
    for weight in (lambda b: b[1], lambda b: b[2], lambda b: b[3]):  # fall back to ΔV alone, then to steps
        total = sum(weight(b) for b in blocks)
        if total > 0:
            share, out = 0.0, {grid[0]: 0.0}
            for b in blocks:
                share += weight(b) / total
                out[b[0]] = share
            return out
    return {k: k / grid[-1] for k in grid}


def predict(variance: dict, probe: dict, candidates) -> dict:
    """The predicted reward R(k) at every grid point, ρ, s(k) and k̂ (the candidate of largest R; the smaller k on a
    tie), with R(k̂) − R(N), the predicted margin of P-GRAFT(k̂) over GRAFT."""
    grid = grid_of(variance)
    n = grid[-1]
    missing = [k for k in candidates if k not in grid]
    if missing:
        raise ValueError(f"candidates {missing} are not on the variance grid {grid}")
    c = {k: float(variance["k"][str(k)]["ceiling"]) for k in grid}
    rho, s = generalisation_share(probe), error_share(probe, variance)
    span = max(0.0, c[n] - c[0])
    r = {k: c[k] - rho * s[k] * span for k in grid}
    best = max(sorted(candidates), key=lambda k: r[k])
    return {"k": best, "margin": r[best] - r[n], "rho": rho, "share": s, "predicted": r, "ceiling": c}


def average(dicts: list[dict]) -> dict:
    """The element-wise mean of several seeds' variance.json or probe.json (numbers and lists; other keys of the
    first)."""
    first = dicts[0]
    out = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = average([d[key] for d in dicts])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(np.mean([d[key] for d in dicts]))
        elif isinstance(value, list) and value and all(isinstance(x, (int, float)) for x in value):
            out[key] = np.mean([d[key] for d in dicts], axis=0).tolist()
        else:
            out[key] = value
    return out
