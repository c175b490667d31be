"""The protocol every domain implements; the stages only talk to domains through it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # torch is imported by the methods that need it: reward-only stages stay light
    from pathlib import Path

    import torch
    from torch import nn


class Domain:
    """A generation problem: data to pretrain on, a denoiser architecture, a terminal reward."""

    name: ClassVar[str]
    #: "diffusion" (a reward domain of the GRAFT sweep) or "flow" (an INC domain)
    kind: ClassVar[str] = "diffusion"
    #: shape of one sample (without the batch dimension)
    shape: ClassVar[tuple[int, ...]]

    #: True: the base model is a published checkpoint (e.g. Stable Diffusion 2), loaded by the pretrain stage, not trained
    pretrained: ClassVar[bool] = False

    def __init__(self, params: Any):
        self.params = params

    @property
    def device(self) -> str:
        """Where the stages keep a sampling batch during a rollout (the network's device)."""
        return "cpu"

    def schedule(self, sampler: Any):
        """The sampler the stages run (from params.sampler); a pretrained domain keeps its model's noise schedule."""
        from pgraft.samplers.schedule import build_schedule

        return build_schedule(sampler)

    def sample_data(self, n: int, generator: "torch.Generator") -> "torch.Tensor":
        """n training examples of the base model's data distribution (conditional domains: (x, prompts))."""
        raise NotImplementedError

    def build_model(self) -> "nn.Module":
        """A fresh ε-prediction network with a JSON-serialisable `config` attribute."""
        raise NotImplementedError

    def model_from_config(self, config: dict) -> "nn.Module":
        raise NotImplementedError

    def reward(self, x: np.ndarray) -> np.ndarray:
        """Terminal reward r(x_0) of each sample; higher is better; finite floats.

        Conditional domains take `reward(x, prompts)`: r(x_0, c) with one prompt string per sample.
        """
        raise NotImplementedError

    # --- prompt-conditioned domains (text-to-image): samples carry a prompt, the network sees its tokens ---

    #: True: the network is called as model(x_t, t, tokens) and samples, rewards and metrics take prompts
    conditional: ClassVar[bool] = False

    def prompts(self, split: str) -> list[str]:
        """The prompt set of `split`: "train" (sampled and fine-tuned on) or "heldout" (evaluation only)."""
        raise NotImplementedError

    def tokens(self, prompts: list[str]) -> np.ndarray:
        """Token ids (n, length) int64 of the prompts: the network's conditioning input."""
        raise NotImplementedError

    def dedup_keys(self, x: np.ndarray) -> list | None:
        """Keys that identify duplicate samples for top_k_dedup (None: every sample is distinct)."""
        return None

    def extra_metrics(self, x: np.ndarray) -> dict[str, float]:
        """Domain-specific metrics of a generated sample set (finite floats; may use the auxiliary networks).

        Conditional domains take `extra_metrics(x, prompts)`."""
        return {}

    # --- auxiliary networks: judges, feature networks for FID-like metrics, trained by the pretrain stage ---

    def train_auxiliary(self, out_dir: "Path", generator: "torch.Generator") -> dict[str, float]:
        """Train the domain's auxiliary networks (if any) and save them in `out_dir` (created here; safetensors + JSON).

        The pretrain stage calls this with out_dir = <base model dir>/auxiliary, so the auxiliaries appear
        atomically with the base model. Returns metrics (e.g. a judge's held-out accuracy).
        """
        return {}

    def load_auxiliary(self, aux_dir: "Path") -> None:
        """Load what `train_auxiliary` saved in aux_dir = <base model dir>/auxiliary (the stages call this
        before `reward` and `extra_metrics`)."""

    #: extra_metrics names shown in the per-k table (results/figures/<domain>_table.md) next to the reward
    table_metrics: ClassVar[tuple[str, ...]] = ()

    # --- sample galleries (results/figures/<domain>_samples.png) ---

    #: samples kept per (seed, k) for the gallery figure; 0: no gallery for this domain
    gallery_size: ClassVar[int] = 0

    def draw(self, ax: Any, x: np.ndarray) -> None:
        """Draw a set of generated samples (shape (n, *shape)) into one matplotlib Axes.

        Conditional domains take `draw(ax, x, prompts)`."""
        raise NotImplementedError
