"""Periodic training-state checkpoints: a run killed at any point resumes to the same result on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from pgraft.devices import is_main_process
from pgraft.io import atomic_path, load_weights, read_json, save_weights


class Resumable:
    """Model, Adam state, generator state and loss history saved every `every` steps under `workdir`.

    `fingerprint` identifies the inputs and settings; a checkpoint with another fingerprint is ignored.
    """

    def __init__(self, workdir: Path, fingerprint: str, every: int):
        self.workdir = Path(workdir)
        self.fingerprint = fingerprint
        self.every = every
        self.state_path = self.workdir / "resume.safetensors"
        self.meta_path = self.workdir / "resume.json"
        self.resumed_from = 0

    def load(self, model: torch.nn.Module, opt: torch.optim.Optimizer,
             generator: torch.Generator) -> tuple[int, list[float]]:
        if not (self.state_path.exists() and self.meta_path.exists()):
            return 0, []
        meta = read_json(self.meta_path)
        if meta.get("fingerprint") != self.fingerprint:
            return 0, []
        state = load_weights(self.state_path)
        model.load_state_dict({k[len("model."):]: v for k, v in state.items() if k.startswith("model.")})
        opt_state = {"state": {}, "param_groups": meta["param_groups"]}
        for key, value in state.items():
            if key.startswith("opt."):
                _, idx, name = key.split(".", 2)
                opt_state["state"].setdefault(int(idx), {})[name] = value
        opt.load_state_dict(opt_state)
        generator.set_state(state["rng"])
        self.resumed_from = int(meta["step"])
        return self.resumed_from, state["losses"].tolist()

    def maybe_save(self, step: int, model, opt, generator: torch.Generator, losses: list[float]) -> None:
        """Save at every `every`-th step; under a data-parallel launch only the main process writes (every
        process holds the same state)."""
        if self.every <= 0 or step % self.every or not is_main_process():
            return
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        opt_state = opt.state_dict()
        for idx, entries in opt_state["state"].items():
            for name, value in entries.items():
                tensors[f"opt.{idx}.{name}"] = torch.as_tensor(value)
        tensors["rng"] = generator.get_state()
        tensors["losses"] = torch.tensor(losses, dtype=torch.float64)
        save_weights(self.state_path, tensors)
        # the meta file is written last: a kill between the two leaves a fingerprint-less or older pair
        with atomic_path(self.meta_path) as tmp:
            tmp.write_text(json.dumps({"fingerprint": self.fingerprint, "step": step,
                                       "param_groups": opt_state["param_groups"]}))

    def clear(self) -> None:
        for p in (self.meta_path, self.state_path):
            p.unlink(missing_ok=True)
