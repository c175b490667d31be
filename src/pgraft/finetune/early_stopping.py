"""Early stopping on a held-out loss: evaluate every few steps, keep the best state, stop after `patience` misses."""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn


class EarlyStopping:
    """An `on_step` callback for finetune.loop.train: every `every` steps it evaluates `loss_fn(model)`, keeps a copy
    of the state with the lowest loss and answers True (stop) once `patience` evaluations in a row did not improve
    on it. After training, `finish(step, model)` loads the best state. `history` lists [step, loss] of each evaluation.
    With monitor_only it only records the losses (and the best step): it never stops and `finish` keeps the last
    state."""

    def __init__(self, loss_fn: Callable[[nn.Module], float], every: int, patience: int, monitor_only: bool = False):
        if every < 1 or patience < 1:
            raise ValueError(f"early stopping needs every >= 1 and patience >= 1, got {every}, {patience}")
        self.loss_fn, self.every, self.patience, self.monitor_only = loss_fn, every, patience, monitor_only
        self.best_loss, self.best_step, self.best_state = float("inf"), 0, None
        self.misses, self.stopped_at = 0, None
        self.history: list[list[float]] = []

    def observe(self, step: int, loss: float, model: nn.Module) -> bool:
        """Record one evaluation; True when training should stop."""
        self.history.append([step, float(loss)])
        if loss < self.best_loss:
            self.best_loss, self.best_step, self.misses = float(loss), step, 0
            if not self.monitor_only:
                self.best_state = copy.deepcopy(model.state_dict())
        else:
            self.misses += 1
        if self.misses >= self.patience and not self.monitor_only:
            self.stopped_at = step
            return True
        return False

    def __call__(self, step: int, model: nn.Module) -> bool:
        if step % self.every:
            return False
        was_training = model.training
        model.eval()
        with torch.no_grad():
            loss = float(self.loss_fn(model))
        model.train(was_training)
        return self.observe(step, loss, model)

    def finish(self, step: int, model: nn.Module) -> None:
        """Evaluate the last state too (when `step` is no multiple of `every`), then load the best state."""
        if not self.history or self.history[-1][0] != step:
            model.eval()
            with torch.no_grad():
                self.observe(step, float(self.loss_fn(model)), model)
        if self.best_state is not None and not self.monitor_only:
            model.load_state_dict(self.best_state)
        model.eval()


def mean_loss(model: nn.Module, batches) -> float:
    """Mean squared velocity error of `model` over fixed (x_t, t, target) batches (weighted by rows)."""
    device = next(model.parameters()).device
    total, rows = 0.0, 0
    for x_t, t, target in batches:
        err = (model(x_t.to(device), t.to(device)) - target.to(device)) ** 2
        total += float(err.mean()) * len(x_t)
        rows += len(x_t)
    return total / rows
