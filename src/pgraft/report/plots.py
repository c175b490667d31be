"""Report figures (matplotlib) built from the tidy summary table and the report tables."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from pgraft.report import axes
from pgraft.report.labels import ENERGY_NOTE, Words
from pgraft.report.tables import Comparison, inc_stats, mean_std, stats


def reward_vs_k(ev: pd.DataFrame, ref: pd.DataFrame, w: Words):
    """Mean reward against k, one series per budget (mean ± std over seeds), the base model once, and the base
    pool's and the exact tilted target's reward as levels with their spread over seeds."""
    fig, ax = plt.subplots(figsize=(7, 4.8), layout="constrained")
    _per_budget(ax, ev, "reward_mean", None)
    for m, style, name in (("base_reward_mean", ":", "base model's reference pool"),
                           ("target_reward_mean", "--", "exact tilted target")):
        mean, std = mean_std(ref[ref["metric"] == m].groupby("seed")["value"].mean())
        ax.axhline(mean, ls=style, color="grey", label=f"{name} (band: ± std)")
        ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15, lw=0)
    ax.set(xlabel=axes.K_AXIS, ylabel=axes.wrap(w.reward_axis))
    ax.legend(fontsize=7)
    axes.title(fig, f"{w.domain}: {w.reward} vs truncation point k",
               f"mean ± std over {ev['seed'].nunique()} seeds; marker: fine-tuning budget (drawn slightly apart in k)")
    return fig


def distance_vs_k(ev: pd.DataFrame, w: Words):
    """Distance to the exact tilted target against k on a log axis; means at or below 0 sit on a marked floor."""
    fig, ax = plt.subplots(figsize=(7, 4.8), layout="constrained")
    ax.set_yscale("log")
    floor = axes.log_floor(stats(ev, "dist_target")["mean"])
    clipped = _per_budget(ax, ev, "dist_target", floor)
    axes.readable_log(ax.yaxis)
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + ([axes.clipped_handle(floor, "mean")] if clipped else []), fontsize=7)
    ax.set(xlabel=axes.K_AXIS, ylabel=axes.wrap(w.target_axis))
    _note(fig, ENERGY_NOTE if w.energy else None)
    axes.title(fig, f"{w.domain}: {w.distance} to the exact tilted target vs truncation point k",
               f"tilted by the {w.reward}; mean ± std over {ev['seed'].nunique()} seeds; marker: fine-tuning budget "
               "(drawn slightly apart in k)")
    return fig


def _per_budget(ax, ev: pd.DataFrame, metric: str, floor: float | None) -> bool:
    """One series per budget over k > 0, each joined to the base model's single point at k = 0 (the base has no
    budget). Returns whether a point was clipped at the floor."""
    s = stats(ev, metric)
    ks = sorted(s["k"].unique())
    spacing = 0.07 * (min(np.diff(ks)) if len(ks) > 1 else 1)
    base = s[s["k"] == 0].head(1)  # k = 0 is the base model: the same numbers at every budget
    partial = s[s["k"] > 0]
    budgets = sorted(partial["budget"].unique())
    clipped = False
    for i, (b, dx) in enumerate(zip(budgets, axes.offsets(len(budgets), spacing))):
        d = partial[partial["budget"] == b].sort_values("k")
        y, _, _ = axes.clip(np.concatenate([base["mean"], d["mean"]]), np.zeros(len(base) + len(d)), floor)
        ax.plot(np.concatenate([base["k"], d["k"] + dx]), y, color=f"C{i}", lw=1.2, alpha=0.7)
        clipped |= axes.errorbar(ax, d["k"] + dx, d["mean"], d["std"], floor=floor, color=f"C{i}",
                                 marker=axes.marker(i), label=f"budget {int(b)} steps")
    if len(base):
        clipped |= axes.errorbar(ax, base["k"], base["mean"], base["std"], floor=floor,
                                 label="base model (k = 0, not fine-tuned)", **axes.BASE)
    ax.set_xticks(ks)
    return clipped


def tradeoff(ev: pd.DataFrame, w: Words):
    """Reward against distance to the target (log axis) and against diversity: colour k, marker budget, error
    bars ± std over seeds on both axes, the base model once."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained", sharey=True)
    r = stats(ev, "reward_mean")
    clipped, dist_floor = False, None
    for ax, metric, label in ((left, "dist_target", w.target_axis), (right, "diversity", w.diversity_axis)):
        d = stats(ev, metric).merge(r, on=["k", "budget"], suffixes=("_x", "_r"))
        floor = axes.log_floor(d["mean_x"]) if metric == "dist_target" else None
        if floor is not None:
            ax.set_xscale("log")
            dist_floor = floor
        budgets = sorted(d["budget"].unique())
        for i, (k, g) in enumerate(d[d["k"] > 0].groupby("k")):
            g = g.sort_values("budget")
            x, _, _ = axes.clip(g["mean_x"], np.zeros(len(g)), floor)
            ax.plot(x, g["mean_r"], color=f"C{i}", lw=1.2, alpha=0.7)
            for _, row in g.iterrows():
                clipped |= axes.errorbar(ax, [row["mean_x"]], [row["mean_r"]], [row["std_r"]], xstd=[row["std_x"]],
                                         xfloor=floor, color=f"C{i}", marker=axes.marker(budgets.index(row["budget"])))
        base = d[d["k"] == 0].head(1)
        if len(base):
            clipped |= axes.errorbar(ax, base["mean_x"], base["mean_r"], base["std_r"], xstd=base["std_x"],
                                     xfloor=floor, **axes.BASE)
        if floor is not None:
            axes.readable_log(ax.xaxis)
        ax.set(xlabel=label)
    left.set_ylabel(axes.wrap(w.reward_axis))
    kmax = int(ev["k"].max())
    handles = [Line2D([], [], color=f"C{i}", label=f"k = {int(k)}" + (" (GRAFT)" if k == kmax else ""))
               for i, k in enumerate(sorted(k for k in ev["k"].unique() if k > 0))]
    handles += [Line2D([], [], color="0.4", marker=axes.marker(i), linestyle="none", label=f"budget {int(b)} steps")
                for i, b in enumerate(sorted(ev.loc[ev["k"] > 0, "budget"].unique()))]
    handles += [axes.base_handle()] + ([axes.clipped_handle(dist_floor, "mean distance")] if clipped else [])
    fig.legend(handles=handles, loc="outside right upper", fontsize=7)
    _note(fig, ENERGY_NOTE if w.energy else None)
    axes.title(fig, f"{w.domain}: {w.reward} vs {w.distance} to the exact tilted target and vs diversity",
               f"mean ± std over {ev['seed'].nunique()} seeds (error bars on both axes); colour: k, marker: budget")
    return fig


