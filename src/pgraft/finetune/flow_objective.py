"""Flow matching on the linear path (docs/METHOD.md §4, step 2): regress the velocity ε - x_0 at x_t."""

from __future__ import annotations

import torch


def flow_path(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = (1 - t)·x_0 + t·ε (t = 0 data, t = 1 noise; t of shape (batch,)) and its velocity ε - x_0."""
    tb = t.view(-1, *[1] * (x0.ndim - 1))
    return (1 - tb) * x0 + tb * eps, eps - x0


class FlowMatchingObjective:
    """Conditional flow matching on data of shape (n, ...): t ~ U(0, 1), ε ~ N(0, I), target ε - x_0.

    Follows finetune.loop.Objective, so `train()` fits a velocity model v(x_t, t) with t a float in [0, 1]
    (the convention of samplers/flow.py); its minimiser is the marginal velocity E[ε - x_0 | x_t].
    """

    def __init__(self, data: torch.Tensor):
        self.data = data if data.is_floating_point() else data.float()

    def batch(self, size: int, generator: torch.Generator):
        idx = torch.randint(len(self.data), (size,), generator=generator)
        x0 = self.data[idx]
        t = torch.rand((size,), generator=generator, dtype=x0.dtype)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        x_t, target = flow_path(x0, eps, t)
        return x_t, t, target
