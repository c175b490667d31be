"""Flow matching on the linear path (docs/METHOD.md §4, step 2): regress the velocity ε - x_0 at x_t."""

from __future__ import annotations

import torch

#: how a minibatch's source noises ε are paired with its data x_0: independently, or by the minibatch OT plan
COUPLINGS = ("independent", "ot")


def flow_path(x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x_t = (1 - t)·x_0 + t·ε (t = 0 data, t = 1 noise; t of shape (batch,)) and its velocity ε - x_0."""
    tb = t.view(-1, *[1] * (x0.ndim - 1))
    return (1 - tb) * x0 + tb * eps, eps - x0


def couple(x0: torch.Tensor, eps: torch.Tensor, coupling: str) -> torch.Tensor:
    """x_0 reordered so that row i is ε[i]'s partner: unchanged (independent) or by the minibatch OT plan (ot)."""
    if coupling == "independent":
        return x0
    if coupling == "ot":
        from pgraft.finetune.ot_coupling import ot_permutation

        return x0[ot_permutation(eps, x0).to(x0.device)]
    raise ValueError(f"coupling {coupling!r}: one of {COUPLINGS}")


class FlowMatchingObjective:
    """Conditional flow matching on data of shape (n, ...): t ~ U(0, 1), ε ~ N(0, I), target ε - x_0.

    Follows finetune.loop.Objective, so `train()` fits a velocity model v(x_t, t) with t a float in [0, 1]
    (the convention of samplers/flow.py); its minimiser is the marginal velocity E[ε - x_0 | x_t].
    With coupling="ot" each minibatch's (ε, x_0) pairs follow the exact OT plan between the two minibatches
    (minibatch OT flow matching, Tong et al. 2023; Pooladian et al. 2023): straighter paths, fewer Euler steps.
    """

    def __init__(self, data: torch.Tensor, coupling: str = "independent"):
        if coupling not in COUPLINGS:
            raise ValueError(f"coupling {coupling!r}: one of {COUPLINGS}")
        self.data = data if data.is_floating_point() else data.float()
        self.coupling = coupling

    def batch(self, size: int, generator: torch.Generator):
        idx = torch.randint(len(self.data), (size,), generator=generator)
        x0 = self.data[idx]
        t = torch.rand((size,), generator=generator, dtype=x0.dtype)
        eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        x_t, target = flow_path(couple(x0, eps, self.coupling), eps, t)
        return x_t, t, target

    def fixed_batches(self, size: int, generator: torch.Generator, repeats: int = 1):
        """Every data row `repeats` times, in minibatches of at most `size` rows with their own (t, ε) drawn once:
        a fixed evaluation set (held-out loss) whose pairs follow the objective's coupling."""
        out = []
        for _ in range(repeats):
            order = torch.randperm(len(self.data), generator=generator)
            for s in range(0, len(order), size):
                x0 = self.data[order[s:s + size]]
                t = torch.rand((len(x0),), generator=generator, dtype=x0.dtype)
                eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
                x_t, target = flow_path(couple(x0, eps, self.coupling), eps, t)
                out.append((x_t, t, target))
        return out
