"""FLOP counts of a call (torch.utils.flop_counter) and sampling cost per generated image."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def flops_per_call(fn, *args, **kwargs) -> int:
    """FLOPs of one call `fn(*args, **kwargs)` (a multiply-add counts as 2), without gradients."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def flops_per_image(model: nn.Module, example_x: torch.Tensor, example_t: torch.Tensor, n_steps: int,
                    batch: int | None = None) -> float:
    """n_steps x FLOPs(model(x, t) on the example batch) / batch size: network cost of sampling one image."""
    batch = int(batch if batch is not None else example_x.shape[0])
    if batch <= 0 or n_steps < 0:
        raise ValueError(f"need batch > 0 and n_steps >= 0, got batch={batch}, n_steps={n_steps}")
    return n_steps * flops_per_call(model, example_x, example_t) / batch
