"""Sample galleries: one panel per method, drawn by the domain itself, laid out to fill the page."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from pgraft.report import axes

WIDTH = 12.0  # figure width, inches
MAX_HEIGHT = 11.0  # the layout takes as many columns of panels as needed to stay under this height, inches
TITLE_SPACE = 0.5  # per panel row: its title and tick labels, inches
AUTO_RATIO = 0.3  # height / width of a panel whose drawing does not fix its aspect


def content_ratio(domain, x, prompts) -> float:
    """Height / width of one drawn panel: the data ratio when the domain draws with equal aspect."""
    fig, ax = plt.subplots()
    try:
        domain.draw(ax, x, _cond(prompts))
        return float(ax.get_data_ratio()) if ax.get_aspect() != "auto" else AUTO_RATIO
    finally:
        plt.close(fig)


def columns(n: int, ratio: float, width: float = WIDTH, max_height: float = MAX_HEIGHT) -> int:
    """The fewest panel columns (largest panels) whose rows fit under max_height, or one more when that leaves
    fewer empty slots (4 panels: one row of 4 rather than 3 + 1)."""
    fits = [c for c in range(1, n + 1) if math.ceil(n / c) * (width / c * ratio + TITLE_SPACE) <= max_height]
    if not fits:
        return n
    def empty(c: int) -> int:
        return math.ceil(n / c) * c - n

    c = fits[0]
    return c + 1 if c < n and empty(c + 1) < empty(c) else c


def samples_figure(domain, galleries: dict, methods: list[str], labels: list[str], title: str,
                   note: str | None = None):
    """One panel per method of a domain's gallery samples (galleries[f"{domain}__{method}__x"], prompts under
    "__prompt"), titled by `labels`; the domains' per-panel legends become one figure legend."""
    name = domain.name
    data = [(galleries[f"{name}__{m}__x"], galleries.get(f"{name}__{m}__prompt")) for m in methods]
    ratio = content_ratio(domain, *data[0])
    cols = columns(len(data), ratio)
    rows = math.ceil(len(data) / cols)
    height = rows * (WIDTH / cols * ratio + TITLE_SPACE) + 0.9 + (0.3 if note else 0)
    fig, grid = plt.subplots(rows, cols, figsize=(WIDTH, height), squeeze=False, layout="constrained")
    for ax, (x, prompts), label in zip(grid.flat, data, labels):
        domain.draw(ax, x, _cond(prompts))
        ax.set_title(label, fontsize=9, loc="left")
    for ax in grid.flat[len(data):]:
        ax.axis("off")
    _one_legend(fig, grid.flat)
    axes.title(fig, title, note)
    return fig


def same_samples_note(name: str, drawn: dict, table, seed: int) -> str | None:
    """A note when a domain drawn before has exactly the same gallery (drawn: domain -> {method: samples}), e.g.
    two filters that kept the same training samples on the gallery's seed, so every model coincides."""
    mine = drawn[name]
    for other, theirs in drawn.items():
        if other == name or theirs.keys() != mine.keys() or not all(np.array_equal(mine[m], theirs[m]) for m in mine):
            continue
        why = (f": on seed {seed} both kept the same training samples (equal filter metrics), so every model "
               "coincides" if _same_rows(table, name, other, seed, "filter") else "")
        differ = sorted(int(s) for s in set(table["seed"].dropna()) if not _same_rows(table, name, other, s))
        rest = (f"; seed {differ[0]} differs in the metrics" if len(differ) == 1 else
                f"; seeds {', '.join(map(str, differ))} differ in the metrics" if differ else "")
        return f"The same samples as {other}_samples.png{why}{rest}."
    return None


def _same_rows(table, a: str, b: str, seed, kind: str = "evaluate") -> bool:
    """Whether domains a and b have identical rows of this kind for one seed."""
    def rows(domain):
        t = table[(table["kind"] == kind) & (table["domain"] == domain) & (table["seed"] == seed)]
        return t.set_index(["k", "budget", "metric"])["value"].sort_index()
    return rows(a).equals(rows(b))


def _one_legend(fig, panels) -> None:
    """Replace the legends the domain drew in each panel by one legend for the figure."""
    legends = [ax.get_legend() for ax in panels if ax.get_legend() is not None]
    if not legends:
        return
    handles = legends[0].legend_handles
    labels = [t.get_text() for t in legends[0].get_texts()]
    for leg in legends:
        leg.remove()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=8, frameon=False)


def _cond(prompts):
    return None if prompts is None else [str(p) for p in prompts]
