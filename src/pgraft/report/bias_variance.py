"""Figures of the bias–variance mechanism (docs/METHOD.md §2): ceiling and achieved reward against k, and the
conditional reward variance per noise level."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from pgraft.report import axes
from pgraft.report.decomposition import decomposition, variance_curve
from pgraft.report.labels import Words


def ceiling_vs_k(ev: pd.DataFrame, ceil: pd.DataFrame, var: pd.DataFrame, w: Words):
    """Left: each k's ceiling (band: 95 % interval over seeds) and the achieved reward per budget, so the gap
    between them is the learning gap; right: the conditional variance terms of the same domain against k."""
    fig, (ax, av) = plt.subplots(1, 2, figsize=(11, 4.6), layout="constrained", width_ratios=(3, 2))
    d = decomposition(ev, ceil)
    c = d[(d["quantity"] == "ceiling") & (d["budget"] == d["budget"].min())].sort_values("k")
    ax.plot(c["k"], c["mean"], color="black", lw=2, label="ceiling: reward of the exact target at k")
    ax.fill_between(c["k"], c["lo"], c["hi"], color="black", alpha=0.12, lw=0)
    achieved = d[(d["quantity"] == "achieved") & (d["k"] > 0)]
    budgets = sorted(achieved["budget"].unique())
    ks = sorted(d["k"].unique())
    spacing = 0.07 * (min(np.diff(ks)) if len(ks) > 1 else 1)
    for i, (b, dx) in enumerate(zip(budgets, axes.offsets(len(budgets), spacing))):
        a = achieved[achieved["budget"] == b].sort_values("k")
        err = np.nan_to_num(np.stack([a["mean"] - a["lo"], a["hi"] - a["mean"]]))
        ax.errorbar(a["k"] + dx, a["mean"], yerr=err, color=f"C{i}", marker=axes.marker(i), lw=1, capsize=2,
                    label=f"achieved, budget {int(b)} steps")
    base = d[(d["quantity"] == "achieved") & (d["k"] == 0)].head(1)
    if len(base):
        ax.plot(base["k"], base["mean"], ls="none", label="base model (k = 0)", **axes.BASE)
    ax.set(xlabel=axes.K_AXIS, ylabel=axes.wrap(w.reward_axis))
    ax.set_xticks(ks)
    ax.legend(fontsize=7)
    v = variance_curve(var)
    for m, style, name in (("v_within", "-", "E[Var(r | X_tk)]: noise in the label"),
                           ("v_between", "--", "Var(E[r | X_tk]): signal")):
        s = v[v["metric"] == m].sort_values("k")
        av.plot(s["k"], s["mean"], ls=style, marker="o", color="C3" if m == "v_within" else "C0", label=name)
        av.fill_between(s["k"], s["lo"], s["hi"], alpha=0.15, lw=0, color="C3" if m == "v_within" else "C0")
    av.set(xlabel="truncation point k", ylabel="fraction of Var(r)", ylim=(-0.05, None))
    av.set_xticks(ks)
    av.legend(fontsize=7)
    n = ev["seed"].nunique()
    axes.title(fig, f"{w.domain}: what each truncation point can reach (ceiling) and what fine-tuning reached",
               f"learning gap = ceiling − achieved; mean over {n} seeds, bands and bars: 95 % t intervals")
    return fig


def variance_all_domains(table: pd.DataFrame):
    """E[Var(r|X_tk)] / Var(r) against k/N for every domain with a variance stage, on one plot."""
    fig, ax = plt.subplots(figsize=(7, 4.6), layout="constrained")
    var = table[table["kind"] == "variance"]
    for i, (domain, d) in enumerate(var.groupby("domain")):
        s = variance_curve(d)
        s = s[s["metric"] == "v_within"].sort_values("k")
        frac = s["k"] / s["k"].max()
        ax.plot(frac, s["mean"], marker=axes.marker(i), color=f"C{i}", label=domain)
        ax.fill_between(frac, s["lo"], s["hi"], color=f"C{i}", alpha=0.12, lw=0)
    ax.set(xlabel="k / N (fraction of the sampler's steps fine-tuned, from the noise end)",
           ylabel="E[Var(r(X_0) | X_tk)] / Var(r)", ylim=(-0.05, None))
    ax.legend(fontsize=8)
    axes.title(fig, "How noisy the terminal reward is as a label of the state after k steps",
               "base continuations of stored states; mean over seeds, band: 95 % t interval (prompt-conditioned "
               "domains: within-prompt variance)")
    return fig
