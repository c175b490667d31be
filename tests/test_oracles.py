"""Analytic oracles: stitched sampler limits, the P-GRAFT target convention, distances, the exact tilt."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from pgraft import filters
from pgraft.config import SamplerParams
from pgraft.finetune import DenoisingObjective, TruncatedObjective
from pgraft.finetune.objectives import target_scale
from pgraft.metrics.distances import energy_distance, sliced_wasserstein
from pgraft.metrics.diversity import mean_pairwise_distance
from pgraft.metrics.tilt import empirical_cdf, tilt_weights
from pgraft.models.mlp import MLPDenoiser
from pgraft.samplers.rollout import rollout, stitched_rollout
from pgraft.samplers.schedule import build_schedule


def _models():
    torch.manual_seed(0)
    return MLPDenoiser(2, 16, 1).eval(), MLPDenoiser(2, 16, 1).eval()


@pytest.mark.parametrize("name,eta", [("ddim", 0.0), ("ddim", 1.0), ("ddpm", 1.0)])
def test_stitched_sampler_limits(name, eta):
    base, tuned = _models()
    schedule = build_schedule(SamplerParams(name=name, num_steps=6, eta=eta))
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(1))

    def run(fn):
        return fn(torch.Generator().manual_seed(2))

    ref_base, _ = run(lambda g: rollout(lambda i: base, schedule, x_T, g))
    ref_tuned, _ = run(lambda g: rollout(lambda i: tuned, schedule, x_T, g))
    k0, _ = run(lambda g: stitched_rollout(tuned, base, 0, schedule, x_T, g))
    kN, _ = run(lambda g: stitched_rollout(tuned, base, 6, schedule, x_T, g))
    mid, _ = run(lambda g: stitched_rollout(tuned, base, 3, schedule, x_T, g))
    assert torch.equal(k0, ref_base)
    assert torch.equal(kN, ref_tuned)
    assert not torch.allclose(mid, ref_base) and not torch.allclose(mid, ref_tuned)


def test_rollout_keeps_every_truncation_state():
    base, _ = _models()
    schedule = build_schedule(SamplerParams(num_steps=5))
    x_T = torch.randn(8, 2)
    x0, kept = rollout(lambda i: base, schedule, x_T, torch.Generator().manual_seed(0), keep=range(6))
    assert torch.equal(kept[0], x_T) and torch.equal(kept[5], x0)
    # resuming from the state kept at k reproduces the same end point (same step noise)
    g = torch.Generator().manual_seed(0)
    x0_again, _ = rollout(lambda i: base, schedule, x_T, g)
    assert torch.equal(x0, x0_again)


def test_truncated_objective_at_n_is_the_ordinary_loss():
    schedule = build_schedule(SamplerParams(num_steps=10))
    data = torch.randn(500, 2)
    x_t, t, target = TruncatedObjective(data, schedule, 10).batch(4000, torch.Generator().manual_seed(0))
    assert set(t.tolist()) <= set(schedule.timesteps.tolist())
    # with ᾱ_{t_I} = 1 the target is the plain noise: x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε, target = ε
    ab = schedule.alphas_cumprod[t].view(-1, 1)
    x0 = (x_t - (1 - ab).sqrt() * target) / ab.sqrt()
    assert torch.allclose(x0, data[torch.cdist(x0, data).argmin(1)], atol=1e-4)
    assert target_scale(schedule, 10) == 1.0


def test_intermediate_target_regresses_onto_the_true_epsilon():
    """Gaussian oracle: x_0 ~ N(0, s²). Noising x_0 to level t_I and then (as the objective does) on to t
    must give E[target | x_t] = sqrt(1-ᾱ_t)·x_t / (ᾱ_t s² + 1 - ᾱ_t), the exact ε-prediction."""
    s2 = 0.25
    schedule = build_schedule(SamplerParams(num_steps=10))
    k = 6
    t_i, ab_i = schedule.level_after(k)
    g = torch.Generator().manual_seed(0)
    x0 = math.sqrt(s2) * torch.randn(400_000, 1, generator=g)
    x_i = math.sqrt(ab_i) * x0 + math.sqrt(1 - ab_i) * torch.randn(x0.shape, generator=g)
    obj = TruncatedObjective(x_i, schedule, k)
    obj.choices = obj.choices[-1:]  # the step just above t_I: the hardest-conditioned one
    x_t, t, target = obj.batch(400_000, g)
    ab_t = float(schedule.alphas_cumprod[int(t[0])])
    slope = float((x_t * target).mean() / (x_t * x_t).mean())
    exact = math.sqrt(1 - ab_t) / (ab_t * s2 + 1 - ab_t)
    assert slope == pytest.approx(exact, rel=0.02)
    assert target_scale(schedule, k) > 1.0


def test_x0_convention_restricts_t_above_t_i():
    schedule = build_schedule(SamplerParams(num_steps=10))
    obj = TruncatedObjective(torch.randn(10, 2), schedule, 4, target="x0", timesteps="window")
    t_i, _ = schedule.level_after(4)
    _, t, _ = obj.batch(2000, torch.Generator().manual_seed(0))
    assert int(t.min()) > t_i
    with pytest.raises(ValueError, match="k=0"):
        TruncatedObjective(torch.randn(10, 2), schedule, 0)


def test_denoising_objective_shapes():
    schedule = build_schedule(SamplerParams())
    x_t, t, eps = DenoisingObjective(torch.randn(50, 2), schedule.alphas_cumprod).batch(32, torch.Generator())
    assert x_t.shape == eps.shape == (32, 2) and t.shape == (32,)


def test_energy_distance_closed_form():
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, (8000, 1)), rng.normal(1, 1, (8000, 1))
    # X - Y ~ N(-1, 2): E|X-Y| = s·sqrt(2/π)·exp(-μ²/2s²) + μ(1 - 2Φ(-μ/s)); E|X-X'| = 2/sqrt(π)
    s, mu = math.sqrt(2), 1.0
    e_xy = s * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * s * s)) + mu * (1 - 2 * norm.cdf(-mu / s))
    exact = 2 * e_xy - 2 * (2 / math.sqrt(math.pi))
    assert energy_distance(x, y) == pytest.approx(exact, abs=0.05)  # ~3 sd at n = 8000
    assert abs(energy_distance(x, rng.normal(0, 1, (8000, 1)))) < 0.01
    assert sliced_wasserstein(x, y) == pytest.approx(1.0, abs=0.08)
    assert mean_pairwise_distance(x) == pytest.approx(2 / math.sqrt(math.pi), rel=0.03)


def test_tilt_weights_give_the_exact_tilted_mean():
    """top_k(m, k) on Uniform(0,1) rewards: E_tilt[u] = ∫ u g(u) du / ∫ g(u) du."""
    rule = filters.build("top_k", m=8, k=2)
    u = np.random.default_rng(0).random(20000)
    w = tilt_weights(rule, u)
    grid = np.linspace(0, 1, 20001)
    g = rule.acceptance_probability(grid)
    exact = np.trapezoid(grid * g, grid) / np.trapezoid(g, grid)
    assert float(w @ u) == pytest.approx(exact, abs=0.005)
    assert empirical_cdf(u, np.array([-1.0, 2.0])).tolist() == pytest.approx([0.0, 1.0], abs=1e-4)


def test_weighted_energy_distance_matches_resampling():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(3000, 2))
    w = np.exp(y[:, 0])
    w /= w.sum()
    x = y[rng.choice(len(y), size=3000, p=w)]
    assert energy_distance(x, y, w) < 0.02 < energy_distance(x, y)
