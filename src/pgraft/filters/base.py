"""Shared base class, parameter checks and group helpers for the GRS rules (docs/METHOD.md §1)."""

from __future__ import annotations

import math
import numbers
from typing import Any, Hashable, Sequence

import numpy as np

__all__ = ["Rule", "check_int", "check_float", "top_k_mask", "dedup_top_k_mask"]


# ---------------------------------------------------------------------------
# Parameter checks: every message names the rule, the parameter, the value
# given and what is allowed.
# ---------------------------------------------------------------------------
def _is_bool(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_))


def check_int(rule: str, param: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as a Python int, or raise ``ValueError`` (bools and floats are rejected)."""
    if _is_bool(value) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{rule}: parameter '{param}' must be an int >= {minimum}, "
            f"got {value!r} ({type(value).__name__})"
        )
    if value < minimum:
        raise ValueError(f"{rule}: parameter '{param}' must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_float(rule: str, param: str, value: Any, positive: bool = False) -> float:
    """Return ``value`` as a finite Python float (ints accepted), or raise ``ValueError``."""
    allowed = "a finite number > 0" if positive else "a finite number"
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{rule}: parameter '{param}' must be {allowed}, got {value!r} ({type(value).__name__})"
        )
    out = float(value)
    if not math.isfinite(out) or (positive and out <= 0):
        raise ValueError(f"{rule}: parameter '{param}' must be {allowed}, got {value!r}")
    return out


# ---------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------
class Rule:
    """A Generalized Rejection Sampling rule (docs/METHOD.md §1).

    Subclasses set ``name``, ``law_argument`` ("cdf" or "reward"), ``PARAMS`` (the
    parameter names) and implement ``_validate``, ``_select`` and ``_g``.
    """

    name: str = ""
    law_argument: str = ""
    PARAMS: tuple[str, ...] = ()
    EXAMPLE: dict[str, int | float] = {}  # a valid parameter set, used by the acceptance-law check

    def __init__(self, **params: Any) -> None:
        unknown = [p for p in params if p not in self.PARAMS]
        if unknown:
            raise ValueError(
                f"{self.name}: unknown parameter(s) {', '.join(map(repr, unknown))} "
                f"(values {[params[p] for p in unknown]!r}); allowed parameters are {list(self.PARAMS)}"
            )
        missing = [p for p in self.PARAMS if p not in params]
        if missing:
            raise ValueError(
                f"{self.name}: missing required parameter(s) {', '.join(map(repr, missing))}; "
                f"required parameters are {list(self.PARAMS)}"
            )
        #: the validated parameters, as plain JSON-serialisable Python numbers
        self.params: dict[str, int | float] = self._validate(**params)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{self.name}({args})"

    # -- subclass hooks -----------------------------------------------------
    def _validate(self, **params: Any) -> dict[str, int | float]:
        raise NotImplementedError

    def _select(self, rewards, groups, generator, keys) -> np.ndarray:
        raise NotImplementedError

    def _g(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- public API -----------------------------------------------------------
    @property
    def group_size(self) -> int | None:
        """Samples per group the rule expects, or None for per-sample rules."""
        return None

    def expected_acceptance(self) -> float | None:
        """E[g] under the base law, or None when it depends on the reward law."""
        return None

    def select(
        self,
        rewards: Any,
        groups: Any,
        generator: np.random.Generator | None = None,
        keys: Sequence[Hashable] | None = None,
    ) -> np.ndarray:
        """Return the boolean keep-mask (same length as ``rewards``).

        ``rewards`` is a 1-D array of finite floats, ``groups`` a 1-D int array of group
        ids of the same length; selection happens within each group id. ``generator``
        drives random rules (default ``numpy.random.default_rng()``); ``keys`` are the
        optional dedup keys (only ``top_k_dedup`` uses them).
        """
        r, g = self._validate_inputs(rewards, groups, keys)
        if generator is None:
            generator = np.random.default_rng()
        elif not isinstance(generator, np.random.Generator):
            raise ValueError(
                f"{self!r}: generator must be a numpy.random.Generator or None, "
                f"got {type(generator).__name__}"
            )
        if r.size == 0:
            return np.zeros(0, dtype=bool)
        if self.group_size is not None:
            self._check_group_sizes(g)
        return np.asarray(self._select(r, g, generator, keys), dtype=bool)

    def acceptance_probability(self, x: Any) -> np.ndarray:
        """Vectorised g(x) = P(sample accepted | its value), docs/METHOD.md §1.

        ``x`` is u = F(r) in [0, 1] when ``law_argument == "cdf"``, the reward itself
        when ``law_argument == "reward"``. Returns a float array of the shape of ``x``.
        """
        arr = np.asarray(x, dtype=np.float64)
        n_nan = int(np.isnan(arr).sum())
        if n_nan:
            raise ValueError(f"{self!r}: acceptance_probability got {n_nan} NaN value(s)")
        if self.law_argument == "cdf" and (np.any(arr < 0) or np.any(arr > 1)):
            bad = arr[(arr < 0) | (arr > 1)]
            raise ValueError(
                f"{self!r}: acceptance_probability takes u = F(r) in [0, 1], "
                f"got {bad.size} value(s) outside, e.g. {bad.flat[0]!r}"
            )
        return np.asarray(self._g(arr), dtype=np.float64)

    # -- input validation -------------------------------------------------------
    def _validate_inputs(self, rewards, groups, keys) -> tuple[np.ndarray, np.ndarray]:
        r = np.asarray(rewards)
        if r.ndim != 1:
            raise ValueError(f"{self!r}: rewards must be a 1-D array, got shape {r.shape}")
        try:
            r = r.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self!r}: rewards must be numeric, got dtype {r.dtype}") from exc
        g = np.asarray(groups)
        if g.ndim != 1:
            raise ValueError(f"{self!r}: groups must be a 1-D array, got shape {g.shape}")
        if len(g) != len(r):
            raise ValueError(
                f"{self!r}: rewards and groups have different lengths ({len(r)} vs {len(g)})"
            )
        if keys is not None and len(keys) != len(r):
            raise ValueError(
                f"{self!r}: rewards and keys have different lengths ({len(r)} vs {len(keys)})"
            )
        if g.size and g.dtype.kind not in "iu":
            raise ValueError(f"{self!r}: groups must be integer group ids, got dtype {g.dtype}")
        n_nan, n_inf = int(np.isnan(r).sum()), int(np.isinf(r).sum())
        if n_nan or n_inf:
            raise ValueError(
                f"{self!r}: rewards must be finite, got {n_nan} NaN and {n_inf} inf value(s)"
            )
        return r, g.astype(np.int64)

    def _check_group_sizes(self, groups: np.ndarray) -> None:
        ids, counts = np.unique(groups, return_counts=True)
        bad = np.flatnonzero(counts != self.group_size)
        if bad.size:
            i = bad[0]
            raise ValueError(
                f"{self!r}: every group must have exactly {self.group_size} samples; "
                f"group {ids[i]} has {counts[i]} ({bad.size} bad group(s) in all)"
            )


# ---------------------------------------------------------------------------
# Group helpers: ranks within groups by descending reward, ties broken by index.
# ---------------------------------------------------------------------------
def _sorted_by_group(rewards: np.ndarray, groups: np.ndarray):
    """Order (group, -reward, index) and, per sorted position, the position its group starts."""
    idx = np.arange(rewards.size)
    order = np.lexsort((idx, -rewards, groups))  # last key is primary; index breaks ties
    sg = groups[order]
    starts = np.ones(sg.size, dtype=bool)
    starts[1:] = sg[1:] != sg[:-1]
    start_pos = np.maximum.accumulate(np.where(starts, idx, 0))
    return order, start_pos


def top_k_mask(rewards: np.ndarray, groups: np.ndarray, k: int) -> np.ndarray:
    """Keep the k largest rewards of each group (exactly k when the group has >= k samples)."""
    order, start_pos = _sorted_by_group(rewards, groups)
    rank = np.arange(rewards.size) - start_pos
    keep = np.zeros(rewards.size, dtype=bool)
    keep[order[rank < k]] = True
    return keep


def dedup_top_k_mask(
    rewards: np.ndarray, groups: np.ndarray, k: int, keys: Sequence[Hashable]
) -> np.ndarray:
    """Walk each group by descending reward, keeping a sample only if its key is new, until k kept."""
    codes: dict[Hashable, int] = {}
    try:
        key_code = np.fromiter((codes.setdefault(key, len(codes)) for key in keys), np.int64, len(keys))
    except TypeError as exc:
        raise ValueError(f"top_k_dedup: keys must be hashable ({exc})") from exc
    order, start_pos = _sorted_by_group(rewards, groups)
    _, ginv = np.unique(groups, return_inverse=True)
    pair = ginv[order] * max(len(codes), 1) + key_code[order]
    # np.unique(return_index) gives the first sorted position of each (group, key):
    # that is the highest-reward sample with that key in the group.
    first = np.zeros(rewards.size, dtype=bool)
    first[np.unique(pair, return_index=True)[1]] = True
    seen = np.cumsum(first)  # number of first-occurrences up to and including each position
    rank = seen - 1 - (seen - first)[start_pos]  # rank among first-occurrences within the group
    keep = np.zeros(rewards.size, dtype=bool)
    keep[order[first & (rank < k)]] = True
    return keep
