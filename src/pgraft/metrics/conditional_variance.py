"""The conditional reward variance at a noise level (docs/METHOD.md §2): from B base continuations of each of M
states x_t, the expected within-state variance E[Var(r(X_0)|X_t)] and the variance of the conditional mean
Var(E[r|X_t]), each unbiased, with bootstrap intervals over the states."""

from __future__ import annotations

import numpy as np


def decompose(r: np.ndarray) -> tuple[float, float]:
    """(within, between) of an (M states, B continuations) reward array, B ≥ 2.

    within  = mean over states of the sample variance of its continuations (ddof 1): unbiased for E[Var(r|X_t)];
    between = sample variance of the state means − within / B: unbiased for Var(E[r|X_t]) (it can come out
    slightly negative when the true value is near 0)."""
    r = np.asarray(r, dtype=np.float64)
    if r.ndim != 2 or r.shape[1] < 2 or r.shape[0] < 2:
        raise ValueError(f"need an (M >= 2 states, B >= 2 continuations) reward array, got shape {r.shape}")
    within = float(r.var(axis=1, ddof=1).mean())
    between = float(r.mean(axis=1).var(ddof=1) - within / r.shape[1])
    return within, between


def bootstrap(r: np.ndarray, rng: np.random.Generator, reps: int = 1000, level: float = 0.95) -> dict:
    """decompose() of r and its percentile bootstrap interval over resampled states (rows)."""
    within, between = decompose(r)
    m = r.shape[0]
    draws = np.array([decompose(r[rng.integers(0, m, m)]) for _ in range(reps)])
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], axis=0)
    return {"within": within, "within_lo": float(lo[0]), "within_hi": float(hi[0]),
            "between": between, "between_lo": float(lo[1]), "between_hi": float(hi[1])}


def mean_interval(values: np.ndarray, rng: np.random.Generator, reps: int = 1000, level: float = 0.95) -> dict:
    """The mean of per-state values and its percentile bootstrap interval over states."""
    v = np.asarray(values, dtype=np.float64)
    draws = v[rng.integers(0, len(v), (reps, len(v)))].mean(axis=1)
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi)}
