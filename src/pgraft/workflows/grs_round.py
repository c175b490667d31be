"""One GRAFT round in memory: sample the (stitched) model in groups, score with the reward, select (GRS)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgraft.workflows.scoring import conditions, score_finite, select


@dataclass
class Groups:
    """Samples drawn in groups of m: final samples, kept states, prompts (and tokens) and group labels."""

    x0: object  # torch.Tensor (n, *shape)
    kept: dict
    prompts: np.ndarray | None
    cond: object  # token tensor or None
    groups: np.ndarray


def draw_groups(model_for_step, schedule, domain, num_groups: int, group_size: int, generator, batch_size: int,
                keep=(), progress: bool = False) -> Groups:
    """num_groups x group_size trajectories; a group shares one prompt (conditional domains)."""
    from pgraft.samplers.rollout import sample_in_batches

    n = num_groups * group_size
    prompts, cond = conditions(domain, "train", n, group_size=group_size)
    x0, kept = sample_in_batches(model_for_step, schedule, n, domain.shape, generator, batch_size, keep=keep,
                                 progress=progress, cond=cond, device=domain.device)
    return Groups(x0, kept, prompts, cond, np.arange(n) // group_size)


@dataclass
class Round:
    """One GRAFT round's outcome: the drawn groups, their rewards and the keep-mask."""

    drawn: Groups
    rewards: np.ndarray
    keep: np.ndarray

    def accepted(self, k: int | None):
        """The accepted rows' training data: the state after k steps (None: x_0) and its tokens (or None)."""
        import torch

        states = self.drawn.x0 if k is None else self.drawn.kept[k]
        idx = torch.as_tensor(self.keep)
        return states[idx].float(), (None if self.drawn.cond is None else self.drawn.cond[idx])


def grs_round(finetuned, base, k: int, schedule, domain, rule, *, num_groups: int, group_size: int,
              batch_size: int, generator, rng) -> Round:
    """Sample the stitched model (finetuned for the first k steps, base after), score and select within groups.

    The fine-tuned model samples in eval mode and is put back in train mode afterwards."""
    from pgraft.samplers.stitched import Stitched

    finetuned.eval()
    drawn = draw_groups(Stitched(finetuned, base, k), schedule, domain, num_groups, group_size, generator,
                        batch_size, keep=[k])
    finetuned.train()
    x0 = drawn.x0.numpy()
    r = score_finite(domain, x0, drawn.prompts, f"GRAFT round (k={k})")
    keep, _ = select(rule, domain, x0, r, drawn.groups, rng)
    return Round(drawn, r, keep)
