"""Metrics: distances between sample sets, diversity, and the exact GRS-tilted target."""

from pgraft.metrics.distances import DISTANCES, energy_distance, sliced_wasserstein
from pgraft.metrics.diversity import mean_pairwise_distance
from pgraft.metrics.tilt import empirical_cdf, tilt_weights

__all__ = ["DISTANCES", "energy_distance", "sliced_wasserstein", "mean_pairwise_distance",
           "empirical_cdf", "tilt_weights"]
