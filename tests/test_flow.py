"""Analytic oracles for the rectified-flow Euler sampler, its backward-Euler inverse and flow matching."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pgraft.finetune.flow_objective import FlowMatchingObjective, flow_path
from pgraft.finetune.loop import train
from pgraft.samplers.flow import (
    InversionWarning,
    ZeroVelocity,
    composed_sample,
    euler_invert,
    euler_sample,
    time_grid,
)

MU, S = torch.tensor([1.5, -0.5]), 0.5


def a_of_t(t, s=S):
    """Slope of E[ε - x_0 | x_t] in x_t for x_0 ~ N(μ, s²I): Cov(ε - x_0, x_t) / Var(x_t)."""
    return (t - (1 - t) * s**2) / ((1 - t) ** 2 * s**2 + t**2)


class GaussianVelocity(nn.Module):
    """Exact marginal velocity of the linear path for x_0 ~ N(μ, s²I): a(t)·(x - (1-t)μ) - μ."""

    def __init__(self, mu=MU, s=S):
        super().__init__()
        self.mu, self.s = mu, s

    def forward(self, x, t):
        t = t.view(-1, *[1] * (x.ndim - 1))
        return a_of_t(t, self.s) * (x - (1 - t) * self.mu) - self.mu


class Linear(nn.Module):
    """v(x, t) = c·x: each Euler step multiplies by (1 - c/n), so the inverse is x_0 / (1 - c/n)^n."""

    def __init__(self, c: float):
        super().__init__()
        self.c = c

    def forward(self, x, t):
        return self.c * x


class TinyVelocity(nn.Module):
    """A small MLP v(x, t) on [x, t]; `scale` shrinks the initial weights (small Lipschitz constant)."""

    def __init__(self, dim=2, hidden=32, scale=1.0, seed=0):
        super().__init__()
        with torch.random.fork_rng():  # seeded init without touching the global RNG of other tests
            torch.manual_seed(seed)
            self.net = nn.Sequential(nn.Linear(dim + 1, hidden), nn.Tanh(), nn.Linear(hidden, hidden),
                                     nn.Tanh(), nn.Linear(hidden, dim))
        with torch.no_grad():
            for p in self.net.parameters():
                p.mul_(scale)

    def forward(self, x, t):
        return self.net(torch.cat([x, t[:, None]], dim=-1))


def _noise(n, dim=2, seed=0):
    return torch.randn((n, dim), generator=torch.Generator().manual_seed(seed))


def test_time_grid_and_path():
    assert time_grid(4) == [1.0, 0.75, 0.5, 0.25, 0.0]
    z = _noise(8)
    x0, path = euler_sample(ZeroVelocity(), z, 3, return_path=True)
    assert len(path) == 4 and path[0] is z and torch.equal(path[-1], x0) and torch.equal(x0, z)
    with pytest.raises(ValueError):
        time_grid(0)


def test_exact_velocity_maps_noise_to_data_distribution():
    """The ODE with the exact marginal velocity transports N(0, I) to N(μ, s²I); Euler n=200 ≈ the ODE."""
    x0 = euler_sample(GaussianVelocity(), _noise(20000), 200)
    # Monte Carlo standard errors: mean s/√N ≈ 0.0035, std s/√(2N) ≈ 0.0025; Euler bias is O(1/n)
    assert torch.allclose(x0.mean(0), MU, atol=0.02)
    assert torch.allclose(x0.std(0), torch.full((2,), S), atol=0.02)


@pytest.mark.parametrize("model", [GaussianVelocity(), TinyVelocity(scale=0.5)], ids=["gaussian", "mlp"])
def test_invert_then_sample_round_trip(model):
    x0 = MU + S * _noise(512, seed=1)
    inv = euler_invert(model, x0, 50)
    assert inv.converged and inv.residual <= 1e-5
    assert len(inv.iterations_used) == 50 and all(1 <= k <= 20 for k in inv.iterations_used)
    assert (euler_sample(model, inv.noise, 50) - x0).abs().max() < 1e-4


def test_invert_exact_for_linear_velocity():
    """Backward Euler inverts each forward step exactly: x_1 = x_0 / (1 - c/n)^n for v = c·x."""
    c, n = 2.0, 10
    x0 = _noise(64, seed=2).double()
    inv = euler_invert(Linear(c), x0, n, iterations=100, tol=1e-12)
    assert inv.converged
    assert torch.allclose(inv.noise, x0 / (1 - c / n) ** n, rtol=1e-9, atol=1e-10)


def test_invert_warns_when_step_times_lipschitz_exceeds_one():
    x0 = _noise(16, seed=3).double()
    with pytest.warns(InversionWarning, match="step"):
        inv = euler_invert(Linear(30.0), x0, 2)  # η·L = 15 ≥ 1: the fixed-point map expands
    assert not inv.converged and inv.residual > 1e3


def test_invert_perturb_is_seeded():
    model, x0 = GaussianVelocity(), MU + S * _noise(32, seed=4)
    a = euler_invert(model, x0, 20, perturb=1e-3, generator=torch.Generator().manual_seed(7)).noise
    b = euler_invert(model, x0, 20, perturb=1e-3, generator=torch.Generator().manual_seed(7)).noise
    clean = euler_invert(model, x0, 20).noise
    assert torch.equal(a, b) and not torch.equal(a, clean)
    assert (a - clean).abs().max() < 0.05  # a 1e-3 data perturbation moves the noise only a little


def test_composed_with_zero_corrector_is_the_base_sampler():
    base, z = TinyVelocity(scale=0.5), _noise(128, seed=5)
    assert torch.equal(composed_sample(ZeroVelocity(), base, z, 7, 13), euler_sample(base, z, 13))


def test_composed_with_linear_corrector_scales_the_noise():
    base, z = GaussianVelocity(), _noise(128, seed=6)
    expected = euler_sample(base, z * (1 - 0.5 / 4) ** 4, 9)
    assert torch.allclose(composed_sample(Linear(0.5), base, z, 4, 9), expected, atol=1e-6)


def test_flow_objective_shapes_and_path():
    data = torch.randn(50, 3, 4, 4)
    x_t, t, target = FlowMatchingObjective(data).batch(16, torch.Generator().manual_seed(0))
    assert x_t.shape == target.shape == (16, 3, 4, 4) and t.shape == (16,) and t.dtype == torch.float32
    assert ((t >= 0) & (t <= 1)).all()
    # x_t - t·target is a data row: the batch lies on the linear path of some x_0
    x0 = (x_t - t.view(-1, 1, 1, 1) * target).flatten(1)
    dist = (x0[:, None] - data.flatten(1)[None]).abs().amax(-1).min(1).values
    assert dist.max() < 1e-5  # float32 round-off only
    x0, eps = data[:16], torch.randn(16, 3, 4, 4)
    at0, v = flow_path(x0, eps, torch.zeros(16))
    at1, _ = flow_path(x0, eps, torch.ones(16))
    assert torch.equal(at0, x0) and torch.equal(at1, eps) and torch.equal(v, eps - x0)


@pytest.mark.parametrize("t", [0.2, 0.5, 0.8])
def test_flow_target_regression_matches_exact_velocity(t):
    """E[target | x_t] = a(t)·(x_t - (1-t)μ) - μ: least squares on centred x_t recovers slope and constant."""
    g = torch.Generator().manual_seed(10)
    mu, s, n = 1.5, 0.5, 1_000_000
    x0 = mu + s * torch.randn(n, 1, generator=g, dtype=torch.float64)
    x_t, target = flow_path(x0, torch.randn(n, 1, generator=g, dtype=torch.float64), torch.full((n,), t))
    X = torch.cat([x_t - (1 - t) * mu, torch.ones_like(x_t)], dim=1)
    slope, const = torch.linalg.lstsq(X, target).solution.flatten().tolist()
    # tolerances: 5 standard errors of OLS, from Var(x_t) and the residual variance Var(target | x_t)
    var_x = (1 - t) ** 2 * s**2 + t**2
    var_res = (1 + s**2) - (t - (1 - t) * s**2) ** 2 / var_x
    assert slope == pytest.approx(a_of_t(t, s), abs=5 * (var_res / (n * var_x)) ** 0.5)
    assert const == pytest.approx(-mu, abs=5 * (var_res / n) ** 0.5)


@pytest.fixture
def one_thread():
    """Tiny models train fastest on one thread (and avoid oversubscription on a shared machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_train_flow_matching_reduces_loss(one_thread):
    """The existing train() loop fits a velocity model with FlowMatchingObjective (loss ≥ E Var(target|x_t))."""
    data = 2.0 + 0.5 * torch.randn(4096, 1, generator=torch.Generator().manual_seed(0))
    model = TinyVelocity(dim=1, hidden=32)
    losses = train(model, FlowMatchingObjective(data), steps=300, learning_rate=1e-2, batch_size=256,
                   generator=torch.Generator().manual_seed(1))
    first, last = sum(losses[:10]) / 10, sum(losses[-50:]) / 50
    # the irreducible loss E_t Var(target | x_t) = E_t[1 + s² - Cov²/Var(x_t)] for s = 0.5 (≈ π/4)
    t = torch.linspace(0, 1, 10001, dtype=torch.float64)
    floor = float((1 + S**2 - a_of_t(t) ** 2 * ((1 - t) ** 2 * S**2 + t**2)).mean())
    assert last < 0.5 * first and floor - 0.05 < last < floor + 0.15
