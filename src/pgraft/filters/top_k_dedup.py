"""top_k_dedup: top_k after dropping duplicate keys within a group (docs/METHOD.md §1)."""

from __future__ import annotations

from .base import dedup_top_k_mask, top_k_mask
from .top_k import TopK


class TopKDedup(TopK):
    """Within each group of ``m``, walk samples by descending reward and keep a sample only
    if its key (e.g. canonical SMILES) was not already kept in that group, until ``k`` are
    kept; with few distinct keys fewer than ``k`` are kept. ``keys=None`` behaves like top_k.

    ``acceptance_probability`` and ``expected_acceptance`` are those of top_k, i.e. exact when
    keys are all distinct (no duplicates); with duplicates the true law gains a diversity
    term that depends on the key distribution (docs/METHOD.md §1 gives no closed form).
    """

    name = "top_k_dedup"

    def _select(self, rewards, groups, generator, keys):
        if keys is None:
            return top_k_mask(rewards, groups, self.k)
        return dedup_top_k_mask(rewards, groups, self.k, keys)
