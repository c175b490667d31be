"""Named random streams: generators seeded from a tuple of integers (stage, seed, ...), stable across runs."""

from __future__ import annotations

import numpy as np


def seeded(*parts: int):
    """A torch.Generator seeded from a tuple of integers (stage, seed, ...), stable across runs."""
    import torch

    seq = np.random.SeedSequence([int(p) for p in parts])
    g = torch.Generator()
    g.manual_seed(int(seq.generate_state(1, dtype=np.uint64)[0] & 0x7FFF_FFFF_FFFF_FFFF))
    return g


def numpy_rng(*parts: int) -> np.random.Generator:
    """A numpy Generator seeded from a tuple of integers, the numpy twin of `seeded`."""
    return np.random.default_rng(np.random.SeedSequence([int(p) for p in parts]))


def base_index(seed: int, base_models: int) -> int:
    """The base model a seed fine-tunes and evaluates: base `seed mod base_models` (docs/METHOD.md §6)."""
    return int(seed) % int(base_models)
