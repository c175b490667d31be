"""The learning-error probe of the best-k predictor (docs/METHOD.md §2, "Predicting the best k"): a short GRAFT
fine-tune on part of the accepted samples, and the denoising loss at each sampler step of the base and of the
probe on the held-out rest and of the probe on its own training part (pgraft.report.best_k reads them)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from pgraft.finetune.loop import train
from pgraft.finetune.objectives import TruncatedObjective
from pgraft.samplers.levels import NoiseLevels
from pgraft.seeds import numpy_rng, seeded


def split(n: int, heldout_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of n >= 2 accepted samples, at least one of each."""
    if n < 2:
        raise ValueError(f"probe: {n} accepted sample(s); a held-out split needs at least 2")
    order = rng.permutation(n)
    held = min(n - 1, max(1, int(round(heldout_fraction * n))))
    return np.sort(order[held:]), np.sort(order[:held])


def window_losses(model, data: torch.Tensor, cond, levels: NoiseLevels, generator: torch.Generator, draws: int,
                  batch: int = 4096) -> list[float]:
    """Mean ε-loss of `model` on clean `data` at each sampler timestep (noise end first), `draws` noises per row
    drawn from `generator` (the same noises for every model given the same generator state)."""
    out = []
    device = next(model.parameters()).device
    with torch.no_grad():
        for t in levels.timesteps.tolist():
            ab = float(levels.alphas_cumprod[t])
            total = 0.0
            for _ in range(draws):
                eps = torch.randn(data.shape, generator=generator)
                x_t = ab ** 0.5 * data + (1 - ab) ** 0.5 * eps
                for i in range(0, len(data), batch):
                    rows = slice(i, i + batch)
                    tt = torch.full((len(x_t[rows]),), t, dtype=torch.long)
                    extra = () if cond is None else (cond[rows].to(device),)
                    pred = model(x_t[rows].to(device), tt.to(device), *extra).cpu()
                    total += float(((pred - eps[rows]) ** 2).flatten(1).mean(1).sum())
            out.append(total / (draws * len(data)))
    return out


def probe(base, data: torch.Tensor, cond, levels: NoiseLevels, *, steps: int, heldout_fraction: float, draws: int,
          learning_rate: float, batch_size: int, warmup_steps: int, timesteps: str, seed: int) -> dict:
    """Fine-tune a copy of `base` with GRAFT's loss (k = N) on the accepted x_0 `data` less a held-out part, then
    measure the per-step losses: heldout_base, heldout_probe (held-out part) and train_probe (training part)."""
    tr, ho = split(len(data), heldout_fraction, numpy_rng("probe_split", seed))
    rows = {"train": torch.as_tensor(tr), "heldout": torch.as_tensor(ho)}
    part = {name: (data[r], None if cond is None else cond[r]) for name, r in rows.items()}
    objective = TruncatedObjective(part["train"][0], levels, len(levels.timesteps), "x0", timesteps,
                                   cond=part["train"][1])
    model = copy.deepcopy(base).requires_grad_(True)
    losses = train(model, objective, steps, learning_rate, batch_size, seeded("probe_train", seed),
                   warmup_steps=warmup_steps)

    def measured(m, name):  # the same noises for every model on one part
        return window_losses(m, *part[name], levels, seeded("probe_windows", seed, len(rows[name])), draws)

    return {"steps": steps, "accepted": len(data), "train": len(tr), "heldout": len(ho),
            "timesteps": levels.timesteps.tolist(), "heldout_base": measured(base, "heldout"),
            "heldout_probe": measured(model, "heldout"), "train_probe": measured(model, "train"),
            "final_train_loss": float(np.mean(losses[-10:]))}
