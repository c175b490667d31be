"""Training objectives: ordinary denoising (pretraining, GRAFT) and P-GRAFT's truncated window (docs/METHOD.md §2)."""

from __future__ import annotations

import math

import torch

from pgraft.samplers.levels import NoiseLevels


class DenoisingObjective:
    """Standard DDPM ε-loss on data x_0 over every training timestep t in [0, T)."""

    def __init__(self, data: torch.Tensor, alphas_cumprod: torch.Tensor, cond: torch.Tensor | None = None):
        self.data = data
        self.cond = cond
        self.alphas_cumprod = alphas_cumprod.float()

    def batch(self, size: int, generator: torch.Generator):
        idx = torch.randint(len(self.data), (size,), generator=generator)
        t = torch.randint(len(self.alphas_cumprod), (size,), generator=generator)
        x0 = self.data[idx]
        eps = torch.randn(x0.shape, generator=generator)
        ab = self.alphas_cumprod[t].view(-1, *[1] * (x0.ndim - 1))
        return (ab.sqrt() * x0 + (1 - ab).sqrt() * eps, t, eps, *_rows(self.cond, idx))


class TruncatedObjective:
    """Fine-tune only the noise levels above t_I, the level after the first k sampler steps.

    target="intermediate" (default, docs/METHOD.md §2): `data` are accepted states x_{t_I}; with
    a = sqrt(ᾱ_t/ᾱ_{t_I}), x_t = a·x_{t_I} + sqrt(1-a²)·ξ and the ε-target is sqrt(1-ᾱ_t)·ξ/sqrt(1-a²),
    i.e. denoising score matching on the tilted t_I-marginal. target="x0": `data` are accepted x_0 and
    the ordinary ε-loss is restricted to t > t_I. For k = N both coincide with GRAFT's ordinary loss.

    timesteps="sampler" draws t only from the sampler's own timesteps τ_0..τ_{k-1} (never closer to
    t_I than one step, which keeps the target's scale bounded); "window" draws t uniformly in (t_I, T).
    """

    def __init__(self, data: torch.Tensor, schedule: NoiseLevels, k: int, target: str = "intermediate",
                 timesteps: str = "sampler", cond: torch.Tensor | None = None):
        if k < 1:
            raise ValueError("truncation point k=0 has nothing to fine-tune (the base model is used throughout)")
        if target not in ("intermediate", "x0"):
            raise ValueError(f"target {target!r}: expected 'intermediate' or 'x0'")
        self.data = data
        self.cond = cond
        self.target = target
        self.alphas_cumprod = schedule.alphas_cumprod.float()
        t_i, ab_i = schedule.level_after(k)
        self.ab_i = ab_i if target == "intermediate" else 1.0
        if timesteps == "sampler":
            self.choices = schedule.timesteps[:k].long()
        elif timesteps == "window":
            self.choices = torch.arange(t_i + 1, len(self.alphas_cumprod))
        else:
            raise ValueError(f"timesteps {timesteps!r}: expected 'sampler' or 'window'")

    def batch(self, size: int, generator: torch.Generator):
        idx = torch.randint(len(self.data), (size,), generator=generator)
        t = self.choices[torch.randint(len(self.choices), (size,), generator=generator)]
        x_i = self.data[idx]
        xi = torch.randn(x_i.shape, generator=generator)
        ab_t = self.alphas_cumprod[t].view(-1, *[1] * (x_i.ndim - 1))
        a2 = ab_t / self.ab_i
        x_t = a2.sqrt() * x_i + (1 - a2).sqrt() * xi
        target = (1 - ab_t).sqrt() * xi / (1 - a2).sqrt()
        return (x_t, t, target, *_rows(self.cond, idx))


def _rows(cond: torch.Tensor | None, idx: torch.Tensor) -> tuple:
    """The minibatch's conditions (an empty tuple for unconditional domains)."""
    return () if cond is None else (cond[idx],)


def target_scale(schedule: NoiseLevels, k: int) -> float:
    """Largest factor sqrt(1-ᾱ_t)/sqrt(1-a²) over the sampler timesteps above t_I (1 for k = N)."""
    _, ab_i = schedule.level_after(k)
    worst = 1.0
    for t in schedule.timesteps[:k]:
        ab_t = float(schedule.alphas_cumprod[int(t)])
        worst = max(worst, math.sqrt(1 - ab_t) / math.sqrt(1 - ab_t / ab_i))
    return worst
