"""A small MLP ε-predictor for low-dimensional data, with a sinusoidal timestep embedding."""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of integer timesteps (as in DDPM / diffusers' get_timestep_embedding)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class MLPDenoiser(nn.Module):
    """ε(x_t, t) for vectors x of size `dim`; `config` is saved next to the weights."""

    def __init__(self, dim: int, hidden: int = 128, layers: int = 3, t_dim: int = 32):
        super().__init__()
        self.config = {"dim": dim, "hidden": hidden, "layers": layers, "t_dim": t_dim}
        self.t_dim = t_dim
        self.t_proj = nn.Sequential(nn.Linear(t_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.inp = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(layers)
        )
        self.out = nn.Sequential(nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        h = self.inp(x) + self.t_proj(timestep_embedding(t, self.t_dim))
        for block in self.blocks:
            h = h + block(h)  # residual MLP blocks
        return self.out(h)


class VelocityMLP(nn.Module):
    """v(x, t) for tensors of any per-sample `shape` (flattened), t in [0, 1]: the INC corrector."""

    def __init__(self, shape: list[int], hidden: int = 256, layers: int = 3):
        super().__init__()
        self.shape = tuple(shape)
        self.config = {"shape": list(shape), "hidden": hidden, "layers": layers}
        self.mlp = MLPDenoiser(dim=int(math.prod(shape)), hidden=hidden, layers=layers)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        return self.mlp(x.reshape(len(x), -1), t * 999.0).reshape(x.shape)
