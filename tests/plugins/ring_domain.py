"""A domain defined outside the package, as a user would add one: a ring of modes rewarded by their angle."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from pgraft.domains import register
from pgraft.domains.gaussian import GaussianDomain, GaussianParams


class RingParams(GaussianParams):
    angle: float = Field(0.0, ge=-np.pi, le=np.pi)  # the preferred direction, radians


class RingDomain(GaussianDomain):
    """The Gaussian mixture's data and denoiser; reward: cosine of the angle to the preferred direction."""

    name = "ring"
    Params = RingParams

    def reward(self, x, cond=None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.cos(np.arctan2(x[:, 1], x[:, 0]) - self.params.angle)


register("ring", RingDomain)
