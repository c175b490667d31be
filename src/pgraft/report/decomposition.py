"""The bias–variance decomposition of the sweep (docs/METHOD.md §2): per (k, budget), the ceiling (the reward of
the method's exact target), the achieved reward, the learning gap = ceiling − achieved, and the bias relative to
GRAFT = GRAFT's ceiling − this k's ceiling; means over seeds with t-based 95 % intervals of the per-seed values."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pgraft.report.intervals import cell, t_interval

COLUMNS = ["k", "budget", "quantity", "mean", "lo", "hi", "n"]


def per_seed(ev: pd.DataFrame, ceil: pd.DataFrame) -> pd.DataFrame:
    """One row per (seed, k, budget): ceiling, achieved reward, gap and bias (GRAFT = the largest k)."""
    kmax = ceil["k"].max()
    c = ceil[ceil["metric"] == "ceiling"].set_index(["seed", "k"])["value"]
    a = ev[ev["metric"] == "reward_mean"]
    rows = []
    for rec in a.itertuples():
        if (rec.seed, rec.k) not in c.index:
            continue
        ceiling = c[(rec.seed, rec.k)]
        rows.append({"seed": rec.seed, "k": rec.k, "budget": rec.budget, "ceiling": ceiling, "achieved": rec.value,
                     "gap": ceiling - rec.value, "bias": c.get((rec.seed, kmax), np.nan) - ceiling})
    return pd.DataFrame(rows, columns=["seed", "k", "budget", "ceiling", "achieved", "gap", "bias"])


def decomposition(ev: pd.DataFrame, ceil: pd.DataFrame) -> pd.DataFrame:
    """Mean and 95 % t interval over seeds of ceiling, achieved, gap and bias per (k, budget)."""
    seeds = per_seed(ev, ceil)
    rows = []
    for (k, b), d in seeds.groupby(["k", "budget"]):
        for q in ("ceiling", "achieved", "gap", "bias"):
            mean, lo, hi, n = t_interval(d[q])
            rows.append({"k": k, "budget": b, "quantity": q, "mean": mean, "lo": lo, "hi": hi, "n": n})
    return pd.DataFrame(rows, columns=COLUMNS)


def variance_curve(var: pd.DataFrame) -> pd.DataFrame:
    """Per k: E[Var(r|X_tk)] and Var(E[r|X_tk]) as fractions of E[Var(r|c)], mean and 95 % t interval over seeds."""
    rows = []
    for (k, m), d in var[var["metric"].isin(["v_within", "v_between"])].groupby(["k", "metric"]):
        mean, lo, hi, n = t_interval(d["value"])
        rows.append({"k": k, "metric": m, "mean": mean, "lo": lo, "hi": hi, "n": n})
    return pd.DataFrame(rows, columns=["k", "metric", "mean", "lo", "hi", "n"])


def _cell(mean, lo, hi) -> str:
    """intervals.cell with 4 significant digits on the bounds too (a learning gap is a small difference of two
    rewards: its bounds need the digits)."""
    return cell(mean, lo, hi, bound_digits=4)


def markdown(ev: pd.DataFrame, ceil: pd.DataFrame, var: pd.DataFrame, domain: str) -> str:
    """<domain>_decomposition.md: the decomposition per (k, budget) and the conditional variance per k."""
    d = decomposition(ev, ceil)
    n = int(d["n"].max()) if len(d) else 0
    kmax = d["k"].max() if len(d) else None
    lines = [f"# {domain}: ceiling, achieved reward and learning gap per truncation point",
             "",
             "Ceiling: the reward of the method's exact target (P-GRAFT at k: the base model denoising the accepted "
             "states after k steps; GRAFT, k = N: the accepted x_0). Learning gap = ceiling − achieved. "
             f"Bias vs GRAFT = GRAFT's ceiling − this ceiling. Mean over {n} seeds [95 % t interval]; "
             "k = 0 is the base model.",
             "",
             "| k | budget | ceiling | achieved | learning gap | bias vs GRAFT |",
             "|---|---|---|---|---|---|"]
    for (k, b), g in d.groupby(["k", "budget"]):
        if k == 0 and b != d["budget"].min():
            continue  # the base model: one row
        cells = {q: _cell(*g[g["quantity"] == q][["mean", "lo", "hi"]].iloc[0])
                 for q in ("ceiling", "achieved", "gap", "bias")}
        k, b = int(k), int(b)
        label = f"{k} (GRAFT)" if k == kmax else (f"{k} (base)" if k == 0 else str(k))
        lines.append(f"| {label} | {'–' if k == 0 else b} | {cells['ceiling']} | {cells['achieved']} | "
                     f"{cells['gap'] if k else '–'} | {cells['bias']} |")
    v = variance_curve(var)
    if len(v):
        lines += ["", "## Conditional reward variance per noise level",
                  "",
                  "Fractions of E[Var(r | prompt)]: E[Var(r(X_0) | X_tk)], the noise the terminal reward carries about "
                  "the state after k steps, and Var(E[r | X_tk]), the signal. Mean over seeds [95 % t interval].",
                  "",
                  "| k | E[Var(r \\| X_tk)] / Var(r) | Var(E[r \\| X_tk]) / Var(r) |", "|---|---|---|"]
        for k, g in v.groupby("k"):
            terms = {m: _cell(*g[g["metric"] == m][["mean", "lo", "hi"]].iloc[0]) for m in ("v_within", "v_between")}
            lines.append(f"| {int(k)} | {terms['v_within']} | {terms['v_between']} |")
    return "\n".join(lines) + "\n"
