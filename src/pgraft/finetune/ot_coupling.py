"""Minibatch optimal-transport coupling (POT's exact solver): pair source noises with data by the OT plan."""

from __future__ import annotations

import numpy as np
import torch


def ot_permutation(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """perm such that (source[i], target[perm[i]]) are the pairs of the exact optimal-transport plan between the two
    equal-size minibatches (uniform weights, squared-Euclidean cost, `ot.emd`).

    For equal sizes the optimal plan of the assignment problem is a permutation matrix scaled by 1/B (an extreme
    point of the Birkhoff polytope, which the network simplex returns); each row's largest entry names the partner.
    """
    import ot

    if source.shape[0] != target.shape[0]:
        raise ValueError(f"OT coupling needs equal minibatch sizes, got {source.shape[0]} and {target.shape[0]}")
    b = source.shape[0]
    xs = source.detach().reshape(b, -1).double().cpu().numpy()
    xt = target.detach().reshape(b, -1).double().cpu().numpy()
    cost = ot.dist(xs, xt, metric="sqeuclidean")
    weights = np.full(b, 1.0 / b)
    plan = ot.emd(weights, weights, cost)
    perm = plan.argmax(axis=1)
    if len(np.unique(perm)) != b:
        raise RuntimeError("ot.emd returned a plan that is not a permutation (solver did not converge)")
    return torch.as_tensor(perm, dtype=torch.long)