def acceptance(table: pd.DataFrame):
    """The acceptance-law check: empirical keep rate vs the closed form g, Monte Carlo per rule, and each rule
    the pipeline used (mean ± std over its domains and seeds)."""
    mc = table[table["kind"] == "acceptance_mc"]
    pipe = table[table["kind"] == "acceptance"]
    rules, used = sorted(set(mc["rule"])), sorted(set(pipe["rule"]))
    n = len(rules) + len(used)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.3 * rows), squeeze=False, layout="constrained")
    panels = list(grid.flat)
    for ax in panels[n:]:
        ax.axis("off")
    for ax, rule in zip(panels, rules):
        d = mc[mc["rule"] == rule]
        for metric, style in (("closed_form", "-"), ("empirical", "o")):
            e = d[d["metric"] == metric]
            ax.plot(e["x"], e["value"], style, label=metric.replace("_", " "))
        ax.set(title=f"{rule} (Monte Carlo)", xlabel="u = F(r), reward quantile", ylabel="P(kept)")
        ax.legend(fontsize=7)
    for ax, rule in zip(panels[len(rules):], used):
        d = pipe[pipe["rule"] == rule]
        closed = d[d["metric"] == "closed_form"].groupby("x")["value"].mean()
        ax.plot(closed.index, closed.values, "-", label="closed form")
        e = d[d["metric"] == "empirical"].groupby("x")["value"].agg(["mean", "std"])
        ax.errorbar(e.index, e["mean"], yerr=e["std"].fillna(0), fmt="o", capsize=3, label="empirical (± std)")
        ax.set(title=f"pipeline: {rule}\n({', '.join(sorted(set(d['domain'])))})",
               xlabel="u = F̂(r), quantile in the reference pool", ylabel="P(kept)")
        ax.legend(fontsize=7)
    fig.suptitle("GRS acceptance law: empirical keep rate vs closed form g(u)", fontsize=10)
    return fig


