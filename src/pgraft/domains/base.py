"""The protocol every domain implements; the stages only talk to domains through it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # torch is imported by the methods that need it: reward-only stages stay light
    import torch
    from torch import nn


class Domain:
    """A generation problem: data to pretrain on, a denoiser architecture, a terminal reward."""

    name: ClassVar[str]
    #: "diffusion" (a reward domain of the GRAFT sweep) or "flow" (an INC domain)
    kind: ClassVar[str] = "diffusion"
    #: shape of one sample (without the batch dimension)
    shape: ClassVar[tuple[int, ...]]

    def __init__(self, params: Any):
        self.params = params

    def sample_data(self, n: int, generator: "torch.Generator") -> "torch.Tensor":
        """n training examples of the base model's data distribution."""
        raise NotImplementedError

    def build_model(self) -> "nn.Module":
        """A fresh ε-prediction network with a JSON-serialisable `config` attribute."""
        raise NotImplementedError

    def model_from_config(self, config: dict) -> "nn.Module":
        raise NotImplementedError

    def reward(self, x: np.ndarray) -> np.ndarray:
        """Terminal reward r(x_0) of each sample; higher is better; finite floats."""
        raise NotImplementedError

    def dedup_keys(self, x: np.ndarray) -> list | None:
        """Keys that identify duplicate samples for top_k_dedup (None: every sample is distinct)."""
        return None

    def extra_metrics(self, x: np.ndarray) -> dict[str, float]:
        """Domain-specific metrics of a generated sample set."""
        return {}
