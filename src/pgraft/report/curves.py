"""Learning curves: fine-tuning loss per step and reward per evaluated budget, one line per truncation point k."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from pgraft.report import axes
from pgraft.report.labels import Words
from pgraft.report.tables import mean_std, stats


def loss_stats(loss: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and count over seeds of the training loss per (k, step) (rows kind "train_loss", x = step)."""
    d = loss[loss["metric"] == "train_loss"]
    out = d.groupby(["k", "x"])["value"].agg(["mean", "std", "count"]).reset_index()
    return out.rename(columns={"x": "step"})


def learning_curves(loss: pd.DataFrame, ev: pd.DataFrame, ref: pd.DataFrame, w: Words):
    """Left: training loss vs fine-tuning step, one line per k > 0 with a ± std band over seeds. Right: mean
    reward vs fine-tuning step at the evaluated budgets, one line per k > 0 (error bars ± std over seeds), the
    base model (0 steps) and the exact tilted target as levels."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), layout="constrained")
    ks = sorted(k for k in ev["k"].unique() if k > 0)
    kmax = max(ks) if ks else None
    colour = {k: f"C{i}" for i, k in enumerate(ks)}

    def name(k):
        return f"k = {int(k)}" + (" (GRAFT)" if k == kmax else "")

    s = loss_stats(loss)
    s = s[s["k"] > 0]
    for k, d in s.groupby("k"):
        d = d.sort_values("step")
        std = d["std"].fillna(0)
        left.plot(d["step"], d["mean"], color=colour.get(k), label=name(k))
        left.fill_between(d["step"], (d["mean"] - std).clip(lower=d["mean"].min() / 10), d["mean"] + std,
                          color=colour.get(k), alpha=0.18, lw=0)
    if len(s):
        left.set_xscale("log")
        left.set_yscale("log")
        axes.readable_log(left.xaxis)
        axes.readable_log(left.yaxis)
        left.legend(fontsize=7, title="band: ± std over seeds", title_fontsize=7)
    else:
        left.text(0.5, 0.5, "no loss history in the summary\n(rerun finetune, evaluate and aggregate)",
                  ha="center", va="center", transform=left.transAxes, fontsize=8)
        left.set(xticks=[], yticks=[])
    left.set(xlabel=f"{axes.STEP_AXIS}, log scale",
             ylabel="training loss: mean squared ε-regression error\n(per coordinate; mean of each logging window)",
             title="fine-tuning loss")

    r = stats(ev, "reward_mean")
    spacing = 0.025  # in decades: the k lines sit side by side at each budget
    for (k, d), dx in zip(r[r["k"] > 0].groupby("k"), axes.offsets(len(ks), spacing)):
        d = d.sort_values("budget")
        x = d["budget"] * 10 ** dx
        right.plot(x, d["mean"], color=colour[k], lw=1.2, alpha=0.7)
        axes.errorbar(right, x, d["mean"], d["std"], color=colour[k], marker=axes.marker(ks.index(k)), label=name(k))
    base = ev[(ev["k"] == 0) & (ev["metric"] == "reward_mean")]
    if len(base):
        mean, std = mean_std(base[base["budget"] == base["budget"].min()]["value"])
        right.axhline(mean, ls=":", color="black", label="base model (0 steps; band: ± std)")
        right.axhspan(mean - std, mean + std, color="black", alpha=0.08, lw=0)
    target = ref[ref["metric"] == "target_reward_mean"].groupby("seed")["value"].mean()
    if len(target):
        right.axhline(target.mean(), ls="--", color="grey", label="exact tilted target")
    right.set_xscale("log")
    axes.readable_log(right.xaxis)
    right.set(xlabel=f"{axes.STEP_AXIS} = evaluated budget, log scale", ylabel=axes.wrap(w.reward_axis),
              title="reward of the stitched sampler")
    right.legend(fontsize=7)
    axes.title(fig, f"{w.domain}: learning curves of fine-tuning ({w.reward})",
               f"{ev['seed'].nunique()} seeds; one line per truncation point k")
    return fig
