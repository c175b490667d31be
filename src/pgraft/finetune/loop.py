"""The one training loop: Adam on the mean-squared ε-regression error of an objective's batches."""

from __future__ import annotations

from typing import Callable, Protocol

import torch
from torch import nn

from pgraft.devices import device_of, is_main_process
from pgraft.finetune import parallel

#: the learning curve keeps the mean training loss of every LOG_EVERY optimizer steps (read off the loss list
#: after training, so recording it changes no numeric result)
LOG_EVERY = 10


class Objective(Protocol):
    def batch(self, size: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """(x_t, t, target ε) for one minibatch, plus the rows' conditions for conditional domains."""


def train(
    model: nn.Module,
    objective: Objective,
    steps: int,
    learning_rate: float,
    batch_size: int,
    generator: torch.Generator,
    on_step: Callable[[int, nn.Module], None] | None = None,
    progress: str | None = None,
    resume=None,
    warmup_steps: int = 0,
) -> list[float]:
    """Run `steps` optimizer steps; call on_step(step, model) after each (1-based); training stops early when it
    returns True (finetune.early_stopping.EarlyStopping). Returns the losses.

    With `resume` (a finetune.resume.Resumable), training continues from its last checkpoint and saves
    a new one periodically; the result is the same as an uninterrupted run.

    With warmup_steps > 0 the learning rate rises linearly, learning_rate·step/warmup_steps, over the first
    warmup_steps steps (a fresh Adam at full rate damages a pretrained model in its first steps); the rate is
    a function of the step alone, so a resumed run follows the same schedule.

    The batches are drawn on the CPU (the generator's stream does not depend on the device) and moved to the
    model's device. Under `accelerate launch` with P processes (finetune.parallel) each process trains on its
    batch_size/P rows of the same global batch, DDP averages the gradients and the loss recorded is the global
    batch's; only the main process saves resumable checkpoints. With one process the loop is the plain one.
    """
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    model.train()
    start, losses = resume.load(model, opt, generator) if resume is not None else (0, [])
    device = device_of(model)
    par = parallel.launched(device)
    net = model if par is None else par.wrap(model)
    steps_iter = range(start + 1, steps + 1)
    if progress and is_main_process():
        from tqdm import tqdm

        steps_iter = tqdm(steps_iter, desc=progress, unit="step", leave=False, mininterval=1.0)
    for step in steps_iter:
        if warmup_steps:
            for group in opt.param_groups:
                group["lr"] = learning_rate * min(1.0, step / warmup_steps)
        batch = objective.batch(batch_size, generator)
        if par is not None:
            batch = par.rows(batch, batch_size, "batch_size")
        x_t, t, target, *cond = (b.to(device) for b in batch)
        loss = torch.mean((net(x_t, t, *cond) - target) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append((loss if par is None else par.mean(loss)).item())
        if on_step is not None and on_step(step, model):
            break
        if resume is not None:
            resume.maybe_save(step, model, opt, generator, losses)
    model.eval()
    return losses


def loss_history(losses: list[float], every: int = LOG_EVERY) -> list[list[float]]:
    """[[step, mean loss of the `every` steps up to step], ...] at every multiple of `every` and at the last step
    (1-based steps, as on_step counts them)."""
    if every < 1:
        raise ValueError(f"loss_history: every must be >= 1 (got {every})")
    ends = list(range(every, len(losses) + 1, every))
    if losses and (not ends or ends[-1] != len(losses)):
        ends.append(len(losses))
    return [[step, float(sum(losses[max(0, step - every):step]) / (step - max(0, step - every)))] for step in ends]
