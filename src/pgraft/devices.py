"""Where the networks run: params `device` (auto | cpu | cuda) and `precision` (auto | fp32 | bf16), and the
processes of a data-parallel launch (`accelerate launch`, docs/CLUSTER.md "GPUs").

On a CPU nothing here changes a result: networks and batches stay where they were, in fp32. On CUDA the stages
keep each network and each sampling batch on the device for a whole rollout; the noise is still drawn from the
stages' CPU generators (the same numbers on every device) and moved there.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from pgraft.errors import ConfigError

if TYPE_CHECKING:  # torch is imported where a function needs it: a stage that runs no network never loads it
    import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16")


def resolve_device(setting: str, key: str = "device") -> torch.device:
    """The torch device of a device setting: auto is CUDA when torch.cuda.is_available(), else the CPU.

    Under a data-parallel launch each process takes the GPU of its LOCAL_RANK. `cuda` without a CUDA device
    is a ConfigError naming `key`, raised before any compute."""
    import torch

    if setting not in DEVICES:
        raise ConfigError(f"params {key}={setting!r}: expected one of {list(DEVICES)}")
    if setting == "cpu" or (setting == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"params {key}={setting!r}: no CUDA device is available here "
                          f"(torch.cuda.is_available() is False); set {key}: auto or cpu")
    local = os.environ.get("LOCAL_RANK")
    return torch.device("cuda", int(local)) if num_processes() > 1 and local is not None else torch.device("cuda")


def autocast_dtype(device: torch.device | str, precision: str, key: str = "precision") -> torch.dtype | None:
    """The autocast dtype of the networks that allow mixed precision: bf16 on CUDA for auto and bf16, None
    (fp32, no autocast) for fp32 and always on a CPU."""
    import torch

    if precision not in PRECISIONS:
        raise ConfigError(f"params {key}={precision!r}: expected one of {list(PRECISIONS)}")
    if torch.device(device).type != "cuda" or precision == "fp32":
        return None
    # auto: bf16 where the GPU computes in it natively (Ampere and later); bf16: always on CUDA
    return torch.bfloat16 if precision == "bf16" or torch.cuda.is_bf16_supported() else None


def autocast(x: torch.Tensor, dtype: torch.dtype | None):
    """The context a network's forward runs in: autocast to `dtype` on x's device, or nothing (dtype None)."""
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=x.device.type, dtype=dtype)


def device_of(model: torch.nn.Module) -> torch.device:
    """The device of a network's (first) parameter; the CPU for a network without parameters."""
    import torch

    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


# --- the processes of a data-parallel launch (environment of torchrun / accelerate launch) ---

def num_processes() -> int:
    """How many processes train together (WORLD_SIZE; 1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE") or 1)


def is_main_process() -> bool:
    """True in the one process that writes outputs (RANK 0, or no launcher)."""
    return int(os.environ.get("RANK") or 0) == 0
