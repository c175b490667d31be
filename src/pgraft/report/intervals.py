"""Statistics of the report tables over seeds: the mean with its two-sided 95 % t interval, the paired difference
of two methods by seed (same seed: same sample pool and evaluation noise) with the paired t test, and their compact
markdown cells."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as st


def t_interval(values) -> tuple[float, float, float, int]:
    """(mean, lo, hi, n): the mean of per-seed values and its two-sided 95 % t interval (NaN bounds for n < 2)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    n = len(v)
    if n == 0:
        return float("nan"), float("nan"), float("nan"), 0
    mean = float(v.mean())
    if n < 2:
        return mean, float("nan"), float("nan"), n
    half = float(st.t.ppf(0.975, n - 1) * v.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half, n


def paired(a: pd.Series, b: pd.Series) -> tuple[float, float, float, int, float]:
    """(mean, lo, hi, n, p) of the per-seed differences a − b (both indexed by seed) over the seeds where both are
    finite: the mean difference, its 95 % t interval and the two-sided paired t test's p-value (NaN for n < 2)."""
    x, y = a.align(b, join="inner")
    keep = np.isfinite(x.to_numpy(dtype=float)) & np.isfinite(y.to_numpy(dtype=float))
    x, y = x.to_numpy(dtype=float)[keep], y.to_numpy(dtype=float)[keep]
    mean, lo, hi, n = t_interval(x - y)
    if n < 2:
        return mean, lo, hi, n, float("nan")
    with warnings.catch_warnings():  # equal differences on every seed: scipy warns, t is ±inf (p = 0) or NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        p = float(st.ttest_rel(x, y).pvalue)
    return mean, lo, hi, n, p


def welch(a, b) -> tuple[float, float, float, float]:
    """(diff, lo, hi, p) of mean(a) − mean(b) for two independent groups of per-seed values: Welch's 95 % t interval
    and two-sided t test (unequal variances; NaN bounds and p when a group has fewer than 2 finite values)."""
    x, y = (np.asarray(v, dtype=float) for v in (a, b))
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if not len(x) or not len(y):
        return float("nan"), float("nan"), float("nan"), float("nan")
    diff = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return diff, float("nan"), float("nan"), float("nan")
    with warnings.catch_warnings():  # no spread in either group: scipy warns, the interval collapses or is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        r = st.ttest_ind(x, y, equal_var=False)
        ci = r.confidence_interval()
    return diff, float(ci.low), float(ci.high), float(r.pvalue)


def cell(mean: float, lo: float, hi: float, bound_digits: int = 3) -> str:
    """`0.8833 [0.829, 0.938]`: the mean (4 significant digits) and its interval (bound_digits); the mean alone
    without bounds (one seed), "–" without a value."""
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.4g}" if not np.isfinite(lo) else f"{mean:.4g} [{lo:.{bound_digits}g}, {hi:.{bound_digits}g}]"


def diff_cell(mean: float, lo: float, hi: float, p: float) -> str:
    """`+0.234 [0.148, 0.32], p = 0.005`: a signed mean difference, its interval and the paired test's p-value."""
    if not np.isfinite(mean):
        return "–"
    if not np.isfinite(lo):
        return f"{mean:+.4g}"
    return f"{mean:+.4g} [{lo:.3g}, {hi:.3g}]" + (f", {p_value(p)}" if np.isfinite(p) else "")


def p_value(p: float) -> str:
    """`p = 0.03` (2 significant digits), `p < 0.001` below that."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.2g}"
