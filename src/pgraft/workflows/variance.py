"""The variance protocol: E[Var(r|X_tk)], Var(E[r|X_tk]) and the exact-target ceiling per k (docs/METHOD.md §2)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from pgraft.metrics.conditional_variance import bootstrap, mean_interval
from pgraft.samplers.continuation import continue_from
from pgraft.seeds import numpy_rng, seeded
from pgraft.workflows.artifacts import state_key
from pgraft.workflows.scoring import score_finite


def prompt_means(r: np.ndarray, prompts) -> np.ndarray:
    """Each row's E[r|c]: the mean training reward of its prompt (of all rows when there are no prompts)."""
    if prompts is None:
        return np.full(len(r), r.mean())
    keys = np.asarray([str(p) for p in prompts])
    means = {p: r[keys == p].mean() for p in np.unique(keys)}
    return np.asarray([means[p] for p in keys])


def within_share(within: float, total: float) -> float:
    """E[Var(r|X_tk)] as a fraction of E[Var(r|c)]; NaN for a constant reward (no variance to share)."""
    return within / total if total > 0 else float("nan")


def variance_by_k(domain, base, schedule, samples: dict, r: np.ndarray, keep: np.ndarray, *, seed: int, grid,
                  num_steps: int, cfg, batch_size: int,
                  progress: Callable[[int, float, float], None] | None = None) -> dict:
    """For every k of the grid, base continuations of the seed's stored states after k steps (samples[state_key(k)]):
    `cfg.branches` of `cfg.states` training states chosen at random give the within/between terms with bootstrap
    intervals, `cfg.ceiling_branches` of every accepted state (keep) the ceiling, the exact target's reward at k
    (at k = num_steps: the accepted x_0; at k = 0: the base samples). r: the training rewards in row order; cfg:
    the params' variance section. progress(k, within share, ceiling) after each k.
    Returns {"reward_variance", "states", "accepted", "k": {str(k): terms and ceiling with bounds}}."""
    prompts = samples["prompt"] if domain.conditional else None
    centre = prompt_means(r, prompts)  # E[r|c] per row (the overall mean for unconditional domains)
    total = float(np.mean((r - centre) ** 2))  # E[Var(r|c)]: V(0) in the limit of pure noise
    rng = numpy_rng("variance_states", seed)
    chosen = np.sort(rng.choice(len(r), size=min(cfg.states, len(r)), replace=False))
    accepted = np.flatnonzero(keep)

    def rewards(rows: np.ndarray, k: int, branches: int, stream: str) -> np.ndarray:
        """(len(rows), branches) rewards of base continuations from the rows' states after k steps."""
        import torch

        rep = np.repeat(rows, branches)
        x_k = torch.as_tensor(samples[state_key(k)][rep], dtype=torch.float32)
        cond = None if prompts is None else torch.as_tensor(domain.tokens([str(p) for p in prompts[rep]]))
        x0 = continue_from(base, schedule, x_k, k, seeded(stream, seed, k), batch_size,
                           cond=cond, device=domain.device).numpy()
        scored = score_finite(domain, x0, None if prompts is None else prompts[rep], f"variance (k={k})")
        return scored.reshape(len(rows), branches)

    out: dict = {"reward_variance": total, "states": len(chosen), "accepted": len(accepted), "k": {}}
    for k in grid:
        if k == num_steps:  # clean data: no variance left given x_0; the exact target is the accepted x_0 itself
            var = {"within": 0.0, "within_lo": 0.0, "within_hi": 0.0, "between": total, "between_lo": total,
                   "between_hi": total}
            ceiling = mean_interval(r[accepted], rng, cfg.bootstrap)
        else:
            branched = rewards(chosen, k, cfg.branches, "variance_branches") - centre[chosen, None]
            var = bootstrap(branched, rng, cfg.bootstrap)
            if k == 0:  # no step is fine-tuned (x_T is N(0, I) whatever the model): the target is the base law itself
                ceiling = mean_interval(r, rng, cfg.bootstrap)
            else:
                continued = rewards(accepted, k, cfg.ceiling_branches, "variance_ceiling").mean(axis=1)
                ceiling = mean_interval(continued, rng, cfg.bootstrap)
        out["k"][str(k)] = {**var, **{f"ceiling_{m}" if m != "mean" else "ceiling": v for m, v in ceiling.items()}}
        if progress is not None:
            progress(k, within_share(var["within"], total), ceiling["mean"])
    return out
