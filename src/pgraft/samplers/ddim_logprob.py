"""One stochastic DDIM step with the Gaussian log-probability of its output (DDPO's policy, docs/METHOD.md §3).

With ᾱ_t, ᾱ_prev the cumulative alphas of the step's two timesteps and ε the network's prediction:
    x̂_0 = (x_t − sqrt(1−ᾱ_t)·ε) / sqrt(ᾱ_t)
    σ_t = η · sqrt((1−ᾱ_prev)/(1−ᾱ_t) · (1 − ᾱ_t/ᾱ_prev))
    μ   = sqrt(ᾱ_prev)·x̂_0 + sqrt(1 − ᾱ_prev − σ_t²)·ε
    x_prev ~ N(μ, σ_t² I)
exactly diffusers' DDIMScheduler.step (epsilon prediction, no clipping). The log-probability is averaged
over the sample's dimensions, as in DDPO's reference implementation (the PPO clip range is set for it).
A step with σ_t = 0 (the last one when ᾱ_final = 1) is deterministic: it gets log-probability 0 and no
policy gradient.
"""

from __future__ import annotations

import math

import torch

from pgraft.samplers.schedule import Schedule


def previous_timestep(schedule: Schedule, t: int) -> int:
    s = schedule.scheduler
    return t - s.config.num_train_timesteps // s.num_inference_steps


def ddim_step_with_logprob(
    schedule: Schedule,
    eps: torch.Tensor,
    t: int,
    x_t: torch.Tensor,
    eta: float,
    generator: torch.Generator | None = None,
    prev_sample: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_prev, log p(x_prev | x_t)) per sample; draws x_prev unless `prev_sample` is given (then scores it).

    The step's standard-normal `noise` is drawn from `generator` on the CPU (then moved to x_t's device) unless
    given."""
    if eta <= 0:
        raise ValueError("a DDPO policy needs a stochastic sampler: sampler.eta must be > 0")
    ac = schedule.alphas_cumprod
    t_prev = previous_timestep(schedule, t)
    a_t = ac[t].to(x_t.dtype)
    a_prev = (ac[t_prev] if t_prev >= 0 else schedule.scheduler.final_alpha_cumprod).to(x_t.dtype)
    x0_hat = (x_t - (1 - a_t).sqrt() * eps) / a_t.sqrt()
    variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
    std = eta * variance.sqrt()
    mean = a_prev.sqrt() * x0_hat + (1 - a_prev - std**2).clamp(min=0).sqrt() * eps
    if prev_sample is None:
        if noise is None:
            noise = torch.randn(x_t.shape, generator=generator, dtype=x_t.dtype)
        prev_sample = mean + std * noise.to(x_t.device)
    if float(std) == 0.0:  # a deterministic step (the last one when ᾱ_final = 1): not part of the policy
        return prev_sample, torch.zeros(x_t.shape[0], dtype=x_t.dtype, device=x_t.device)
    log_prob = (-((prev_sample.detach() - mean) ** 2) / (2 * std**2) - torch.log(std) - 0.5 * math.log(2 * math.pi))
    return prev_sample, log_prob.flatten(1).mean(dim=1)
