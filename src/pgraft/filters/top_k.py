"""top_k: keep the k largest rewards of each group of m (docs/METHOD.md §1, row "top_k")."""

from __future__ import annotations

import numpy as np
from scipy.special import betainc

from .base import Rule, check_int, top_k_mask


def top_k_law(m: int, k: int, u: np.ndarray) -> np.ndarray:
    """g(u) = I_u(m-k, k) = P(at most k-1 of the other m-1 draws beat u); 1 when k == m."""
    if k == m:
        return np.ones_like(u)
    # P(Bin(m-1, 1-u) <= k-1) = P(Bin(m-1, u) >= m-k) = I_u(m-k, k)  (docs/METHOD.md §1)
    return betainc(m - k, k, u)


class TopK(Rule):
    """Keep the ``k`` highest-reward samples of each group of ``m`` (ties: lowest index).

    g(u) = I_u(m-k, k) with u = F(r); accepted law p̄·(m/k)·g.
    """

    name = "top_k"
    law_argument = "cdf"
    PARAMS = ("m", "k")
    EXAMPLE = {"m": 8, "k": 2}  # parameters of the acceptance-law check (rewards ~ N(0, 1))

    def _validate(self, m, k):
        self.m = check_int(self.name, "m", m, minimum=1)
        self.k = check_int(self.name, "k", k, minimum=1)
        if self.k > self.m:
            raise ValueError(
                f"{self.name}: parameter 'k' must be an int with 1 <= k <= m = {self.m}, got {k!r}"
            )
        return {"m": self.m, "k": self.k}

    @property
    def group_size(self) -> int:
        return self.m

    def expected_acceptance(self) -> float:
        # exactly k kept out of m
        return self.k / self.m

    def _select(self, rewards, groups, generator, keys):
        return top_k_mask(rewards, groups, self.k)

    def _g(self, u):
        return top_k_law(self.m, self.k, u)
