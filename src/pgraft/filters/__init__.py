"""Generalized Rejection Sampling (GRS) rules for GRAFT: registry and public API (docs/METHOD.md §1).

Public API
----------
``REGISTRY``
    dict name -> rule class: "best_of_n", "top_k", "threshold", "rejection", "top_k_dedup".
``build(name, **params)``
    Instantiate a rule by name; raises ``ValueError`` for an unknown name or bad parameters.

Every rule has ``name``, ``params`` (JSON-serialisable dict), ``group_size`` (int or None),
``law_argument`` ("cdf": g is a function of u = F(r); "reward": g is a function of r),
``select(rewards, groups, generator=None, keys=None)`` -> bool keep-mask,
``acceptance_probability(x)`` -> g(x) and ``expected_acceptance()`` -> E[g] or None.
"""

from __future__ import annotations

from typing import Any

from .base import Rule
from .best_of_n import BestOfN
from .rejection import Rejection
from .threshold import Threshold
from .top_k import TopK
from .top_k_dedup import TopKDedup

__all__ = ["REGISTRY", "build", "Rule", "BestOfN", "TopK", "Threshold", "Rejection", "TopKDedup"]

#: name -> rule class (explicit; no attribute lookups)
REGISTRY: dict[str, type[Rule]] = {
    "best_of_n": BestOfN,
    "top_k": TopK,
    "threshold": Threshold,
    "rejection": Rejection,
    "top_k_dedup": TopKDedup,
}


def build(name: str, **params: Any) -> Rule:
    """Return the rule registered under ``name`` built with ``params``.

    Parameters: best_of_n(n), top_k(m, k), threshold(tau), rejection(alpha, r_max),
    top_k_dedup(m, k). Raises ``ValueError`` naming the bad name (and listing the valid
    ones) or the rule, parameter, value given and what is allowed.
    """
    if not isinstance(name, str) or name not in REGISTRY:
        raise ValueError(f"unknown filter rule {name!r}; valid names are {sorted(REGISTRY)}")
    return REGISTRY[name](**params)
