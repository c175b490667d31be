"""The noise schedule and sampler timesteps, from diffusers' DDIM/DDPM schedulers (never hand-written)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from pgraft.registry import Registry
from pgraft.samplers.levels import NoiseLevels

SCHEDULERS: Registry = Registry("sampler")
SCHEDULERS.register("ddim", DDIMScheduler)
SCHEDULERS.register("ddpm", DDPMScheduler)


class SamplerSettings(Protocol):
    """What a schedule reads of its settings (params.sampler, a pgraft.params_base.SamplerParams, fits)."""

    name: str  # a SCHEDULERS name
    num_steps: int  # N, the sampler's steps
    eta: float  # DDIM's η (0: deterministic, 1: DDPM-like noise)
    num_train_timesteps: int
    beta_schedule: str


@dataclass
class Schedule:
    """A configured scheduler plus the quantities P-GRAFT needs about its N-step grid."""

    scheduler: DDIMScheduler | DDPMScheduler
    params: SamplerSettings

    @property
    def timesteps(self) -> torch.Tensor:
        """τ_0 > τ_1 > ... > τ_{N-1}: the timestep the model is queried at in each step."""
        return self.scheduler.timesteps

    @property
    def alphas_cumprod(self) -> torch.Tensor:
        return self.scheduler.alphas_cumprod

    @property
    def levels(self) -> NoiseLevels:
        return NoiseLevels(self.timesteps.long(), self.alphas_cumprod.float())

    def level_after(self, k: int) -> tuple[int, float]:
        """(t_I, ᾱ_{t_I}) of the state after the first k steps; k = N is clean data (t_I = -1, ᾱ = 1)."""
        return self.levels.level_after(k)

    def step(self, eps: torch.Tensor, t: int, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.params.name == "ddim":
            out = self.scheduler.step(eps, t, x, eta=self.params.eta, generator=generator)
        else:
            out = self.scheduler.step(eps, t, x, generator=generator)
        return out.prev_sample


def build_schedule(params: SamplerSettings, config: dict | None = None) -> Schedule:
    """The configured sampler; `config` (a pretrained model's scheduler config) fixes the noise schedule the
    model was trained with (then only params' name, num_steps and eta apply)."""
    cls = SCHEDULERS.get(params.name)
    if config is not None:
        scheduler = cls.from_config(config)
    else:
        kwargs = dict(num_train_timesteps=params.num_train_timesteps, beta_schedule=params.beta_schedule,
                      clip_sample=False)
        if params.name == "ddim":
            kwargs["set_alpha_to_one"] = True
        scheduler = cls(**kwargs)
    scheduler.set_timesteps(params.num_steps)
    return Schedule(scheduler=scheduler, params=params)
