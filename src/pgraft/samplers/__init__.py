"""Sampling: diffusers schedulers, rollouts that keep intermediate states, the stitched sampler."""

from pgraft.samplers.rollout import rollout, stitched_rollout
from pgraft.samplers.schedule import Schedule, build_schedule

__all__ = ["Schedule", "build_schedule", "rollout", "stitched_rollout"]
