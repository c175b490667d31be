"""Named random streams: generators seeded from a stream's name and integers (seed, k, ...), stable across runs."""

from __future__ import annotations

import numpy as np

#: every random stream of the pipeline: name -> the integer that heads its seed tuple. The values are those the
#: results were produced with (a changed value changes every number drawn from it); a value shared by two names
#: (9, 12, 13, 17) belongs to streams of different stages, whose tuples never meet in one process.
STREAMS: dict[str, int] = {
    "pretrain": 1,            # base model b's training: (pretrain.seed[, b])
    "sample": 2,              # the training pool's groups: (seed)
    "reference": 3,           # the reference pool: (seed)
    "filter": 4,              # the GRS rule's random draws: (seed)
    "finetune": 5,            # minibatches and noise of fine-tuning: (seed, k[, round])
    "finetune_rounds": 6,     # re-sampling and re-filtering of later rounds: (seed, k)
    "evaluate_train": 7,      # evaluation draws on training prompts: (seed)
    "evaluate_heldout": 17,   # evaluation draws on held-out prompts: (seed)
    "evaluate_gallery": 27,   # the gallery's samples: (seed)
    "features": 8,            # the FID feature network's training: (pretrain.seed)
    "auxiliary": 9,           # the reward's networks (judges, feature networks): (pretrain.seed)
    "invert": 9,              # inversion's perturbations: (n)
    "invert_subset": 11,      # which training images are inverted: ()
    "corrector": 10,          # the INC corrector's training: (seed, n)
    "ddpo_prompts": 11,       # DDPO's prompt batches: (seed)
    "ddpo": 12,               # DDPO's sampling and minibatches: (seed)
    "inc_evaluate": 12,       # the noise every INC method is evaluated from: (seed)
    "inc_heldout": 13,        # the corrector's held-out split (n), held-out loss and checks: (seed, n[, 1])
    "variance_branches": 13,  # continuations of stored states for E[Var(r|X_tk)]: (seed, k)
    "variance_ceiling": 14,   # continuations of accepted states for the ceiling: (seed, k)
    "variance_states": 15,    # which stored states the variance stage branches: (seed)
    "probe_split": 16,        # the probe's train / held-out split: (seed)
    "probe_train": 17,        # the probe's training: (seed)
    "probe_windows": 18,      # the probe's per-window losses: (seed, rows)
}


def _parts(stream: str, parts) -> list[int]:
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; the streams are pgraft.seeds.STREAMS: {sorted(STREAMS)}")
    return [STREAMS[stream], *(int(p) for p in parts)]


def seeded(stream: str, *parts: int):
    """A torch.Generator for the named stream and integers (seed, k, ...), stable across runs."""
    import torch

    seq = np.random.SeedSequence(_parts(stream, parts))
    g = torch.Generator()
    g.manual_seed(int(seq.generate_state(1, dtype=np.uint64)[0] & 0x7FFF_FFFF_FFFF_FFFF))
    return g


def numpy_rng(stream: str, *parts: int) -> np.random.Generator:
    """A numpy Generator for the named stream and integers, the numpy twin of `seeded`."""
    return np.random.default_rng(np.random.SeedSequence(_parts(stream, parts)))


def base_index(seed: int, base_models: int) -> int:
    """The base model a seed fine-tunes and evaluates: base `seed mod base_models` (docs/METHOD.md §6)."""
    return int(seed) % int(base_models)
