"""A domain defined outside the package, as a user would add one: a ring of modes rewarded by their angle."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from pgraft.domains import register
from pgraft.domains.gaussian import GaussianDomain, GaussianParams
from pgraft.params_base import Strict


class RingRewardParams(Strict):
    angle: float = Field(0.0, ge=-np.pi, le=np.pi)  # preferred angle, radians


class RingParams(Strict):
    base: GaussianParams = GaussianParams()
    reward: RingRewardParams = RingRewardParams()


class RingDomain(GaussianDomain):
    """The Gaussian mixture's data and denoiser; reward: cosine of the angle to the preferred direction."""

    name = "ring"
    Params = RingParams

    def __init__(self, params: RingParams):
        super().__init__(params.base)
        self.ring = params

    def reward(self, x, cond=None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        return np.cos(np.arctan2(x[:, 1], x[:, 0]) - self.ring.reward.angle)


register("ring", RingDomain)
