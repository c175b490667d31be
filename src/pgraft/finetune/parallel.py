"""Data-parallel training (DDP through `accelerate`) over the processes of `accelerate launch` (docs/CLUSTER.md "GPUs").

Every process draws the same global batch from the same generator and keeps its own rows (rank r of P takes
rows r·B/P .. (r+1)·B/P); DDP averages the gradients, so each optimizer step is the step of the whole batch
and the batch size and number of steps are those of the params whatever P. With one process (no launcher)
nothing here is used: the training loop is exactly the single-process one.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from pgraft.devices import is_main_process, num_processes


class DataParallel:
    """The launched processes: their rank, the DDP-wrapped network, row shards and reductions."""

    def __init__(self, device: torch.device):
        from accelerate import Accelerator

        # cpu=True: processes on CPUs synchronise through gloo (accelerate launch --multi_gpu, params device: cpu)
        self.accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision="no")
        self.rank, self.size = self.accelerator.process_index, self.accelerator.num_processes

    def wrap(self, model: nn.Module) -> nn.Module:
        """The network under DDP (its parameters are the model's own: the optimizer and checkpoints use those)."""
        return self.accelerator.prepare_model(model, device_placement=False)

    def row_slice(self, size: int, key: str) -> slice:
        """This process's rows of a global batch of `size` rows (`key`: the params key of that size)."""
        if size % self.size:
            raise ValueError(f"{key}={size} is not divisible by the {self.size} training processes: every process "
                             f"takes the same number of rows of each batch")
        n = size // self.size
        return slice(self.rank * n, (self.rank + 1) * n)

    def rows(self, batch: tuple[torch.Tensor, ...], size: int, key: str) -> tuple[torch.Tensor, ...]:
        """This process's rows of each tensor of a global batch of `size` rows."""
        part = self.row_slice(size, key)
        return tuple(b[part] for b in batch)

    def average_gradients(self, model: nn.Module) -> None:
        """Replace each gradient by its mean over the processes (what DDP does during backward)."""
        for p in model.parameters():
            if p.grad is not None:
                p.grad = self.accelerator.reduce(p.grad, "mean")

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a per-process value over the processes (the global batch's mean loss)."""
        return self.accelerator.reduce(value.detach(), "mean")

    def gather(self, value: torch.Tensor) -> torch.Tensor:
        """The processes' tensors concatenated along dim 0, in rank order (the rows of the global batch)."""
        return self.accelerator.gather(value.contiguous())

    def wait(self) -> None:
        self.accelerator.wait_for_everyone()


@lru_cache(maxsize=None)
def _launched(device_type: str) -> DataParallel:
    return DataParallel(torch.device(device_type))


def launched(device: torch.device | str) -> DataParallel | None:
    """The data-parallel processes when several were launched, else None (the single-process path)."""
    return _launched(torch.device(device).type) if num_processes() > 1 else None


def wait(device: torch.device | str) -> None:
    """Wait until every launched process gets here (nothing with one process)."""
    par = launched(device)
    if par is not None:
        par.wait()


__all__ = ["DataParallel", "is_main_process", "launched", "num_processes", "wait"]
