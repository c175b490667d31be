"""Report tables from the tidy summary (kind, domain, rule, seed, k, budget, metric, x, value): pure pandas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pgraft.report.labels import DISTANCES as DISTANCE_NAMES
from pgraft.report.labels import ENERGY_NOTE

MAIN_METRICS = ("reward_mean", "dist_target", "dist_base", "diversity")
PAIRED_METRICS = ("reward_mean", "dist_target", "diversity")
COMPARISON_METRICS = [("reward_mean", "reward (train prompts)"), ("judge_score", "independent judge"),
                      ("reward_mean_heldout", "reward (held-out prompts)"),
                      ("judge_score_heldout", "independent judge (held-out)"), ("fid", "FID ↓"),
                      ("diversity_within_prompt", "within-prompt diversity"),
                      ("reward_hacking_gap", "reward − judge")]


def domains_of(table: pd.DataFrame, kind: str) -> list[str]:
    """The domains that have rows of this kind, sorted."""
    return sorted(set(table.loc[table["kind"] == kind, "domain"]))


def rows_of(table: pd.DataFrame, kind: str, domain: str) -> pd.DataFrame:
    return table[(table["kind"] == kind) & (table["domain"] == domain)]


def mean_std(v: pd.Series) -> tuple[float, float]:
    """Mean and sample standard deviation over seeds (0 for a single seed)."""
    return v.mean(), (v.std(ddof=1) if len(v) > 1 else 0)


def stats(ev: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One metric's mean, std and count over seeds per (k, budget)."""
    d = ev[ev["metric"] == metric]
    return d.groupby(["k", "budget"])["value"].agg(["mean", "std", "count"]).reset_index()


def per_k_budget(ev: pd.DataFrame, metrics) -> pd.DataFrame:
    """Mean ± std over seeds of each metric, one row per (k, budget, metric)."""
    rows = []
    for (k, b), d in ev.groupby(["k", "budget"]):
        for m in metrics:
            mean, std = mean_std(d[d["metric"] == m]["value"])
            rows.append({"k": k, "budget": b, "metric": m, "mean": mean, "std": std})
    return pd.DataFrame(rows, columns=["k", "budget", "metric", "mean", "std"])


def paired_vs_graft(ev: pd.DataFrame, metrics=PAIRED_METRICS) -> pd.DataFrame:
    """Per (k < kmax, budget, metric): the per-seed difference k minus GRAFT (k = kmax, same budget), its mean
    and standard error over seeds (NaN with one seed)."""
    kmax = ev["k"].max()
    rows = []
    for (k, b), d in ev.groupby(["k", "budget"]):
        if k == kmax:
            continue
        for m in metrics:
            mine = d[d["metric"] == m].set_index("seed")["value"]
            g = ev[(ev["k"] == kmax) & (ev["budget"] == b) & (ev["metric"] == m)].set_index("seed")["value"]
            diff = (mine - g).dropna()
            se = diff.std(ddof=1) / np.sqrt(len(diff)) if len(diff) > 1 else float("nan")
            rows.append({"k": k, "budget": b, "metric": m, "diff": diff.mean(), "se": se})
    return pd.DataFrame(rows, columns=["k", "budget", "metric", "diff", "se"])


