"""Monte Carlo check of a GRS rule's acceptance law: empirical P(kept | u) by bins against the closed form g."""

from __future__ import annotations

import numpy as np

from .base import Rule


def acceptance_by_bins(rule: Rule, num_groups: int = 20000, num_bins: int = 20, seed: int = 12345) -> list[dict]:
    """Rewards ~ N(0, 1) in groups of the rule's size (8 for per-sample rules); for each bin of u = F(r), the
    kept fraction and the mean closed-form g over the bin: {"u_center", "empirical", "closed_form"}."""
    from scipy.stats import norm

    size = rule.group_size or 8
    rng = np.random.default_rng(seed)
    r = rng.standard_normal(num_groups * size)
    u = norm.cdf(r)
    keep = rule.select(r, np.arange(len(r)) // size, generator=rng)
    edges = np.linspace(0, 1, num_bins + 1)
    bins = np.clip(np.digitize(u, edges) - 1, 0, num_bins - 1)
    out = []
    for b in range(num_bins):
        grid = np.linspace(edges[b], edges[b + 1], 51)[1:-1]
        arg = grid if rule.law_argument == "cdf" else norm.ppf(grid)
        out.append({"u_center": (edges[b] + edges[b + 1]) / 2, "empirical": keep[bins == b].mean(),
                    "closed_form": rule.acceptance_probability(arg).mean()})
    return out


def registry_acceptance() -> list[dict]:
    """acceptance_by_bins of every registered rule at its EXAMPLE params, in registry order, each record with
    its rule's name: {"rule", "u_center", "empirical", "closed_form"}."""
    from pgraft import filters

    return [{"rule": name, **rec} for name in filters.REGISTRY
            for rec in acceptance_by_bins(filters.build(name, **filters.REGISTRY[name].EXAMPLE))]
