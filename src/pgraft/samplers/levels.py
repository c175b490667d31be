"""The noise levels of an N-step sampler grid, as plain tensors (saved with the samples they produced)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NoiseLevels:
    """τ_0 > ... > τ_{N-1} (the timestep queried in each step) and ᾱ_t over all training timesteps."""

    timesteps: torch.Tensor
    alphas_cumprod: torch.Tensor

    def level_after(self, k: int) -> tuple[int, float]:
        """(t_I, ᾱ_{t_I}) of the state after the first k steps; k = N is clean data (t_I = -1, ᾱ = 1)."""
        n = len(self.timesteps)
        if not 0 <= k <= n:
            raise ValueError(f"truncation point k={k} outside [0, {n}]")
        if k == n:
            return -1, 1.0
        t = int(self.timesteps[k])
        return t, float(self.alphas_cumprod[t])

    def to_arrays(self) -> dict:
        return {"timesteps": self.timesteps.numpy(), "alphas_cumprod": self.alphas_cumprod.float().numpy()}

    @classmethod
    def from_arrays(cls, timesteps, alphas_cumprod) -> "NoiseLevels":
        return cls(torch.as_tensor(timesteps).long(), torch.as_tensor(alphas_cumprod).float())
