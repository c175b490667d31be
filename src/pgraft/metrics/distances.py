"""Distances between a sample set and a (weighted) reference set: energy distance, sliced Wasserstein."""

from __future__ import annotations

import numpy as np
import torch

from pgraft.registry import Registry


def _mean_dist(x: torch.Tensor, y: torch.Tensor, wx: torch.Tensor, wy: torch.Tensor, chunk: int = 2048) -> float:
    total = 0.0
    for s in range(0, len(x), chunk):
        d = torch.cdist(x[s:s + chunk], y)
        total += float((wx[s:s + chunk, None] * d * wy[None]).sum())
    return total


def _within(x: torch.Tensor, w: torch.Tensor) -> float:
    """U-statistic E|X - X'| over distinct pairs with weights w (sum 1)."""
    return (_mean_dist(x, x, w, w)) / (1.0 - float((w * w).sum()))


def energy_distance(x: np.ndarray, y: np.ndarray, y_weights: np.ndarray | None = None,
                    cache: dict | None = None) -> float:
    """Energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (unbiased within-set terms; Y may be weighted).

    It is zero iff the laws are equal; its square root is a metric on distributions. `cache` (a dict
    owned by the caller) keeps E|Y-Y'| between calls with the same Y and weights.
    """
    xt = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
    yt = torch.as_tensor(np.asarray(y, dtype=np.float64).reshape(len(y), -1))
    wx = torch.full((len(xt),), 1.0 / len(xt), dtype=torch.float64)
    if y_weights is None:
        wy = torch.full((len(yt),), 1.0 / len(yt), dtype=torch.float64)
    else:
        wy = torch.as_tensor(np.asarray(y_weights, dtype=np.float64))
        wy = wy / wy.sum()
    key = (id(y), None if y_weights is None else id(y_weights))
    if cache is not None and key in cache:
        yy = cache[key]
    else:
        yy = _within(yt, wy)
        if cache is not None:
            cache[key] = yy
    return 2 * _mean_dist(xt, yt, wx, wy) - _within(xt, wx) - yy


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, y_weights: np.ndarray | None = None,
                       cache: dict | None = None, num_projections: int = 256, seed: int = 0) -> float:
    """Sliced 1-Wasserstein distance over random directions (weighted quantiles for Y)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    wy = np.full(len(y), 1.0 / len(y)) if y_weights is None else np.asarray(y_weights) / np.sum(y_weights)
    dirs = np.random.default_rng(seed).normal(size=(num_projections, x.shape[1]))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    qs = (np.arange(len(x)) + 0.5) / len(x)
    total = 0.0
    for d in dirs:
        px, py = np.sort(x @ d), y @ d
        order = np.argsort(py)
        cdf = np.cumsum(wy[order])
        qy = py[order][np.minimum(np.searchsorted(cdf, qs), len(py) - 1)]
        total += np.abs(px - qy).mean()
    return float(total / num_projections)


DISTANCES: Registry = Registry("distance")
DISTANCES.register("energy", energy_distance)
DISTANCES.register("sliced_wasserstein", sliced_wasserstein)
