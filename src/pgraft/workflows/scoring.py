"""Scoring and selection shared by the stages and a GRAFT round: prompts per group, rewards, the GRS keep-mask."""

from __future__ import annotations

import numpy as np

from pgraft.errors import StageError


def conditions(domain, split: str, n: int, group_size: int = 1):
    """Prompts of n samples (rows j of group j // group_size share prompt number group mod P) and their
    token tensor; (None, None) for unconditional domains."""
    if not domain.conditional:
        return None, None
    import torch

    pool = domain.prompts(split)
    prompts = np.asarray([pool[(j // group_size) % len(pool)] for j in range(n)])
    return prompts, torch.as_tensor(domain.tokens(list(prompts)))


def as_cond(prompts) -> list[str] | None:
    """The `cond` argument of a domain's hooks: the prompts of the samples as str, None for unconditional ones."""
    return None if prompts is None else [str(p) for p in prompts]


def score(domain, x: np.ndarray, prompts) -> np.ndarray:
    """The domain's reward of samples x (with their prompts, None for unconditional domains), as float64."""
    return np.asarray(domain.reward(x, as_cond(prompts)), dtype=np.float64)


def score_finite(domain, x: np.ndarray, prompts, where) -> np.ndarray:
    """`score`, refusing NaN or inf rewards: GRS ranks rewards within groups, a NaN would rank arbitrarily."""
    r = score(domain, x, prompts)
    bad = ~np.isfinite(r)
    if bad.any():
        raise StageError(f"{where}: the {domain.name} reward is not finite for {int(bad.sum())} of {len(r)} "
                         f"samples (NaN {int(np.isnan(r).sum())}); rewards must be finite floats")
    return r


def select(rule, domain, x0: np.ndarray, rewards: np.ndarray, groups: np.ndarray, rng):
    """The GRS keep-mask within groups (docs/METHOD.md §1), with the domain's dedup keys (None where it has none)."""
    keys = domain.dedup_keys(x0)
    return rule.select(rewards, groups, generator=rng, keys=keys), keys
