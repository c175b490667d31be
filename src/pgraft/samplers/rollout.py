"""Rollouts from noise to data that keep the state after any chosen numbers of steps."""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn

from pgraft.samplers.schedule import Schedule
from pgraft.samplers.stitched import Stitched

ModelForStep = Callable[[int], nn.Module]


@torch.no_grad()
def rollout(
    model_for_step: ModelForStep,
    schedule: Schedule,
    x_T: torch.Tensor,
    generator: torch.Generator,
    keep: Iterable[int] = (),
    cond: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Run all N steps from x_T; return x_0 and {k: state after the first k steps} for k in `keep`.

    `model_for_step(i)` picks the ε-network used in step i (0-based, from the noise end); `cond`
    (one row per sample, e.g. prompt tokens) is passed to it as a third argument when given.
    Everything stays on x_T's device (the timesteps are moved there once): no step waits on the host.
    """
    extra = () if cond is None else (cond,)
    keep = set(keep)
    kept: dict[int, torch.Tensor] = {}
    x = x_T
    on_device = schedule.timesteps.to(x.device)
    for i, t in enumerate(schedule.timesteps):
        if i in keep:
            kept[i] = x.clone()
        eps = model_for_step(i)(x, on_device[i].expand(x.shape[0]), *extra)
        x = schedule.step(eps, int(t), x, generator)
    n = len(schedule.timesteps)
    if n in keep:
        kept[n] = x.clone()
    return x, kept


def stitched_rollout(
    finetuned: nn.Module,
    base: nn.Module,
    k: int,
    schedule: Schedule,
    x_T: torch.Tensor,
    generator: torch.Generator,
    keep: Iterable[int] = (),
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """P-GRAFT inference: the fine-tuned model for the first k steps, the base model for the rest."""
    return rollout(Stitched(finetuned, base, k), schedule, x_T, generator, keep)


def sample_in_batches(
    model_for_step: ModelForStep,
    schedule: Schedule,
    n: int,
    shape: tuple[int, ...],
    generator: torch.Generator,
    batch_size: int,
    keep: Iterable[int] = (),
    progress: bool = False,
    cond: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Draw n samples in batches; noise and step noise come from one generator, in order.

    `cond` (n rows, or None) conditions sample j on cond[j] (prompt-conditioned domains). With a `device`
    (e.g. "cuda") each batch lives there for the whole rollout: the noise is still drawn from the CPU
    generator (the same numbers on every device) and only the results come back to the CPU."""
    keep = sorted(set(keep))
    finals, kept = [], {k: [] for k in keep}
    starts = range(0, n, batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="sampling", unit="batch", leave=False)
    for start in starts:
        b = min(batch_size, n - start)
        x_T = torch.randn((b, *shape), generator=generator).to(device)
        c = None if cond is None else cond[start:start + b].to(device)
        x0, states = rollout(model_for_step, schedule, x_T, generator, keep, cond=c)
        finals.append(x0.cpu())
        for k in keep:
            kept[k].append(states[k].cpu())
    return torch.cat(finals), {k: torch.cat(v) for k, v in kept.items()}
