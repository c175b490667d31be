"""The exact target of a GRS rule, p̄·g/E[g], as weights on samples of the base sampler p̄ (docs/METHOD.md §1)."""

from __future__ import annotations

import numpy as np


def empirical_cdf(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """u = F̂(r): the fraction of reference rewards below each value (mid-rank for ties), in (0, 1)."""
    ref = np.sort(np.asarray(reference, dtype=np.float64))
    values = np.asarray(values, dtype=np.float64)
    lo = np.searchsorted(ref, values, side="left")
    hi = np.searchsorted(ref, values, side="right")
    return (lo + hi + 1) / (2 * (len(ref) + 1))


def tilt_weights(rule, reference_rewards: np.ndarray) -> np.ndarray:
    """Normalised weights w_j ∝ g(x_j) on base samples x_j: the rule's exact tilted target."""
    r = np.asarray(reference_rewards, dtype=np.float64)
    arg = empirical_cdf(r, r) if rule.law_argument == "cdf" else r
    g = np.asarray(rule.acceptance_probability(arg), dtype=np.float64)
    if not np.isfinite(g).all() or g.sum() <= 0:
        raise ValueError(f"rule {rule.name}: acceptance probability is zero on every reference sample")
    return g / g.sum()


def tilt_weights_by_condition(rule, reference_rewards: np.ndarray, conditions=None) -> np.ndarray:
    """The exact target of a rule applied within groups that share a condition (a prompt).

    A rank rule (g a function of u = F(r)) keeps the same number of samples in every group, so its target is the
    tilt of each condition's own reward law, p̄(·|c)·g(F_c(r))/E[g], with the conditions in their reference
    proportions; one CDF pooled over prompts would tilt towards the prompts whose rewards run high
    (docs/METHOD.md §2). A rule whose g is a function of r itself (threshold, rejection) accepts each sample on
    its own, and its pooled tilt is exact. Without conditions: tilt_weights."""
    if conditions is None or rule.law_argument != "cdf":
        return tilt_weights(rule, reference_rewards)
    r = np.asarray(reference_rewards, dtype=np.float64)
    c = np.asarray(conditions)
    if len(c) != len(r):
        raise ValueError(f"{len(c)} conditions for {len(r)} reference rewards")
    w = np.zeros(len(r))
    for value in np.unique(c):
        rows = c == value
        w[rows] = tilt_weights(rule, r[rows]) * (rows.sum() / len(r))
    return w
