"""threshold: keep every sample with reward r >= tau (docs/METHOD.md §1, row "threshold")."""

from __future__ import annotations

import numpy as np

from .base import Rule, check_float


class Threshold(Rule):
    """Keep each sample with r >= ``tau``, independently of its group.

    g(r) = 1{r >= tau}; accepted law is p̄ restricted to {r >= tau}.
    """

    name = "threshold"
    law_argument = "reward"
    PARAMS = ("tau",)
    EXAMPLE = {"tau": 0.5}  # parameters of the acceptance-law check (rewards ~ N(0, 1))

    def _validate(self, tau):
        self.tau = check_float(self.name, "tau", tau)
        return {"tau": self.tau}

    def _select(self, rewards, groups, generator, keys):
        return rewards >= self.tau

    def _g(self, r):
        return (r >= self.tau).astype(np.float64)
