"""What one stage instance runs with: the domain, its base model, the sampler schedule, the GRS rule, seed and k."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunContext:
    """One (domain, seed, k) run: the domain and its base model (the seed's base, pgraft.seeds.base_index), the
    sampler schedule, the GRS rule that filters the domain, the seed, the truncation point k and the sampling
    batch size. The library's protocols take it instead of these as a dozen separate arguments."""

    domain: object
    base: object
    schedule: object
    rule: object
    seed: int
    k: int
    batch_size: int
