"""Sampling: diffusers schedulers (schedule.py), the noise levels of a sampler grid (levels.py), rollouts
that keep intermediate states and the stitched sampler (rollout.py). Import the submodules directly:
levels.py does not import diffusers, so stages that only train stay light."""
