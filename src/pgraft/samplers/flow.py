"""Euler sampling of a rectified flow, its backward-Euler inverse and the INC composed sampler (docs/METHOD.md §4)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

# Convention (rectified flow / flow matching, linear path): x_t = (1 - t)·x_0 + t·ε with t in [0, 1],
# t = 0 data, t = 1 noise, ε ~ N(0, I). The network predicts the velocity v(x_t, t) ≈ dx_t/dt = ε - x_0
# and is called as model(x, t), t a float tensor of shape (batch,) with values in [0, 1] (a UNet wrapper
# may rescale it). Sampling goes from t = 1 to t = 0 on the uniform grid t_j = 1 - j/n, j = 0..n:
#     x_{t_{j+1}} = x_{t_j} + (t_{j+1} - t_j)·v(x_{t_j}, t_j)      (a step of size η = 1/n backwards in t).


class InversionWarning(UserWarning):
    """Backward Euler's fixed-point iteration did not converge at some step (η·Lip(v) is probably ≥ 1)."""


class ZeroVelocity(nn.Module):
    """v ≡ 0: its Euler map is the identity, i.e. the "no correction" corrector for `composed_sample`."""

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


@dataclass
class InversionResult:
    """`noise` is the recovered x_1; `residual` the largest last fixed-point update (max-abs) over steps and rows;
    `converged` whether every step met `tol` for every row; `iterations_used[j]` the iterations spent on forward
    step j (by its slowest row); `step_residuals[j]` the largest last update of step j over rows;
    `row_residuals[i]` row i's largest last update over steps (row i converged iff it is ≤ tol)."""

    noise: torch.Tensor
    residual: float
    converged: bool
    iterations_used: list[int] = field(default_factory=list)
    step_residuals: list[float] = field(default_factory=list)
    row_residuals: torch.Tensor | None = None


def time_grid(n: int) -> list[float]:
    """t_j = 1 - j/n for j = 0..n (t_0 = 1 noise, t_n = 0 data)."""
    if n < 1:
        raise ValueError(f"number of Euler steps n={n} must be >= 1")
    return [1.0 - j / n for j in range(n + 1)]


def _velocity(model: nn.Module, x: torch.Tensor, t: float) -> torch.Tensor:
    return model(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device))


@torch.no_grad()
def euler_sample(model: nn.Module, x1: torch.Tensor, n: int, *, return_path: bool = False):
    """Forward Euler from noise x1 (t = 1) to data (t = 0) in n steps; with return_path also the n + 1 states."""
    ts = time_grid(n)
    x, path = x1, [x1]
    for j in range(n):
        x = x + (ts[j + 1] - ts[j]) * _velocity(model, x, ts[j])
        path.append(x)
    return (x, path) if return_path else x


@torch.no_grad()
def euler_invert(
    model: nn.Module,
    x0: torch.Tensor,
    n: int,
    *,
    iterations: int = 20,
    tol: float = 1e-5,
    perturb: float = 0.0,
    generator: torch.Generator | None = None,
) -> InversionResult:
    """The noise x_1 that `euler_sample(model, ·, n)` maps to x0 (docs/METHOD.md §4, step 1).

    Backward Euler, step j = n-1 down to 0: knowing y_next = x_{t_{j+1}}, solve
    y_next = y + (t_{j+1} - t_j)·v(y, t_j) for y = x_{t_j} by the fixed point y ← y_next + η·v(y, t_j),
    η = t_j - t_{j+1} = 1/n, at the SAME time t_j the forward step used, starting from y = y_next.
    (docs/METHOD.md writes y_next - η·v with η signed along t; here the forward step moves t down, hence +.)
    The map is a contraction, so the iteration converges, when η·Lip(v) < 1. Each row stops iterating a step once
    its own update's max-abs size is ≤ tol (later iterations evaluate only the rows still moving); rows that do not
    get there within `iterations` are reported in `row_residuals` and raise an `InversionWarning`.
    `perturb` > 0 adds N(0, perturb²) noise to x0 first (docs/METHOD.md: σ = 1e-3 if inversion is unstable).
    """
    ts = time_grid(n)
    y = x0
    if perturb > 0:
        y = y + perturb * torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)  # CPU stream
    rows = y.shape[0]
    residuals, used = [math.inf] * n, [0] * n
    row_res = torch.zeros(rows, dtype=torch.float64, device=y.device)
    for j in reversed(range(n)):
        y_next, eta = y, ts[j] - ts[j + 1]
        y = y_next.clone()
        delta = torch.full((rows,), math.inf, dtype=torch.float64, device=y.device)
        active = torch.ones(rows, dtype=torch.bool, device=y.device)
        for k in range(1, iterations + 1):  # each row iterates until its own update is ≤ tol (or diverges)
            idx = active.nonzero().squeeze(1)
            y_new = y_next[idx] + eta * _velocity(model, y[idx], ts[j])
            d = (y_new - y[idx]).abs().reshape(len(idx), -1).amax(1).double()
            d = torch.where(torch.isfinite(d), d, torch.full_like(d, math.inf))  # diverged: iterating cannot help
            y[idx], delta[idx], used[j] = y_new, d, k
            active[idx] = (d > tol) & torch.isfinite(d)
            if not bool(active.any()):
                break
        residuals[j] = float(delta.max()) if rows else 0.0
        row_res = torch.maximum(row_res, delta)
    failed = [j for j in range(n) if not residuals[j] <= tol]
    if failed:
        worst = max(failed, key=lambda j: residuals[j])
        bad = int((row_res > tol).sum())
        warnings.warn(
            f"backward Euler did not converge for {bad} of {rows} rows at {len(failed)} of {n} steps (first: step "
            f"{failed[0]}, t={ts[failed[0]]:.4g}; worst: step {worst}, t={ts[worst]:.4g}, residual "
            f"{residuals[worst]:.3g} > tol {tol:g}); the step size 1/n times the Lipschitz constant of v is "
            f"probably >= 1: use more steps or perturb the data slightly (perturb=1e-3)",
            InversionWarning,
            stacklevel=2,
        )
    return InversionResult(noise=y, residual=max(residuals), converged=not failed, iterations_used=used,
                           step_residuals=residuals, row_residuals=row_res.cpu())


def batched(fn, x: torch.Tensor, batch_size: int) -> torch.Tensor:
    """fn applied to consecutive slices of x of at most batch_size rows, concatenated (a memory knob)."""
    return torch.cat([fn(x[s:s + batch_size]) for s in range(0, len(x), batch_size)])


def composed_sample(corrector: nn.Module, base: nn.Module, z: torch.Tensor, n_corrector: int,
                    n_base: int) -> torch.Tensor:
    """INC sampling (docs/METHOD.md §4, step 3): noise z → corrector's Euler map (n_corrector steps) → corrected
    noise → frozen base's Euler map (n_base steps, the n used for inversion) → data."""
    return euler_sample(base, euler_sample(corrector, z, n_corrector), n_base)
