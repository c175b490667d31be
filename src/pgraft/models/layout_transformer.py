"""A small transformer ε-predictor over a set of layout boxes (no positional encoding: permutation-equivariant)."""

from __future__ import annotations

import math

import torch
from torch import nn

from pgraft.models.mlp import timestep_embedding


class SetBlock(nn.Module):
    """One pre-norm transformer layer over a set of tokens: x + MHA(LN x), then x + FF(LN x).

    Plain matmul attention rather than torch.nn.TransformerEncoderLayer: torch's fused inference fast path
    changes the last bits of the outputs when gradients are off, and a denoiser must give bit-identical
    outputs in training, sampling and after reloading its weights."""

    def __init__(self, d_model: int, heads: int, ff: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff), nn.GELU(), nn.Linear(ff, d_model))

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None = None) -> torch.Tensor:
        """x (n, L, d); padding (n, L) bool, True where a token must not be attended to."""
        n, length, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, length, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)  # (n, heads, L, L)
        if padding is not None:
            scores = scores.masked_fill(padding[:, None, None, :], float("-inf"))
        mixed = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(n, length, d)
        x = x + self.proj(mixed)
        return x + self.ff(self.norm2(x))


class LayoutDenoiser(nn.Module):
    """ε(x_t, t) for layouts x of shape (n, L, features): each box slot is a token, `layers` SetBlocks mix
    the slots, and the timestep embedding is added to every token before each block. `config` is saved
    next to the weights."""

    def __init__(self, features: int, d_model: int = 48, layers: int = 1, heads: int = 2, ff: int = 96,
                 t_dim: int = 32):
        super().__init__()
        self.config = {"features": features, "d_model": d_model, "layers": layers, "heads": heads, "ff": ff,
                       "t_dim": t_dim}
        self.t_dim = t_dim
        self.inp = nn.Linear(features, d_model)
        self.t_proj = nn.Sequential(nn.Linear(t_dim, d_model), nn.SiLU(), nn.Linear(d_model, d_model))
        self.blocks = nn.ModuleList(SetBlock(d_model, heads, ff) for _ in range(layers))
        self.out = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, features))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        temb = self.t_proj(timestep_embedding(t, self.t_dim))[:, None, :]
        h = self.inp(x)
        for block in self.blocks:
            h = block(h + temb)
        return self.out(h)
