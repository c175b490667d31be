"""Diversity of a sample set: the mean distance between two distinct samples."""

from __future__ import annotations

import numpy as np
import torch


def mean_pairwise_distance(x: np.ndarray, max_samples: int = 4000) -> float:
    """E|X - X'| over distinct pairs (the first `max_samples` samples); falls as a model collapses."""
    xt = torch.as_tensor(np.asarray(x[:max_samples], dtype=np.float64).reshape(min(len(x), max_samples), -1))
    n = len(xt)
    if n < 2:
        return 0.0
    return float(torch.cdist(xt, xt).sum()) / (n * (n - 1))
