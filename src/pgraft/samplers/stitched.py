"""P-GRAFT's stitched sampler network and what the truncation point's limits mean (docs/METHOD.md §2)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


def method(k: int, num_steps: int) -> str:
    """What truncation point k of an N-step sampler is: "base" (k = 0), "graft" (k = N) or "pgraft"."""
    if not 0 <= k <= num_steps:
        raise ValueError(f"truncation point k={k} outside [0, N={num_steps}]")
    return "base" if k == 0 else "graft" if k == num_steps else "pgraft"


def method_label(k: int, num_steps: int) -> str:
    """How figures and tables name truncation point k."""
    return {"base": "base", "graft": "GRAFT", "pgraft": f"P-GRAFT k={k}"}[method(k, num_steps)]


@dataclass(frozen=True)
class Stitched:
    """The network of step i: the fine-tuned model for the first k steps from the noise end, the base after.

    A `model_for_step` for `pgraft.samplers.rollout`: k = 0 is the base everywhere, k = N the fine-tuned model
    everywhere (GRAFT)."""

    finetuned: nn.Module
    base: nn.Module
    k: int

    def __call__(self, i: int) -> nn.Module:
        return self.finetuned if i < self.k else self.base