def fid_vs_flops(inc: pd.DataFrame, domain: str):
    """FID (and KID, where measured, in a second panel) against counted FLOPs per image, base flow and
    base + corrector, labelled by base steps n."""
    s = inc_stats(inc)
    metrics = [(m, label) for m, label in (("fid", "FID"), ("kid", "KID")) if f"{m}_mean" in s]
    fig, axs = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.6), layout="constrained", squeeze=False)
    # a point's "n=" label: base left of and below its point, INC right of and above it. INC at n costs more FLOPs
    # than the base at n, so the two labels of one n lie on either side of that gap and never overlap
    placement = {"base": {"xytext": (-5, -5), "ha": "right", "va": "top"},
                 "inc": {"xytext": (5, 5), "ha": "left", "va": "bottom"}}
    for ax, (m, name) in zip(axs[0], metrics):
        for rule, label, style in (("base", "base flow", "o-"), ("inc", "base + corrector (INC)", "s--")):
            d = s[s["rule"] == rule].sort_values("flops")
            ax.errorbar(d["flops"], d[f"{m}_mean"], yerr=d[f"{m}_std"].fillna(0), fmt=style, capsize=3, label=label)
            for _, row in d.iterrows():
                ax.annotate(f"n={int(row['x'])}", (row["flops"], row[f"{m}_mean"]), fontsize=7,
                            textcoords="offset points", **placement[rule])
        ax.margins(x=0.08)  # room for the labels left of the first base point
        ax.set_xscale("log")
        axes.readable_log(ax.xaxis)
        ax.set(xlabel="FLOPs per generated image (counted)", ylabel=f"{name} vs held-out real images (unitless)")
        ax.legend(fontsize=7)
    names = " and ".join(name for _, name in metrics)
    axes.title(fig, f"{domain}: {names} vs sampling FLOPs (labels: base Euler steps n)",
               f"mean ± std over {int(s['seeds'].max())} seeds")
    return fig


def reward_vs_evaluations(c: Comparison, table: pd.DataFrame, w: Words):
    """DDPO's reward per checkpoint against reward evaluations, GRAFT / P-GRAFT at their pool size."""
    dd = table[table["kind"] == "ddpo"]
    fig, ax = plt.subplots(figsize=(7, 4.8), layout="constrained")
    r = dd[dd["metric"] == "reward_mean"].groupby("budget")["value"].agg(["mean", "std"]).reset_index()
    ax.errorbar(r["budget"], r["mean"], yerr=r["std"].fillna(0), marker="o", capsize=3, label="DDPO")
    train = table[(table["kind"] == "ddpo_train") & (table["metric"] == "reward_mean")]
    if len(train):
        t = train.groupby("budget")["value"].agg(["mean", "std"])
        ax.plot(t.index, t["mean"], ":", color="C0", alpha=0.6, label="DDPO on-policy batches (band: ± std)")
        ax.fill_between(t.index, t["mean"] - t["std"].fillna(0), t["mean"] + t["std"].fillna(0), color="C0",
                        alpha=0.12, lw=0)
    x = float(c.evals.mean()) if len(c.evals) else c.last
    for i, (label, d) in enumerate(c.rows[2:]):
        v = d[d["metric"] == "reward_mean"]["value"]
        ax.errorbar([x], [v.mean()], yerr=[v.std(ddof=1) if len(v) > 1 else 0], marker=axes.marker(i + 1),
                    capsize=3, color=f"C{i + 1}", label=f"{label}, {c.budget} steps")
    base = c.rows[0][1]
    mean, std = mean_std(base[base["metric"] == "reward_mean"]["value"])
    ax.axhline(mean, ls="--", color="grey", label="base model (band: ± std)")
    ax.axhspan(mean - std, mean + std, color="grey", alpha=0.15, lw=0)
    ax.set(xlabel="reward evaluations (samples scored)", ylabel=axes.wrap(f"{w.reward_axis} on train prompts"))
    ax.legend(fontsize=7)
    axes.title(fig, f"{w.domain}: {w.reward} vs reward evaluations",
               f"DDPO vs GRAFT / P-GRAFT; mean ± std over {c.n_seeds} seeds")
    return fig


def _note(fig, text: str | None) -> None:
    """A footnote at the bottom of the figure (the constrained layout keeps room for it)."""
    if text:
        fig.supxlabel(textwrap.fill(text, width=int(fig.get_figwidth() * 20)), fontsize=6.5, color="0.3")
