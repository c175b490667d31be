"""Continue base trajectories from stored intermediate states: the last N − k sampler steps from x after k steps."""

from __future__ import annotations

import torch
from torch import nn

from pgraft.samplers.schedule import Schedule


@torch.no_grad()
def continue_from(model: nn.Module, schedule: Schedule, x_k: torch.Tensor, k: int, generator: torch.Generator,
                  batch_size: int, cond: torch.Tensor | None = None,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """x_0 from the states x_k (each after k of the N steps), by the model's own steps k … N − 1.

    Rows run in batches of batch_size; the step noise comes from one CPU generator, in order (the same numbers on
    every device). k = N returns the states unchanged; k = 0 is an ordinary rollout from x_T."""
    steps = schedule.timesteps[k:]
    out = []
    for start in range(0, len(x_k), batch_size):
        x = x_k[start:start + batch_size].to(device)
        extra = () if cond is None else (cond[start:start + batch_size].to(device),)
        for t in steps:
            eps = model(x, t.expand(x.shape[0]), *extra)
            x = schedule.step(eps, int(t), x, generator)
        out.append(x.cpu())
    return torch.cat(out) if out else x_k.clone()
