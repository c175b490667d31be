"""DDPO: the stochastic DDIM step's log-probability, per-prompt advantages and the PPO update's direction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgraft.config import SamplerParams
from pgraft.finetune.ddpo import advantages, ppo_update, sample_trajectories
from pgraft.models.mlp import MLPDenoiser
from pgraft.samplers.ddim_logprob import ddim_step_with_logprob, previous_timestep
from pgraft.samplers.schedule import build_schedule


@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_logprob_is_the_gaussian_density_of_diffusers_ddim_step(eta):
    schedule = build_schedule(SamplerParams(name="ddim", num_steps=10, eta=eta))
    g = torch.Generator().manual_seed(0)
    x_t, eps, noise = (torch.randn(6, 3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    for t in schedule.timesteps[[0, 5, 8]]:
        t = int(t)
        # diffusers' own step with a given noise: x_prev = μ + σ·noise
        x_prev = schedule.scheduler.step(eps, t, x_t, eta=eta, variance_noise=noise).prev_sample
        mean = schedule.scheduler.step(eps, t, x_t, eta=eta, variance_noise=torch.zeros_like(noise)).prev_sample
        t_prev = previous_timestep(schedule, t)
        std = eta * schedule.scheduler._get_variance(t, t_prev).double().sqrt()
        direct = torch.distributions.Normal(mean, std).log_prob(x_prev).flatten(1).mean(1)
        _, lp = ddim_step_with_logprob(schedule, eps, t, x_t, eta, prev_sample=x_prev)
        assert torch.allclose(lp, direct, atol=1e-5, rtol=1e-5), (lp - direct).abs().max()  # float32 ᾱ
        drawn, _ = ddim_step_with_logprob(schedule, eps, t, x_t, eta, generator=torch.Generator().manual_seed(1))
        same_noise = torch.randn(noise.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        assert torch.allclose(drawn, schedule.scheduler.step(eps, t, x_t, eta=eta, variance_noise=same_noise).prev_sample,
                              atol=1e-5)


def test_the_last_step_is_deterministic_when_the_final_alpha_is_one():
    schedule = build_schedule(SamplerParams(name="ddim", num_steps=4, eta=1.0))
    x_t, eps = torch.randn(3, 2), torch.randn(3, 2)
    t = int(schedule.timesteps[-1])
    x_prev, lp = ddim_step_with_logprob(schedule, eps, t, x_t, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(lp, torch.zeros(3))
    assert torch.allclose(x_prev, schedule.scheduler.step(eps, t, x_t, eta=1.0).prev_sample, atol=1e-6)


def test_deterministic_sampler_is_refused():
    schedule = build_schedule(SamplerParams(name="ddim", num_steps=4, eta=0.0))
    with pytest.raises(ValueError, match="eta"):
        ddim_step_with_logprob(schedule, torch.zeros(1, 2), int(schedule.timesteps[0]), torch.zeros(1, 2), 0.0)


def test_advantages_are_standardised_within_each_prompt():
    r = np.array([1.0, 2.0, 3.0, 10.0, 10.0, 40.0])
    groups = np.array([0, 0, 0, 1, 1, 1])
    a = advantages(r, groups, clip=5.0)
    for g in (0, 1):
        assert a[groups == g].mean() == pytest.approx(0.0, abs=1e-9)
        assert a[groups == g].std() == pytest.approx(1.0, rel=1e-6)
    assert np.abs(advantages(np.array([0.0, 0, 0, 0, 0, 100.0]), np.zeros(6, int), clip=1.0)).max() <= 1.0


def test_a_ppo_step_moves_the_policy_towards_higher_advantage():
    torch.manual_seed(0)
    schedule = build_schedule(SamplerParams(name="ddim", num_steps=5, eta=1.0))
    model = MLPDenoiser(dim=2, hidden=32, layers=1)
    g = torch.Generator().manual_seed(3)
    traj = sample_trajectories(model, schedule, torch.randn(32, 2, generator=g), None, 1.0, g)
    adv = torch.tensor([1.0, -1.0] * 16)

    def log_probs():
        out = []
        with torch.no_grad():
            for j, t in enumerate(schedule.timesteps):
                eps = model(traj.states[j], t.expand(32))
                out.append(ddim_step_with_logprob(schedule, eps, int(t), traj.states[j], 1.0,
                                                  prev_sample=traj.states[j + 1])[1])
        return torch.stack(out).sum(0)

    before = log_probs()
    assert torch.allclose(before, traj.log_probs.sum(0), atol=1e-5)  # the stored π_old is the model's own
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)  # a small step: first order
    stats = ppo_update(model, opt, schedule, traj, adv, 1.0, clip_range=10.0, minibatch_size=32, max_grad_norm=1e9,
                       generator=torch.Generator().manual_seed(0))
    change = log_probs() - before
    assert float((adv * change).sum()) > 0  # likelier where the advantage is positive, less likely elsewhere
    assert change[adv > 0].mean() > change[adv < 0].mean()
    assert stats["clip_fraction"] == 0.0
