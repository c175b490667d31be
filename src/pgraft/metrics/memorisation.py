"""Memorisation check of a generator: nearest-neighbour distances of its outputs to training vs held-out data."""

from __future__ import annotations


def nearest_distances(x, ref, chunk: int = 1024):
    """Euclidean distance of each row of x (flattened) to its nearest row of ref."""
    import torch

    x, ref = x.reshape(len(x), -1).double(), ref.reshape(len(ref), -1).double()
    return torch.cat([torch.cdist(x[s:s + chunk], ref).min(1).values for s in range(0, len(x), chunk)])


def memorisation(outputs, train, heldout) -> dict:
    """Memorisation check: mean nearest-neighbour distance of corrector outputs to the training noises, beside that
    of the held-out noises (fresh draws of Q the corrector never saw) to the same training noises. Their ratio is
    near 1 without memorisation and falls towards 0 when outputs copy training noises. The mean distance of the
    outputs to the held-out noises is reported too."""
    d_train, d_held = nearest_distances(outputs, train), nearest_distances(outputs, heldout)
    d_ref = nearest_distances(heldout, train)
    return {"nn_distance_train": float(d_train.mean()), "nn_distance_heldout": float(d_held.mean()),
            "nn_distance_heldout_to_train": float(d_ref.mean()),
            "nn_ratio": float(d_train.mean() / d_ref.mean())}
