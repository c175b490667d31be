"""The evaluation protocol: stitched-model draws per budget, metrics per split, distances to target and base."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from pgraft.metrics.diversity import mean_pairwise_distance
from pgraft.metrics.tilt import tilt_weights_by_condition
from pgraft.seeds import seeded
from pgraft.metrics.records import Evaluation
from pgraft.workflows.context import RunContext
from pgraft.workflows.scoring import as_cond, conditions, score

# the random streams of the evaluation draws, per seed: one per split and one for the gallery
STREAMS = {"train": "evaluate_train", "heldout": "evaluate_heldout", "gallery": "evaluate_gallery"}


@dataclass(frozen=True)
class Reference:
    """The base sampler's own reference pool of a seed: its samples, their rewards and, for prompt-conditioned
    domains, their prompts (None otherwise)."""

    x0: np.ndarray
    rewards: np.ndarray
    prompts: object = None


def evaluate_budgets(ctx: RunContext, load_finetuned: Callable[[int], object], *, distance, reference: Reference,
                     budgets, evaluations: dict, identity: bool, num_samples: int) -> tuple[Evaluation, dict]:
    """Metrics of the stitched sampler (load_finetuned(b) for the first k steps, base after) per budget, and
    the gallery samples of the largest budget.

    The exact tilted target p̄·g/E[g] (docs/METHOD.md §1) is the reference pool weighted by the rule's g, per
    prompt for prompt-conditioned domains (reference.prompts; None for unconditional ones)."""
    domain, base, k, seed = ctx.domain, ctx.base, ctx.k, ctx.seed
    weights = tilt_weights_by_condition(ctx.rule, reference.rewards, reference.prompts)
    splits = ("train", "heldout") if domain.conditional else ("train",)
    conds = {s: conditions(domain, s, num_samples) for s in splits}
    cache: dict = {}
    result = Evaluation(float(weights @ reference.rewards), float(reference.rewards.mean()))
    gallery: dict = {}
    for b in budgets:
        if identity and budgets[0] in result.budgets:  # k = 0: the base model, whatever the budget
            result.budgets[b] = result.budgets[budgets[0]]
            continue
        ft = base if identity else load_finetuned(b)

        def draw(count, cond, stream):
            # common random numbers: the same noise for every k and budget of a seed (paired comparisons)
            from pgraft.samplers.rollout import sample_in_batches
            from pgraft.samplers.stitched import Stitched

            x, _ = sample_in_batches(Stitched(ft, base, k), ctx.schedule, count, domain.shape, seeded(stream, seed),
                                     ctx.batch_size, cond=cond, device=domain.device)
            return x.numpy()

        row: dict = {}
        for split in splits:
            prompts, cond = conds[split]
            x = draw(num_samples, cond, STREAMS[split])
            metrics = _split_metrics(domain, x, prompts)
            if split == "train":  # the tilted target and the base pool are defined on the training prompts
                metrics["dist_target"] = distance(x, reference.x0, weights, cache=cache)
                metrics["dist_base"] = distance(x, reference.x0, cache=cache)
                if domain.gallery_size and not domain.conditional:
                    gallery = {"x": x[:domain.gallery_size]}
            row.update({(m if split == "train" else f"{m}_heldout"): v for m, v in metrics.items()})
        if str(b) in evaluations:
            row["reward_evaluations"] = float(evaluations[str(b)])
        if domain.gallery_size and domain.conditional:
            prompts = np.asarray(domain.gallery_prompts())
            x = draw(len(prompts), _tokens(domain, prompts), STREAMS["gallery"])
            gallery = {"x": x, "prompt": prompts}
        result.budgets[b] = row
    if not gallery:
        gallery = {"x": np.zeros((0, *domain.shape), dtype=np.float32)}
    return result, gallery


def _split_metrics(domain, x: np.ndarray, prompts) -> dict:
    """Reward mean and spread, diversity and the domain's own metrics of one split's samples."""
    r = score(domain, x, prompts)
    return {"reward_mean": float(np.mean(r)), "reward_std": float(np.std(r)),
            "diversity": mean_pairwise_distance(x), **domain.extra_metrics(x, as_cond(prompts))}


def _tokens(domain, prompts):
    import torch

    return torch.as_tensor(domain.tokens([str(p) for p in prompts]))
