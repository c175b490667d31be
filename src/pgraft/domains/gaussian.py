"""A 2-D Gaussian mixture on a circle: analytic density, an MLP denoiser, rewards preferring some modes."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from pgraft.domains.base import Cond, DiffusionDomain
from pgraft.params_base import PretrainParams, Strict


class GaussianMixtureParams(Strict):
    num_modes: int = Field(8, ge=1, le=64)
    radius: float = Field(4.0, gt=0.0)
    std: float = Field(0.5, gt=0.0)


class GaussianRewardParams(Strict):
    name: Literal["linear", "mode_preference"] = "linear"
    direction: list[float] = Field(default_factory=lambda: [1.0, 0.0], min_length=2, max_length=2)
    temperature: float = Field(1.0, gt=0.0)


class ModelParams(Strict):
    hidden: int = Field(128, ge=4)
    layers: int = Field(3, ge=1, le=16)


class GaussianParams(Strict):
    mixture: GaussianMixtureParams = GaussianMixtureParams()
    reward: GaussianRewardParams = GaussianRewardParams()
    model: ModelParams = ModelParams()
    pretrain: PretrainParams = PretrainParams()


class GaussianDomain(DiffusionDomain):
    name = "gaussian"
    Params = GaussianParams
    shape = (2,)
    table_metrics = ("mode_entropy",)
    gallery_size = 1000  # points per (seed, k) drawn over the density in gaussian_samples.png

    def means(self) -> np.ndarray:
        m = self.params.mixture
        angles = 2 * math.pi * np.arange(m.num_modes) / m.num_modes
        return m.radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)

    def sample_data(self, n: int, generator):
        import torch

        means = torch.as_tensor(self.means(), dtype=torch.float32)
        idx = torch.randint(len(means), (n,), generator=generator)
        noise = torch.randn((n, 2), generator=generator)
        return means[idx] + self.params.mixture.std * noise

    def log_density(self, x: np.ndarray) -> np.ndarray:
        """Exact log p_data(x) of the equal-weight isotropic mixture."""
        s = self.params.mixture.std
        d2 = ((x[:, None, :] - self.means()[None]) ** 2).sum(-1)
        log_comp = -d2 / (2 * s * s) - math.log(2 * math.pi * s * s)
        return _logsumexp(log_comp, axis=1) - math.log(len(self.means()))

    def build_model(self):
        from pgraft.models.mlp import MLPDenoiser

        m = self.params.model
        return MLPDenoiser(dim=2, hidden=m.hidden, layers=m.layers)

    def model_from_config(self, config: dict):
        from pgraft.models.mlp import MLPDenoiser

        return MLPDenoiser(**config)

    def reward(self, x: np.ndarray, cond: Cond = None) -> np.ndarray:
        """linear: <x, direction>; mode_preference: soft log-preference for the modes facing `direction`."""
        r = self.params.reward
        x = np.asarray(x, dtype=np.float64)
        direction = np.asarray(r.direction, dtype=np.float64)
        if r.name == "linear":
            return x @ direction
        # mode_preference: each mode's weight grows with its alignment to `direction`
        means = self.means()
        weights = np.exp((means @ direction) / (np.linalg.norm(direction) * self.params.mixture.radius * r.temperature))
        s = self.params.mixture.std
        d2 = ((x[:, None, :] - means[None]) ** 2).sum(-1)
        return _logsumexp(np.log(weights)[None] - d2 / (2 * s * s), axis=1)

    def mode_assignment(self, x: np.ndarray) -> np.ndarray:
        d2 = ((np.asarray(x)[:, None, :] - self.means()[None]) ** 2).sum(-1)
        return d2.argmin(axis=1)

    def extra_metrics(self, x: np.ndarray, cond: Cond = None) -> dict[str, float]:
        """Mode-occupancy entropy (nats; log(num_modes) when balanced) and mean exact log-density."""
        counts = np.bincount(self.mode_assignment(x), minlength=len(self.means()))
        p = counts / counts.sum()
        entropy = float(-(p[p > 0] * np.log(p[p > 0])).sum())
        return {"mode_entropy": entropy, "data_log_density": float(self.log_density(x).mean())}

    def draw(self, ax, x: np.ndarray, cond: Cond = None) -> None:
        """The samples as dots over the mixture's density (grey shades), the reward direction as an arrow."""
        m = self.params.mixture
        lim = m.radius + 4 * m.std
        grid = np.linspace(-lim, lim, 161)
        gx, gy = np.meshgrid(grid, grid)
        density = np.exp(self.log_density(np.stack([gx.ravel(), gy.ravel()], axis=1))).reshape(gx.shape)
        ax.contourf(gx, gy, density, levels=10, cmap="Greys", alpha=0.7)
        ax.scatter(x[:, 0], x[:, 1], s=2, color="C3", alpha=0.5, linewidths=0)
        d = np.asarray(self.params.reward.direction, dtype=np.float64)
        d = 0.5 * m.radius * d / np.linalg.norm(d)
        ax.annotate("", xy=(d[0], d[1]), xytext=(0, 0), arrowprops={"arrowstyle": "->", "color": "C0", "lw": 1.5})
        ax.text(d[0], d[1], " reward\n direction", color="C0", fontsize=7, va="center")
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", xlabel="x₁ (data units)",
               ylabel="x₂ (data units)")


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)
