"""GRAFT / P-GRAFT fine-tuning of a copy of the base per budget: one resumable run, or several GRAFT rounds."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from pgraft.finetune import TruncatedObjective, train
from pgraft.finetune.loop import loss_history
from pgraft.io import read_json
from pgraft.seeds import numpy_rng, seeded
from pgraft.workflows.grs_round import grs_round

Save = Callable[[str, object], None]  # save(name, model): one checkpoint b<budget>
#: the learning curve beside the checkpoints: {"log_every": steps per point, "train_loss": [[step, mean loss], ...]}
LOSS_HISTORY_FILE = "loss_history.json"


def training_data(samples: dict, keep: np.ndarray, key: str, domain):
    """The accepted rows' states `key` as float32 and, for conditional domains, their prompts' tokens."""
    import torch

    data = torch.as_tensor(samples[key][keep], dtype=torch.float32)
    cond = torch.as_tensor(domain.tokens([str(q) for q in samples["prompt"][keep]])) if domain.conditional else None
    return data, cond


def fresh_workdir(work: Path, fingerprint: str) -> None:
    """Keep a work directory only when its resume point was made from the same inputs and settings."""
    if work.exists() and (not (work / "resume.json").exists()
                          or read_json(work / "resume.json").get("fingerprint") != fingerprint):
        shutil.rmtree(work)  # killed before its first checkpoint, or left by other inputs: start afresh
    work.mkdir(parents=True, exist_ok=True)


def finetune_once(base, objective, ft, generator, save: Save, progress: str, resume=None) -> tuple[dict, list]:
    """One training run saving a checkpoint at every budget: identical to separate runs per budget (same batch
    stream, constant learning rate). Returns the mean of the last 20 losses before each budget, and the learning
    curve [[step, mean loss], ...] (finetune.loop.loss_history; a resumed run keeps its earlier losses)."""
    model = copy.deepcopy(base).requires_grad_(True)

    def checkpoint(step, m):
        if step in ft.budgets:
            save(f"b{step}", m)

    losses = train(model, objective, ft.budgets[-1], ft.learning_rate, ft.batch_size, generator,
                   on_step=checkpoint, progress=progress, resume=resume, warmup_steps=ft.warmup_steps)
    return {f"loss_b{b}": float(np.mean(losses[max(0, b - 20):b])) for b in ft.budgets}, loss_history(losses)


def finetune_rounds(base, data, cond, levels, k: int, ft, *, domain, rule, schedule, sample, group_size: int,
                    seed: int, state_key: str, save: Save) -> tuple[dict, list]:
    """ft.rounds GRAFT rounds per run: the first trains on the given accepted data, each later one on a fresh
    round sampled from the current stitched model (docs/METHOD.md §1-2). One run per budget (budget // rounds
    steps each round) or, with ft.round_checkpoints, one run of budgets[-1] // rounds steps a round saving each
    budget at the end of its round. Returns the metrics and the learning curve of the largest budget's run, its
    rounds' steps counted on."""
    metrics, run_losses = {}, []
    for run in ([ft.budgets] if ft.round_checkpoints else [[b] for b in ft.budgets]):
        model = copy.deepcopy(base).requires_grad_(True)
        steps = max(1, run[-1] // ft.rounds)
        gen, round_data, round_cond, run_losses = seeded("finetune", seed, k, run[-1]), data, cond, []
        for rnd in range(ft.rounds):
            if rnd > 0:  # the round's sampling draws from the training generator, as the data came before it
                done = grs_round(model, base, k, schedule, domain, rule, num_groups=sample.num_groups,
                                 group_size=group_size, batch_size=sample.batch_size, generator=gen,
                                 rng=numpy_rng("finetune_rounds", seed, k))
                round_data, round_cond = done.accepted(None if state_key == "x0" else k)
            obj = TruncatedObjective(round_data, levels, k, ft.target, ft.timesteps, cond=round_cond)
            losses = train(model, obj, steps, ft.learning_rate, ft.batch_size, gen,
                           warmup_steps=ft.warmup_steps if rnd == 0 else 0)
            run_losses += losses
            b = run[-1] if rnd == ft.rounds - 1 else (rnd + 1) * steps  # the budget this round completes
            if b in run:
                metrics[f"loss_b{b}"] = float(np.mean(losses[-20:]))
                save(f"b{b}", model)
    return metrics, loss_history(run_losses)
