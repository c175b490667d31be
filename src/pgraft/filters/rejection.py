"""rejection: keep each sample w.p. min(1, exp((r - r_max)/alpha)) (docs/METHOD.md §1)."""

from __future__ import annotations

import numpy as np

from .base import Rule, check_float


class Rejection(Rule):
    """Classical rejection sampling: accept each sample independently with probability
    min(1, exp((r - r_max)/alpha)).

    When r <= r_max always, the accepted law is exactly p̄·exp(r/alpha)/Z (docs/METHOD.md §1).
    """

    name = "rejection"
    law_argument = "reward"
    PARAMS = ("alpha", "r_max")
    EXAMPLE = {"alpha": 0.5, "r_max": 3.0}  # parameters of the acceptance-law check (rewards ~ N(0, 1))

    def _validate(self, alpha, r_max):
        self.alpha = check_float(self.name, "alpha", alpha, positive=True)
        self.r_max = check_float(self.name, "r_max", r_max)
        return {"alpha": self.alpha, "r_max": self.r_max}

    def _select(self, rewards, groups, generator, keys):
        # U ~ Uniform[0, 1): P(U < p) = p
        return generator.random(rewards.size) < self._g(rewards)

    def _g(self, r):
        # min(1, exp(z)) = exp(min(0, z)): no overflow for r >> r_max
        with np.errstate(over="ignore", invalid="ignore"):
            z = (r - self.r_max) / self.alpha
        return np.exp(np.minimum(z, 0.0))
