"""GRAFT / P-GRAFT fine-tuning of a copy of the base per budget: one resumable run, or several GRAFT rounds."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from pgraft.finetune import TruncatedObjective, train
from pgraft.finetune.loop import loss_history
from pgraft.errors import StageError
from pgraft.io import read_json
from pgraft.seeds import numpy_rng, seeded
from pgraft.workflows.artifacts import training_key
from pgraft.workflows.context import RunContext
from pgraft.workflows.grs_round import grs_round

Save = Callable[[str, object], None]  # save(name, model): one checkpoint b<budget>
#: the learning curve beside the checkpoints: {"log_every": steps per point, "train_loss": [[step, mean loss], ...]}
LOSS_HISTORY_FILE = "loss_history.json"


def accepted_rows(samples: dict, selection, k: int, num_steps: int, target: str, paths) -> tuple[str, np.ndarray]:
    """The state key P-GRAFT at k trains on (pgraft.workflows.artifacts.training_key) and the keep-mask over the
    samples; StageError naming the file (`paths`: the samples' and the selection's) when they do not fit."""
    key = training_key(k, num_steps, target)
    if key not in samples:
        raise StageError(f"{paths[0]}: no state for k={k} (has {sorted(samples)}); rerun sample")
    keep = selection.sort_values("index")["keep"].to_numpy().astype(bool)
    if len(keep) != len(samples["x0"]):
        raise StageError(f"{paths[1]}: {len(keep)} rows but {len(samples['x0'])} samples; rerun filter")
    return key, keep


def noise_levels(samples: dict, num_steps: int, source):
    """The sampler's noise levels the samples were drawn with; StageError when their step count is not N."""
    from pgraft.samplers.levels import NoiseLevels

    levels = NoiseLevels.from_arrays(samples["timesteps"], samples["alphas_cumprod"])
    if len(levels.timesteps) != num_steps:
        raise StageError(f"{source}: drawn with {len(levels.timesteps)} sampler steps but params say "
                         f"sampler.num_steps={num_steps}; rerun sample")
    return levels


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


def write_identity(out, domain_name: str, meta: dict, log_every: int) -> None:
    """k = 0: nothing to fine-tune. The checkpoint directory says so (`identity`: evaluate uses the base model)."""
    from pgraft.io import atomic_dir, write_json

    with atomic_dir(out) as tmp:
        write_json(Path(tmp) / "config.json",
                   {"domain": domain_name, "identity": True, **meta, "reward_evaluations": {}})
        write_json(Path(tmp) / LOSS_HISTORY_FILE, {"log_every": log_every, "train_loss": []})


def finetune_resumable(base, data, cond, levels, ft, seed: int, k: int, work: Path, fingerprint: str,
                       save: Save) -> tuple[dict, list, int]:
    """One run (finetune.rounds = 1) that resumes from the last checkpoint in `work` left by a killed run of the
    same inputs; returns its losses, learning curve and the step it resumed from (0: a fresh run)."""
    from pgraft.finetune.resume import Resumable

    resume = Resumable(work, fingerprint, ft.checkpoint_every)
    objective = TruncatedObjective(data, levels, k, ft.target, ft.timesteps, cond=cond)
    losses, history = finetune_once(base, objective, ft, seeded("finetune", seed, k), save, f"finetune k={k}", resume)
    resumed = resume.resumed_from
    resume.clear()
    return losses, history, resumed


def finetune_rounds(ctx: RunContext, data, cond, levels, ft, *, num_groups: int, group_size: int, state_key: str,
                    save: Save) -> tuple[dict, list]:
    """ft.rounds GRAFT rounds per run: the first trains on the given accepted data, each later one on a fresh
    round sampled from the current stitched model (docs/METHOD.md §1-2). One run per budget (budget // rounds
    steps each round) or, with ft.round_checkpoints, one run of budgets[-1] // rounds steps a round saving each
    budget at the end of its round. Returns the metrics and the learning curve of the largest budget's run, its
    rounds' steps counted on."""
    base, k, seed = ctx.base, ctx.k, ctx.seed
    metrics, run_losses = {}, []
    for run in ([ft.budgets] if ft.round_checkpoints else [[b] for b in ft.budgets]):
        model = copy.deepcopy(base).requires_grad_(True)
        steps = max(1, run[-1] // ft.rounds)
        gen, round_data, round_cond, run_losses = seeded("finetune", seed, k, run[-1]), data, cond, []
        for rnd in range(ft.rounds):
            if rnd > 0:  # the round's sampling draws from the training generator, as the data came before it
                done = grs_round(model, base, k, ctx.schedule, ctx.domain, ctx.rule, num_groups=num_groups,
                                 group_size=group_size, batch_size=ctx.batch_size, generator=gen,
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
