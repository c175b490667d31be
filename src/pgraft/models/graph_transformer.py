"""A small permutation-equivariant graph transformer ε-predictor: atom tokens with pair (bond) features."""

from __future__ import annotations

import torch
from torch import nn

from pgraft.models.mlp import timestep_embedding


class _Layer(nn.Module):
    """Attention over atoms biased by the pair features, then pair features updated from their two atoms."""

    def __init__(self, hidden: int, pair_hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.pair_bias = nn.Linear(pair_hidden, heads)
        self.proj = nn.Linear(hidden, hidden)
        self.ff = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, 2 * hidden), nn.SiLU(),
                                nn.Linear(2 * hidden, hidden))
        self.pair_in = nn.Linear(hidden, pair_hidden)
        self.pair_ff = nn.Sequential(nn.LayerNorm(pair_hidden), nn.Linear(pair_hidden, pair_hidden), nn.SiLU(),
                                     nn.Linear(pair_hidden, pair_hidden))

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, d = h.shape
        q, k, v = self.qkv(self.norm(h)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        logits = q @ k.transpose(-1, -2) * (d // self.heads) ** -0.5 + self.pair_bias(e).permute(0, 3, 1, 2)
        h = h + self.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, d))
        h = h + self.ff(h)
        a = self.pair_in(h)
        e = e + self.pair_ff(e + a[:, :, None] + a[:, None, :])  # symmetric in (i, j) when e is
        return h, e


class GraphTransformer(nn.Module):
    """ε(x_t, t) for flat graph vectors: `num_atoms` rows of `atom_classes` scores, then one row of
    `bond_classes` scores per atom pair i < j. No positional encoding: the network is equivariant to
    relabelling the atoms, and its bond output is symmetric by construction."""

    def __init__(self, num_atoms: int = 9, atom_classes: int = 5, bond_classes: int = 4, hidden: int = 64,
                 pair_hidden: int = 32, layers: int = 3, heads: int = 4, t_dim: int = 32):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden={hidden} must be a multiple of heads={heads}")
        self.config = {"num_atoms": num_atoms, "atom_classes": atom_classes, "bond_classes": bond_classes,
                       "hidden": hidden, "pair_hidden": pair_hidden, "layers": layers, "heads": heads,
                       "t_dim": t_dim}
        self.n, self.ca, self.cb, self.t_dim = num_atoms, atom_classes, bond_classes, t_dim
        iu = torch.triu_indices(num_atoms, num_atoms, offset=1)
        self.register_buffer("iu", iu, persistent=False)
        self.t_proj = nn.Sequential(nn.Linear(t_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.t_pair = nn.Linear(hidden, pair_hidden)
        self.atom_in = nn.Linear(atom_classes, hidden)
        self.bond_in = nn.Linear(bond_classes + 1, pair_hidden)  # + a "same atom" flag for the diagonal
        self.layers = nn.ModuleList(_Layer(hidden, pair_hidden, heads) for _ in range(layers))
        self.atom_out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, atom_classes))
        self.bond_out = nn.Sequential(nn.LayerNorm(pair_hidden), nn.Linear(pair_hidden, bond_classes))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        b, n = x.shape[0], self.n
        atoms = x[:, :n * self.ca].reshape(b, n, self.ca)
        upper = x[:, n * self.ca:].reshape(b, -1, self.cb)
        pairs = x.new_zeros(b, n, n, self.cb + 1)
        pairs[:, self.iu[0], self.iu[1], :self.cb] = upper
        pairs[:, self.iu[1], self.iu[0], :self.cb] = upper
        pairs[:, torch.arange(n), torch.arange(n), self.cb] = 1.0
        temb = self.t_proj(timestep_embedding(t, self.t_dim))
        h = self.atom_in(atoms) + temb[:, None]
        e = self.bond_in(pairs) + self.t_pair(temb)[:, None, None]
        for layer in self.layers:
            h, e = layer(h, e)
        eps_bonds = self.bond_out(e)[:, self.iu[0], self.iu[1]]
        return torch.cat([self.atom_out(h).reshape(b, -1), eps_bonds.reshape(b, -1)], dim=1)
