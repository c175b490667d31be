"""Shared drawing rules of the report figures: markers per budget, side-by-side offsets, log axes that keep
values at or below 0 (drawn at a floor), readable log ticks, two-line titles."""

from __future__ import annotations

import math
import textwrap

import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

#: one marker per fine-tuning budget, in increasing budget order
MARKERS = ("o", "s", "^", "D", "P", "X", "h", "<")
#: the base model (k = 0): one point, whatever the budget
BASE = {"marker": "*", "color": "black", "markersize": 11, "zorder": 5}
#: a value at or below the log axis's floor (e.g. an energy distance estimate ≤ 0) is drawn as this marker
CLIPPED = "v"
K_AXIS = "truncation point k (sampler steps fine-tuned, from the noise end)"
STEP_AXIS = "fine-tuning step (optimizer steps)"


def marker(i: int) -> str:
    return MARKERS[i % len(MARKERS)]


def offsets(n: int, spacing: float) -> list[float]:
    """n x offsets centred on 0, `spacing` apart, so n series at the same x stay apart."""
    return [(i - (n - 1) / 2) * spacing for i in range(n)]


def log_floor(*values) -> float:
    """Where a log axis stops: half the smallest positive value given (1e-3 when none is positive)."""
    v = np.concatenate([np.ravel(np.asarray(a, dtype=float)) for a in values]) if values else np.array([])
    positive = v[np.isfinite(v) & (v > 0)]
    return float(positive.min()) / 2 if len(positive) else 1e-3


def clip(mean, std, floor: float | None):
    """(y, [lower, upper] error lengths, clipped) of points mean ± std; with a floor, values at or below it are
    moved onto it (clipped True) and error bars stop at it, so a log axis drops nothing."""
    mean = np.asarray(mean, dtype=float)
    std = np.nan_to_num(np.asarray(std, dtype=float))
    if floor is None:
        return mean, np.stack([std, std]), np.zeros(len(mean), dtype=bool)
    clipped = mean <= floor
    y = np.where(clipped, floor, mean)
    lower = y - np.maximum(mean - std, floor)
    upper = np.maximum(mean + std, floor) - y
    return y, np.stack([np.maximum(lower, 0), np.maximum(upper, 0)]), clipped


def errorbar(ax, x, mean, std, *, floor: float | None = None, xstd=None, xfloor: float | None = None,
             **style) -> bool:
    """Points with error bars (mean ± std over seeds) on either axis; points at or below a floor are drawn
    hollow with the CLIPPED marker. Returns whether any point was clipped."""
    y, yerr, yclip = clip(mean, std, floor)
    xs, xerr, xclip = clip(x, np.zeros(len(y)) if xstd is None else xstd, xfloor)
    clipped = yclip | xclip
    keep = {k: v for k, v in style.items() if k not in ("marker", "label")}
    label = style.get("label")
    for mask, mk in ((~clipped, style.get("marker", "o")), (clipped, CLIPPED)):
        if not mask.any():
            continue
        face = {} if mk != CLIPPED else {"markerfacecolor": "white"}
        ax.errorbar(xs[mask], y[mask], yerr=yerr[:, mask], xerr=None if xstd is None else xerr[:, mask],
                    fmt=mk, capsize=3, linestyle="none", label=label, **face, **keep)
        label = None  # one legend entry per series
    return bool(clipped.any())


def clipped_handle(floor: float, what: str = "estimate") -> Line2D:
    return Line2D([], [], marker=CLIPPED, color="0.3", markerfacecolor="white", linestyle="none",
                  label=f"{what} ≤ {floor:.2g}, drawn at that floor")


def readable_log(axis) -> None:
    """Log ticks at 1..9 × 10^n within a decade, 1, 2, 5 × 10^n up to 3 decades, 10^n beyond, written plainly.
    Within a decade of values written as m×10^e (long labels), only the ticks at m = 1, 2, 3, 5 are labelled,
    so neighbouring labels do not overlap."""
    lo, hi = sorted(axis.get_view_interval())
    decades = math.log10(hi / lo) if lo > 0 and hi > 0 else 10.0
    subs = tuple(range(1, 10)) if decades <= 1 else (1.0, 2.0, 5.0) if decades <= 3 else (1.0,)
    axis.set_major_locator(LogLocator(base=10, subs=subs))
    long_labels = decades <= 1 and not 1e-3 <= hi < 1e4
    axis.set_major_formatter(FuncFormatter(lambda v, _: plain(v) if not long_labels or _mantissa(v) in (1, 2, 3, 5)
                                           else ""))
    axis.set_minor_formatter(NullFormatter())


def _mantissa(v: float) -> int:
    """The leading digit of v (2 for 2×10^8)."""
    return round(abs(v) / 10 ** math.floor(math.log10(abs(v)))) if v else 0


def plain(v: float) -> str:
    """A tick label: 0.05, 20, 500 as written; very large or small values as m×10^e."""
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:g}"
    e = math.floor(math.log10(abs(v)))
    m = v / 10 ** e
    return f"$10^{{{e}}}$" if round(m, 6) == 1 else f"${round(m, 3):g}\\times10^{{{e}}}$"


def title(fig, first: str, second: str | None = None) -> None:
    """The figure's title: what is drawn (first line), how it was averaged (second line), each wrapped to the
    figure's width so that nothing is cut off."""
    width = int(fig.get_figwidth() * 12)  # characters of 10 pt text per line
    fig.suptitle("\n".join(textwrap.fill(t, width) for t in (first, second) if t), fontsize=10)


def wrap(label: str, width: int = 42) -> str:
    """An axis label wrapped onto lines of `width` characters (a long reward name would be cut off)."""
    return textwrap.fill(label, width)


def base_handle() -> Line2D:
    return Line2D([], [], linestyle="none", label="base model (k = 0, not fine-tuned)", **BASE)