def domain_markdown(ev: pd.DataFrame, ref: pd.DataFrame, domain: str, extra=(), distance: str = "energy") -> str:
    """<domain>_table.md: metrics per (k, budget) with the base (k = 0, no budget) in one row, then the paired
    comparison against GRAFT; `distance` (params evaluate.distance) names dist_target and dist_base."""
    metrics = [m for m in (*MAIN_METRICS, *extra) if m in set(ev["metric"])]
    kmax = ev["k"].max()
    name = DISTANCE_NAMES.get(distance, distance)
    lines = [f"# {domain}: metrics per truncation point k and fine-tuning budget",
             "", f"Mean ± std over {ev['seed'].nunique()} seeds. k = 0 is the base model (not fine-tuned, so it has "
             f"no budget), k = {int(kmax)} is GRAFT; budgets are optimizer steps. "
             f"Exact tilted target reward: {ref[ref['metric'] == 'target_reward_mean']['value'].mean():.4g}; "
             f"base pool reward: {ref[ref['metric'] == 'base_reward_mean']['value'].mean():.4g}.", "",
             f"dist_target, dist_base: {name} (units of x) to the exact tilted target and to the base model's "
             "reference pool; diversity: mean pairwise distance (units of x)."
             + (f" {ENERGY_NOTE}" if distance == "energy" else ""), "",
             "| k | budget | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for (k, b), d in per_k_budget(_one_base(ev), metrics).groupby(["k", "budget"], sort=False):
        cells = [f"{r['mean']:.4g} ± {r['std']:.2g}" for _, r in d.iterrows()]
        lines.append(f"| {_k_cell(k, kmax)} | {'–' if k == 0 else int(b)} | " + " | ".join(cells) + " |")
    lines += ["", f"## Paired comparison against GRAFT (k = {int(kmax)}) at the same budget",
              "", "Difference (k minus GRAFT) per seed, mean ± standard error over seeds. For the base (k = 0) the "
              "budget is GRAFT's only.", "",
              "| k | budget | Δ reward_mean | Δ dist_target | Δ diversity |", "|---|---|---|---|---|"]
    for (k, b), d in paired_vs_graft(ev).groupby(["k", "budget"], sort=False):
        cells = [f"{r['diff']:+.4g} ± {r['se']:.2g}" for _, r in d.iterrows()]
        lines.append(f"| {_k_cell(k, kmax)} | {int(b)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _one_base(ev: pd.DataFrame) -> pd.DataFrame:
    """The rows with the base model (k = 0) kept at one budget only: it is the same model at every budget."""
    base = ev[ev["k"] == 0]
    return ev[(ev["k"] != 0) | (ev["budget"] == base["budget"].min())]


def _k_cell(k, kmax) -> str:
    return {0: "0 (base)", kmax: f"{int(kmax)} (GRAFT)"}.get(k, str(int(k)))


def best_k(at_budget: pd.DataFrame, n: int) -> int:
    """P-GRAFT's best truncation point 0 < k < n by mean training reward over seeds (n when there is none)."""
    partial = at_budget[(at_budget["metric"] == "reward_mean") & (at_budget["k"] > 0) & (at_budget["k"] < n)]
    return int(partial.groupby("k")["value"].mean().idxmax()) if len(partial) else n


@dataclass
class Comparison:
    """Base, DDPO, GRAFT and P-GRAFT at its best k, for one domain with DDPO rows."""

    budget: int  # the largest fine-tuning budget (GRAFT / P-GRAFT)
    last: int  # DDPO's largest checkpoint, in reward evaluations
    best_k: int
    rows: list  # (label, that method's summary rows)
    metrics: list  # (metric, label) present in the evaluations
    base: dict  # metric -> the base model's mean
    evals: pd.Series  # GRAFT's reward evaluations per seed
    flops: pd.Series  # the sampler's FLOPs per sample (pretrain rows)
    n_seeds: int


def comparison(table: pd.DataFrame, n: int) -> Comparison:
    """The methods compared at equal reward evaluations, from one domain's summary rows."""
    ev, dd = table[table["kind"] == "evaluate"], table[table["kind"] == "ddpo"]
    b, last = int(ev["budget"].max()), int(dd["budget"].max())
    at_b = ev[ev["budget"] == b]
    k = best_k(at_b, n)
    rows = [("base (k = 0)", at_b[at_b["k"] == 0]), (f"DDPO ({last} reward evaluations)", dd[dd["budget"] == last]),
            (f"GRAFT (k = {n})", at_b[at_b["k"] == n]), (f"P-GRAFT (best k = {k})", at_b[at_b["k"] == k])]
    metrics = [(m, label) for m, label in COMPARISON_METRICS if m in set(ev["metric"])]
    base = {m: rows[0][1][rows[0][1]["metric"] == m]["value"].mean() for m, _ in metrics}
    evals = ev[(ev["metric"] == "reward_evaluations") & (ev["k"] == n)]["value"]
    flops = table[(table["kind"] == "pretrain") & (table["metric"] == "flops_per_sample")]["value"]
    return Comparison(b, last, k, rows, metrics, base, evals, flops, ev["seed"].nunique())


def comparison_table(c: Comparison) -> pd.DataFrame:
    """One row per (method, metric): mean, std over seeds and the change relative to the base in % (NaN for
    the base itself or where it is undefined)."""
    out = []
    for label, d in c.rows:
        for m, _ in c.metrics:
            mean, std = mean_std(d[d["metric"] == m]["value"])
            rel = (mean - c.base[m]) / abs(c.base[m]) * 100 if c.base[m] and label[:4] != "base" else None
            out.append({"method": label, "metric": m, "mean": mean, "std": std,
                        "rel": rel if rel is not None and np.isfinite(rel) else float("nan")})
    return pd.DataFrame(out, columns=["method", "metric", "mean", "std", "rel"])


def comparison_markdown(c: Comparison, domain: str) -> str:
    """<domain>_comparison.md: the paper-style table at equal reward evaluations."""
    lines = [f"# {domain}: base vs DDPO vs GRAFT vs P-GRAFT at equal reward evaluations", "",
             f"Mean ± std over {c.n_seeds} seeds; GRAFT / P-GRAFT after {c.budget} fine-tuning steps on a pool of "
             f"{int(c.evals.mean()) if len(c.evals) else '?'} scored samples, DDPO after {c.last} reward evaluations"
             + (f" (sampler cost of the scored samples: {c.last * c.flops.mean():.3g} FLOPs for every method)"
                if len(c.flops) else "") + ". "
             "In brackets: change relative to the base, in %. P-GRAFT's k is the best by mean training reward.", "",
             "| method | " + " | ".join(label for _, label in c.metrics) + " |", "|---|" + "---|" * len(c.metrics)]
    t = comparison_table(c)
    for label, _ in c.rows:
        d = t[t["method"] == label]
        cells = [f"{r['mean']:.4g} ± {r['std']:.2g}" + (f" ({r['rel']:+.1f} %)" if np.isfinite(r["rel"]) else "")
                 for _, r in d.iterrows()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def inc_stats(inc: pd.DataFrame) -> pd.DataFrame:
    """FID mean and std over seeds and FLOPs per image, per (rule, base steps x)."""
    wide = inc.pivot_table(index=["rule", "x", "seed"], columns="metric", values="value").reset_index()
    return wide.groupby(["rule", "x"]).agg(fid_mean=("fid", "mean"), fid_std=("fid", "std"),
                                           flops=("flops_per_image", "mean"), seeds=("seed", "nunique")).reset_index()


def inc_markdown(inc: pd.DataFrame, domain: str) -> str:
    """<domain>_inc_table.md: FID and FLOPs per base step count, with and without the corrector."""
    s = inc_stats(inc)
    lines = [f"# {domain}: inverse noise correction", "",
             f"FID against held-out real images (mean ± std over {int(s['seeds'].max())} seeds) and counted FLOPs "
             "per image.", "", "| method | base steps n | FID | FLOPs / image |", "|---|---|---|---|"]
    for _, r in s.sort_values(["rule", "x"]).iterrows():
        name = "base" if r["rule"] == "base" else "base + INC"
        lines.append(f"| {name} | {int(r['x'])} | {r['fid_mean']:.3f} ± {r['fid_std']:.2f} | {r['flops']:.4g} |")
    base = s[s["rule"] == "base"].set_index("x")
    lines += ["", "| n | base FID | base + INC FID | change | base FID at 2n | INC FLOPs / base FLOPs at 2n |",
              "|---|---|---|---|---|---|"]
    for _, r in s[s["rule"] == "inc"].sort_values("x").iterrows():
        n = r["x"]
        b = base.loc[n]
        two = base.loc[2 * n] if 2 * n in base.index else None
        change = 100 * (r["fid_mean"] - b["fid_mean"]) / b["fid_mean"]
        lines.append(f"| {int(n)} | {b['fid_mean']:.3f} | {r['fid_mean']:.3f} | {change:+.1f} % | "
                     + (f"{two['fid_mean']:.3f} | {r['flops'] / two['flops']:.2f} |" if two is not None else "- | - |"))
    return "\n".join(lines) + "\n"
