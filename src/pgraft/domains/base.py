"""The protocol every domain implements (DiffusionDomain, FlowDomain); the stages only talk to domains through it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

if TYPE_CHECKING:  # torch is imported by the methods that need it: reward-only stages stay light
    from pathlib import Path

    import torch
    from pydantic import BaseModel
    from torch import nn

#: the condition of each sample, as the hooks take it: one prompt per sample, None for unconditional domains
Cond = Sequence[str] | None


class Domain:
    """A generation problem: data to pretrain on, a network architecture, a terminal reward, metrics, a drawing.

    Every hook that scores or draws samples takes `cond` (one prompt per sample, None for unconditional
    domains), so the stages call one signature whatever the domain.
    """

    name: ClassVar[str]
    #: "diffusion" (a reward domain of the GRAFT sweep) or "flow" (an INC domain)
    kind: ClassVar[str]
    #: the pydantic model of the domain's params.yaml section (`<name>:`)
    Params: ClassVar[type[BaseModel]]
    #: shape of one sample (without the batch dimension)
    shape: ClassVar[tuple[int, ...]]
    #: True: samples carry a prompt, the network is called as model(x_t, t, tokens), the hooks need `cond`
    conditional: ClassVar[bool] = False
    #: True: the base model is a published checkpoint (e.g. Stable Diffusion 2), loaded by the pretrain stage,
    #: not trained
    pretrained: ClassVar[bool] = False
    #: extra_metrics names shown in the per-k table (results/figures/<domain>_table.md) next to the reward
    table_metrics: ClassVar[tuple[str, ...]] = ()
    #: samples kept per (seed, k) for the gallery figure (results/figures/<domain>_samples.png); 0: no gallery
    gallery_size: ClassVar[int] = 0

    #: params `device` and `precision` (pgraft.domains.build sets them from the top level; default: CPU, fp32)
    device_setting: str = "cpu"
    precision: str = "fp32"

    def __init__(self, params: Any):
        self.params = params

    @property
    def device(self) -> str:
        """Where the stages run the networks and keep a sampling batch during a rollout: `device_setting`
        resolved (pgraft.devices.resolve_device: a ConfigError naming the key when CUDA is asked for and absent)."""
        from pgraft.devices import resolve_device

        return str(resolve_device(self.device_setting))

    def place(self, model: "nn.Module") -> "nn.Module":
        """`model` on the domain's device. A network that allows mixed precision (it has an `autocast`
        attribute: the UNets) runs its forward under bf16 autocast when `precision` gives one on CUDA; its
        output stays fp32. On a CPU nothing changes."""
        from pgraft.devices import autocast_dtype

        device = self.device
        model.to(device)
        if hasattr(model, "autocast"):
            model.autocast = autocast_dtype(device, self.precision)
        return model

    def sample_data(self, n: int, generator: "torch.Generator") -> "torch.Tensor":
        """n training examples of the base model's data distribution (conditional domains: (x, prompts))."""
        raise NotImplementedError

    def build_model(self) -> "nn.Module":
        """A fresh network (ε- or velocity-prediction) with a JSON-serialisable `config` attribute."""
        raise NotImplementedError

    def model_from_config(self, config: dict) -> "nn.Module":
        """The network that `build_model` made with this `config` (weights are loaded by the caller)."""
        raise NotImplementedError

    def reward(self, x: np.ndarray, cond: Cond = None) -> np.ndarray:
        """Terminal reward r(x_0, c) of each sample; higher is better; finite floats."""
        raise NotImplementedError

    def extra_metrics(self, x: np.ndarray, cond: Cond = None) -> dict[str, float]:
        """Domain-specific metrics of a generated sample set (finite floats; may use the auxiliary networks)."""
        return {}

    def draw(self, ax: Any, x: np.ndarray, cond: Cond = None) -> None:
        """Draw a set of generated samples (shape (n, *shape)) into one matplotlib Axes (prompts shown when given)."""
        raise NotImplementedError

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


class DiffusionDomain(Domain):
    """A reward domain of the GRAFT sweep: sampled with a DDIM/DDPM schedule, filtered by a GRS rule."""

    kind = "diffusion"

    def schedule(self, sampler: Any):
        """The sampler the stages run (from params.sampler); a pretrained domain keeps its model's noise schedule."""
        from pgraft.samplers.schedule import build_schedule

        return build_schedule(sampler)

    def dedup_keys(self, x: np.ndarray) -> list | None:
        """Keys that identify duplicate samples for top_k_dedup (None: every sample is distinct)."""
        return None

    # --- prompt-conditioned domains (conditional = True) ---

    def prompts(self, split: str) -> list[str]:
        """The prompt set of `split`: "train" (sampled and fine-tuned on) or "heldout" (evaluation only)."""
        raise NotImplementedError

    def tokens(self, prompts: list[str]) -> np.ndarray:
        """Token ids (n, length) int64 of the prompts: the network's conditioning input."""
        raise NotImplementedError

    def gallery_prompts(self) -> list[str]:
        """The prompts of the gallery figure, one per gallery sample."""
        raise NotImplementedError


class FlowDomain(Domain):
    """An INC domain: a flow-matching model sampled with Euler steps, improved without a reward."""

    kind = "flow"

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Disjoint (train, test) data arrays: the model learns the first, metrics compare with the second."""
        raise NotImplementedError

    def labelled_train(self) -> tuple[np.ndarray, np.ndarray]:
        """The training data with integer class labels (the FID feature network learns them)."""
        raise NotImplementedError


def prompts_of(domain: Domain, x: np.ndarray, cond: Cond) -> list[str]:
    """The prompts of samples x of a prompt-conditioned domain: its reward and metrics need one per sample."""
    if cond is None or len(cond) != len(x):
        raise ValueError(f"{domain.name}: {len(x)} samples need one prompt each (cond), got "
                         f"{'none' if cond is None else len(cond)}")
    return list(cond)
