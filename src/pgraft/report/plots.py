"""Report figures (matplotlib) built from the tidy summary table and the report tables."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from pgraft.report.tables import Comparison, inc_stats, stats


def vs_k(ev: pd.DataFrame, ref: pd.DataFrame | None, metric: str, label: str):
    """A metric against k, one curve per budget (mean ± std over seeds); with `ref`, the base pool's and the
    exact target's reward as horizontal lines."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    s = stats(ev, metric)
    for b, d in s.groupby("budget"):
        ax.errorbar(d["k"], d["mean"], yerr=d["std"].fillna(0), marker="o", capsize=3, label=f"budget {int(b)}")
    if ref is not None:
        for m, style, name in (("base_reward_mean", ":", "base (k=0) pool"),
                               ("target_reward_mean", "--", "exact tilted target")):
            v = ref[ref["metric"] == m]["value"].mean()
            ax.axhline(v, ls=style, color="grey", label=name)
    n_seeds = ev["seed"].nunique()
    ax.set(xlabel="truncation point k (steps fine-tuned, from the noise end)", ylabel=label,
           title=f"{label} vs k (mean ± std over {n_seeds} seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def tradeoff(ev: pd.DataFrame):
    """Reward against distance to target and against diversity, one curve per k across budgets."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    r = stats(ev, "reward_mean")
    for ax, metric, label in ((axes[0], "dist_target", "distance to exact tilted target"),
                              (axes[1], "diversity", "diversity (mean pairwise distance)")):
        d = stats(ev, metric).merge(r, on=["k", "budget"], suffixes=("_x", "_r"))
        for k, g in d.groupby("k"):
            g = g.sort_values("budget")
            ax.plot(g["mean_x"], g["mean_r"], marker="o", label=f"k={int(k)}")
            for _, row in g.iterrows():
                ax.annotate(f"{int(row['budget'])}", (row["mean_x"], row["mean_r"]), fontsize=6,
                            xytext=(3, 3), textcoords="offset points")
        ax.set(xlabel=label, ylabel="mean reward", title=f"reward vs {metric} (labels: budget)")
        if metric == "dist_target":
            ax.set_xscale("log")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def acceptance(table: pd.DataFrame):
    """The acceptance-law check: empirical keep rate vs the closed form g, Monte Carlo per rule and pipeline."""
    mc = table[table["kind"] == "acceptance_mc"]
    pipe = table[table["kind"] == "acceptance"]
    rules = sorted(set(mc["rule"]))
    fig, axes = plt.subplots(1, len(rules) + 1, figsize=(3.2 * (len(rules) + 1), 3.2), squeeze=False)
    for ax, rule in zip(axes[0], rules):
        d = mc[mc["rule"] == rule]
        for metric, style in (("closed_form", "-"), ("empirical", "o")):
            e = d[d["metric"] == metric]
            ax.plot(e["x"], e["value"], style, label=metric.replace("_", " "))
        ax.set(title=f"{rule} (Monte Carlo)", xlabel="u = F(r)", ylabel="P(kept)")
        ax.legend(fontsize=7)
    ax = axes[0][-1]
    for metric, style in (("closed_form", "-"), ("empirical", "o")):
        e = pipe[pipe["metric"] == metric].groupby("x")["value"].mean()
        ax.plot(e.index, e.values, style, label=metric.replace("_", " "))
    rule = pipe["rule"].iloc[0] if len(pipe) else "?"
    ax.set(title=f"pipeline filter: {rule}", xlabel="u = F̂(r) (reference pool)", ylabel="P(kept)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def fid_vs_flops(inc: pd.DataFrame, domain: str):
    """FID against counted FLOPs per image, base flow and base + corrector, labelled by base steps n."""
    s = inc_stats(inc)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for rule, label, style in (("base", "base flow", "o-"), ("inc", "base + corrector (INC)", "s--")):
        d = s[s["rule"] == rule].sort_values("flops")
        ax.errorbar(d["flops"], d["fid_mean"], yerr=d["fid_std"].fillna(0), fmt=style, capsize=3, label=label)
        for _, row in d.iterrows():
            ax.annotate(f"n={int(row['x'])}", (row["flops"], row["fid_mean"]), fontsize=7, xytext=(4, 4),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set(xlabel="FLOPs per image (counted)", ylabel="FID vs held-out real images",
           title=f"{domain}: FID vs FLOPs (mean ± std over {int(s['seeds'].max())} seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def reward_vs_evaluations(c: Comparison, table: pd.DataFrame, domain: str):
    """DDPO's reward per checkpoint against reward evaluations, GRAFT / P-GRAFT at their pool size."""
    dd = table[table["kind"] == "ddpo"]
    fig, ax = plt.subplots(figsize=(5.8, 4))
    r = dd[dd["metric"] == "reward_mean"].groupby("budget")["value"].agg(["mean", "std"]).reset_index()
    ax.errorbar(r["budget"], r["mean"], yerr=r["std"].fillna(0), marker="o", capsize=3, label="DDPO")
    train = table[(table["kind"] == "ddpo_train") & (table["metric"] == "reward_mean")]
    if len(train):
        t = train.groupby("budget")["value"].mean()
        ax.plot(t.index, t.values, ":", color="C0", alpha=0.6, label="DDPO on-policy batches")
    x = float(c.evals.mean()) if len(c.evals) else c.last
    for i, (label, d) in enumerate(c.rows[2:]):
        v = d[d["metric"] == "reward_mean"]["value"]
        ax.errorbar([x], [v.mean()], yerr=[v.std(ddof=1) if len(v) > 1 else 0], marker="s", capsize=3,
                    color=f"C{i + 1}", label=f"{label}, {c.budget} steps")
    ax.axhline(c.base["reward_mean"], ls="--", color="grey", label="base")
    ax.set(xlabel="reward evaluations", ylabel="mean reward (train prompts)",
           title=f"{domain}: reward vs reward evaluations")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def samples_figure(domain, galleries: dict, methods: list[str], labels: list[str], title: str):
    """One row per method of a domain's gallery samples, drawn by the domain itself."""
    name = domain.name
    fig, axes = plt.subplots(len(methods), 1, figsize=(11, 1.3 * len(methods) + 0.6), squeeze=False)
    for ax, m, label in zip(axes[:, 0], methods, labels):
        domain.draw(ax, galleries[f"{name}__{m}__x"], galleries.get(f"{name}__{m}__prompt"))
        # a label beside the row that shows even when the domain's drawing turns the axes off
        ax.text(-0.01, 0.5, label, transform=ax.transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
