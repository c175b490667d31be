"""Reward functions r(x) -> float (higher is better); each module imports its heavy library (e.g. RDKit) itself."""
