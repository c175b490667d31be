"""Report tables from the tidy summary (kind, domain, rule, seed, k, budget, metric, x, value): pure pandas."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pgraft.report.intervals import cell, diff_cell, paired, t_interval, welch
from pgraft.report.labels import DISTANCES as DISTANCE_NAMES
from pgraft.report.labels import ENERGY_NOTE
from pgraft.seeds import base_index

MAIN_METRICS = ("reward_mean", "dist_target", "dist_base", "diversity")
PAIRED_METRICS = ("reward_mean", "dist_target", "diversity")
COMPARISON_METRICS = [("reward_mean", "reward (train prompts)"), ("judge_score", "independent judge"),
                      ("reward_mean_heldout", "reward (held-out prompts)"),
                      ("judge_score_heldout", "independent judge (held-out)"), ("fid", "FID ↓"),
                      ("diversity_within_prompt", "within-prompt diversity"),
                      ("reward_hacking_gap", "reward − judge")]
INC_METRICS = (("fid", "FID"), ("kid", "KID"))  # the INC table's sample-quality metrics, where present
PAIRING = "a seed's runs share its sample pool and its evaluation noise"


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


def per_seed(rows: pd.DataFrame, metric: str) -> pd.Series:
    """One metric's values indexed by seed."""
    return rows[rows["metric"] == metric].set_index("seed")["value"]


def per_k_budget(ev: pd.DataFrame, metrics) -> pd.DataFrame:
    """Mean over seeds of each metric with its 95 % t interval (lo, hi; NaN with one seed) and the seed count n,
    one row per (k, budget, metric)."""
    rows = []
    for (k, b), d in ev.groupby(["k", "budget"]):
        for m in metrics:
            mean, lo, hi, n = t_interval(per_seed(d, m))
            rows.append({"k": k, "budget": b, "metric": m, "mean": mean, "lo": lo, "hi": hi, "n": n})
    return pd.DataFrame(rows, columns=["k", "budget", "metric", "mean", "lo", "hi", "n"])


def paired_vs_graft(ev: pd.DataFrame, metrics=PAIRED_METRICS) -> pd.DataFrame:
    """Per (k < kmax, budget, metric): the per-seed difference k minus GRAFT (k = kmax, same budget) over the
    seeds both have, its mean, 95 % t interval (lo, hi), the pair count n and the paired t test's p-value (NaN
    bounds and p with one pair)."""
    kmax = ev["k"].max()
    rows = []
    for (k, b), d in ev.groupby(["k", "budget"]):
        if k == kmax:
            continue
        g = ev[(ev["k"] == kmax) & (ev["budget"] == b)]
        for m in metrics:
            diff, lo, hi, n, p = paired(per_seed(d, m), per_seed(g, m))
            rows.append({"k": k, "budget": b, "metric": m, "diff": diff, "lo": lo, "hi": hi, "n": n, "p": p})
    return pd.DataFrame(rows, columns=["k", "budget", "metric", "diff", "lo", "hi", "n", "p"])


def between_bases(ev: pd.DataFrame, base_models: int, metric: str = "reward_mean") -> pd.DataFrame:
    """Per k at the largest budget (the base model, k = 0, at its own): the mean of `metric` over the seeds of each
    base model (seed s uses base s mod base_models) and each base b > 0 minus base 0 with Welch's 95 % interval
    and p (unpaired: the two groups are different seeds). Columns k, base, seeds, mean, diff, lo, hi, p."""
    b_max = ev["budget"].max()
    rows = []
    for k, d in _one_base(ev).groupby("k"):
        d = d[(d["metric"] == metric) & ((d["budget"] == b_max) | (k == 0))]
        groups = {b: d[d["seed"].map(lambda s: base_index(s, base_models)) == b] for b in range(base_models)}
        for b, g in groups.items():
            diff, lo, hi, p = (welch(g["value"], groups[0]["value"]) if b else (float("nan"),) * 4)
            rows.append({"k": k, "base": b, "seeds": sorted(int(s) for s in g["seed"]), "mean": g["value"].mean(),
                         "diff": diff, "lo": lo, "hi": hi, "p": p})
    return pd.DataFrame(rows, columns=["k", "base", "seeds", "mean", "diff", "lo", "hi", "p"])


def between_bases_markdown(ev: pd.DataFrame, base_models: int) -> list[str]:
    """The section of <domain>_table.md on the base models (nothing with one base model)."""
    if base_models < 2:
        return []
    t = between_bases(ev, base_models)
    kmax, b_max = ev["k"].max(), int(ev["budget"].max())
    first = t[t["k"] == t["k"].min()]
    heads = [f"base {int(r['base'])} (seeds {', '.join(map(str, r['seeds']))})" for _, r in first.iterrows()]
    diffs = [f"base {b} − base 0" for b in range(1, base_models)]
    lines = ["", "## Between base models", "",
             f"Seed s fine-tunes base model s mod {base_models}, each pretrained independently, so the intervals "
             f"above include the spread between base models. reward_mean per base model (mean over its seeds; "
             f"budget {b_max}, the base model k = 0 has none) and each base minus base 0 with Welch's 95 % t "
             "interval and p (unpaired: different seeds; few seeds per base, so wide).", "",
             "| k | " + " | ".join(heads + diffs) + " |", "|---|" + "---|" * (len(heads) + len(diffs))]
    for k, d in t.groupby("k"):
        means = [f"{v:.4g}" for v in d["mean"]]
        cells = [diff_cell(r["diff"], r["lo"], r["hi"], r["p"]) for _, r in d[d["base"] > 0].iterrows()]
        lines.append(f"| {_k_cell(k, kmax)} | " + " | ".join(means + cells) + " |")
    return lines


def domain_markdown(ev: pd.DataFrame, ref: pd.DataFrame, domain: str, extra=(), distance: str = "energy",
                    base_models: int = 1) -> str:
    """<domain>_table.md: metrics per (k, budget) with the base (k = 0, no budget) in one row, then the paired
    comparison against GRAFT, then (several base models) the reward per base model; `distance` (params
    evaluate.distance) names dist_target and dist_base."""
    metrics = [m for m in (*MAIN_METRICS, *extra) if m in set(ev["metric"])]
    kmax = ev["k"].max()
    name = DISTANCE_NAMES.get(distance, distance)
    lines = [f"# {domain}: metrics per truncation point k and fine-tuning budget",
             "", f"Mean over {ev['seed'].nunique()} seeds [95 % t interval; the mean alone where a cell has one "
             f"seed]. k = 0 is the base model (not fine-tuned, so it has no budget), k = {int(kmax)} is GRAFT; "
             "budgets are optimizer steps. "
             f"Exact tilted target reward: {ref[ref['metric'] == 'target_reward_mean']['value'].mean():.4g}; "
             f"base pool reward: {ref[ref['metric'] == 'base_reward_mean']['value'].mean():.4g}.", "",
             f"dist_target, dist_base: {name} (units of x) to the exact tilted target and to the base model's "
             "reference pool; diversity: mean pairwise distance (units of x)."
             + (f" {ENERGY_NOTE}" if distance == "energy" else ""), "",
             "| k | budget | " + " | ".join(metrics) + " |", "|---|---|" + "---|" * len(metrics)]
    for (k, b), d in per_k_budget(_one_base(ev), metrics).groupby(["k", "budget"], sort=False):
        cells = [cell(r["mean"], r["lo"], r["hi"]) for _, r in d.iterrows()]
        lines.append(f"| {_k_cell(k, kmax)} | {'–' if k == 0 else int(b)} | " + " | ".join(cells) + " |")
    lines += ["", f"## Paired comparison against GRAFT (k = {int(kmax)}) at the same budget",
              "", f"Difference k minus GRAFT, paired by seed ({PAIRING}): mean over seeds [95 % t interval] and "
              "the two-sided paired t test's p-value. For the base (k = 0) the budget is GRAFT's only.", "",
              "| k | budget | Δ reward_mean | Δ dist_target | Δ diversity |", "|---|---|---|---|---|"]
    for (k, b), d in paired_vs_graft(ev).groupby(["k", "budget"], sort=False):
        cells = [diff_cell(r["diff"], r["lo"], r["hi"], r["p"]) for _, r in d.iterrows()]
        lines.append(f"| {_k_cell(k, kmax)} | {int(b)} | " + " | ".join(cells) + " |")
    lines += between_bases_markdown(ev, base_models)
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


def best_k_per_seed(at_budget: pd.DataFrame, n: int) -> dict[int, int]:
    """Per seed, P-GRAFT's best k chosen without that seed: `best_k` over the other seeds (leave-one-seed-out,
    docs/METHOD.md §6), so no reported value takes part in its own selection. A single seed has no other seeds
    and is chosen on itself."""
    seeds = sorted(int(s) for s in at_budget["seed"].unique())
    if len(seeds) == 1:
        return {seeds[0]: best_k(at_budget, n)}
    return {s: best_k(at_budget[at_budget["seed"] != s], n) for s in seeds}


def best_k_label(ks: dict[int, int]) -> str:
    """'best k = 15', or 'best k = 15 for 4 seeds, 10 for 1' when the leave-one-seed-out choices differ."""
    counts = pd.Series(list(ks.values())).value_counts()
    if len(counts) == 1:
        return f"best k = {counts.index[0]}"
    parts = [f"{k} for {c} seed{'s' if c > 1 else ''}" for k, c in counts.items()]
    return "best k = " + ", ".join(parts)


@dataclass
class Comparison:
    """Base, DDPO, GRAFT and P-GRAFT at its best k, for one domain with DDPO rows."""

    budget: int  # the largest fine-tuning budget (GRAFT / P-GRAFT)
    last: int  # DDPO's largest checkpoint, in reward evaluations
    best_ks: dict  # seed -> P-GRAFT's k for that seed, chosen on the other seeds (best_k_per_seed)
    rows: list  # (label, that method's summary rows)
    metrics: list  # (metric, label) present in the evaluations
    base: dict  # metric -> the base model's mean
    evals: pd.Series  # GRAFT's reward evaluations per seed
    flops: pd.Series  # the sampler's FLOPs per sample (pretrain rows)
    n_seeds: int
    steps: int  # N, the sampler steps: GRAFT's k


def comparison(table: pd.DataFrame, n: int) -> Comparison:
    """The methods compared at equal reward evaluations, from one domain's summary rows."""
    ev, dd = table[table["kind"] == "evaluate"], table[table["kind"] == "ddpo"]
    b, last = int(ev["budget"].max()), int(dd["budget"].max())
    at_b = ev[ev["budget"] == b]
    ks = best_k_per_seed(at_b, n)
    chosen = pd.concat([at_b[(at_b["seed"] == s) & (at_b["k"] == k)] for s, k in ks.items()])
    rows = [("base (k = 0)", at_b[at_b["k"] == 0]), (f"DDPO ({last} reward evaluations)", dd[dd["budget"] == last]),
            (f"GRAFT (k = {n})", at_b[at_b["k"] == n]), (f"P-GRAFT ({best_k_label(ks)})", chosen)]
    metrics = [(m, label) for m, label in COMPARISON_METRICS if m in set(ev["metric"])]
    base = {m: rows[0][1][rows[0][1]["metric"] == m]["value"].mean() for m, _ in metrics}
    evals = ev[(ev["metric"] == "reward_evaluations") & (ev["k"] == n)]["value"]
    flops = table[(table["kind"] == "pretrain") & (table["metric"] == "flops_per_sample")]["value"]
    return Comparison(b, last, ks, rows, metrics, base, evals, flops, ev["seed"].nunique(), n)


def comparison_table(c: Comparison) -> pd.DataFrame:
    """One row per (method, metric): mean over seeds, its 95 % t interval (lo, hi), the seed count n and the
    change of the mean relative to the base in % (NaN for the base itself or where it is undefined)."""
    out = []
    for label, d in c.rows:
        for m, _ in c.metrics:
            mean, lo, hi, n = t_interval(per_seed(d, m))
            rel = (mean - c.base[m]) / abs(c.base[m]) * 100 if c.base[m] and label[:4] != "base" else None
            out.append({"method": label, "metric": m, "mean": mean, "lo": lo, "hi": hi, "n": n,
                        "rel": rel if rel is not None and np.isfinite(rel) else float("nan")})
    return pd.DataFrame(out, columns=["method", "metric", "mean", "lo", "hi", "n", "rel"])


def comparison_paired(c: Comparison) -> pd.DataFrame:
    """One row per (contrast, metric): each method minus the base, and P-GRAFT minus GRAFT (left out when the best
    k is GRAFT's), paired by seed: mean difference, 95 % t interval (lo, hi), pair count n, paired t test p."""
    (_, base), *others = c.rows
    contrasts = [(f"{label} − base", d, base) for label, d in others]
    (graft_label, graft), (pgraft_label, pgraft) = c.rows[2], c.rows[3]
    if any(k != c.steps for k in c.best_ks.values()):
        contrasts.append((f"{pgraft_label} − {graft_label}", pgraft, graft))
    out = []
    for contrast, a, b in contrasts:
        for m, _ in c.metrics:
            diff, lo, hi, n, p = paired(per_seed(a, m), per_seed(b, m))
            out.append({"contrast": contrast, "metric": m, "diff": diff, "lo": lo, "hi": hi, "n": n, "p": p})
    return pd.DataFrame(out, columns=["contrast", "metric", "diff", "lo", "hi", "n", "p"])


def comparison_markdown(c: Comparison, domain: str) -> str:
    """<domain>_comparison.md: the paper-style table at equal reward evaluations, then the paired differences."""
    header = "| " + " | ".join(label for _, label in c.metrics) + " |"
    rule = "|---|" + "---|" * len(c.metrics)
    lines = [f"# {domain}: base vs DDPO vs GRAFT vs P-GRAFT at equal reward evaluations", "",
             f"Mean over {c.n_seeds} seeds [95 % t interval]; GRAFT / P-GRAFT after {c.budget} fine-tuning steps on "
             f"a pool of {int(c.evals.mean()) if len(c.evals) else '?'} scored samples, DDPO after {c.last} reward "
             "evaluations"
             + (f" (sampler cost of the scored samples: {c.last * c.flops.mean():.3g} FLOPs for every method)"
                if len(c.flops) else "") + ". "
             "In brackets: change of the mean relative to the base, in %. P-GRAFT's k is, for each seed, the best by "
             "mean training reward over the other seeds (leave-one-seed-out: no reported value selected itself).", "",
             "| method " + header, rule]
    t = comparison_table(c)
    for label, _ in c.rows:
        d = t[t["method"] == label]
        cells = [cell(r["mean"], r["lo"], r["hi"]) + (f" ({r['rel']:+.1f} %)" if np.isfinite(r["rel"]) else "")
                 for _, r in d.iterrows()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "## Paired differences", "",
              f"Each method minus the base, and P-GRAFT minus GRAFT, paired by seed ({PAIRING}; DDPO's evaluation "
              "uses the same noise): mean difference over seeds [95 % t interval] and the two-sided paired t test's "
              "p-value.", "", "| difference " + header, rule]
    p = comparison_paired(c)
    for contrast, d in p.groupby("contrast", sort=False):
        cells = [diff_cell(r["diff"], r["lo"], r["hi"], r["p"]) for _, r in d.iterrows()]
        lines.append(f"| {contrast} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def inc_metrics(inc: pd.DataFrame) -> list[tuple[str, str]]:
    """The sample-quality metrics (name, label) of INC_METRICS present in the INC rows."""
    return [(m, label) for m, label in INC_METRICS if m in set(inc["metric"])]


def inc_stats(inc: pd.DataFrame) -> pd.DataFrame:
    """Per (rule, base steps x): mean, std and 95 % t interval (lo, hi) over seeds of FID (and KID where present),
    mean FLOPs per image and the seed count."""
    wide = inc.pivot_table(index=["rule", "x", "seed"], columns="metric", values="value").reset_index()
    rows = []
    for (rule, x), d in wide.groupby(["rule", "x"]):
        row = {"rule": rule, "x": x}
        for m, _ in inc_metrics(inc):
            mean, lo, hi, _ = t_interval(d[m])
            row.update({f"{m}_mean": mean, f"{m}_std": d[m].std(), f"{m}_lo": lo, f"{m}_hi": hi})
        row.update({"flops": d["flops_per_image"].mean(), "seeds": d["seed"].nunique()})
        rows.append(row)
    return pd.DataFrame(rows)


def inc_paired(inc: pd.DataFrame, n: float, base_n: float, metric: str) -> tuple[float, float, float, int, float]:
    """base + INC at n steps minus the base at base_n steps, paired by seed: (mean, lo, hi, pairs, p)."""
    def values(rule, x):
        return inc[(inc["rule"] == rule) & (inc["x"] == x) & (inc["metric"] == metric)].set_index("seed")["value"]

    return paired(values("inc", n), values("base", base_n))


def inc_markdown(inc: pd.DataFrame, domain: str, floor: pd.DataFrame | None = None) -> str:
    """<domain>_inc_table.md: FID (and KID) and FLOPs per base step count, with and without the corrector, then
    base + INC against the base at the same and at twice the steps, paired by seed; with `floor` (the inc_floor
    rows: real training vs real held-out images) a last line gives the metrics' floor for this real set."""
    s = inc_stats(inc)
    metrics = inc_metrics(inc)
    names = " and ".join(label for _, label in metrics)
    lines = [f"# {domain}: inverse noise correction", "",
             f"{names} against held-out real images, mean over {int(s['seeds'].max())} seeds [95 % t interval], "
             "and counted FLOPs per image. Differences are paired by seed (every method of a seed starts from the "
             "same noise): mean difference [95 % t interval] and the two-sided paired t test's p-value.", "",
             "| method | base steps n | " + " | ".join(label for _, label in metrics) + " | FLOPs / image |",
             "|---|---|" + "---|" * len(metrics) + "---|"]
    for _, r in s.sort_values(["rule", "x"]).iterrows():
        name = "base" if r["rule"] == "base" else "base + INC"
        cells = [cell(r[f"{m}_mean"], r[f"{m}_lo"], r[f"{m}_hi"]) for m, _ in metrics]
        lines.append(f"| {name} | {int(r['x'])} | " + " | ".join(cells) + f" | {r['flops']:.4g} |")
    base = s[s["rule"] == "base"].set_index("x")
    deltas = [f"Δ {label}: INC − base" for _, label in metrics]
    lines += ["", "| n | base FID | base + INC FID | change | " + " | ".join(deltas) + " | base FID at 2n | "
              "Δ FID: INC − base at 2n | INC FLOPs / base FLOPs at 2n |", "|---|---|---|---|" + "---|" * len(deltas)
              + "---|---|---|"]
    for _, r in s[s["rule"] == "inc"].sort_values("x").iterrows():
        n = r["x"]
        b = base.loc[n]
        two = base.loc[2 * n] if 2 * n in base.index else None
        change = 100 * (r["fid_mean"] - b["fid_mean"]) / b["fid_mean"]
        same = [_diff(inc_paired(inc, n, n, m)) for m, _ in metrics]
        at_two = (f"{two['fid_mean']:.4g} | {_diff(inc_paired(inc, n, 2 * n, 'fid'))} | "
                  f"{r['flops'] / two['flops']:.2f} |") if two is not None else "- | - | - |"
        lines.append(f"| {int(n)} | {b['fid_mean']:.4g} | {r['fid_mean']:.4g} | {change:+.1f} % | "
                     + " | ".join(same) + " | " + at_two)
    if floor is not None and len(floor):
        cells = []
        for m, label in metrics:
            v = floor[floor["metric"] == m]["value"]
            if len(v):
                mean, lo, hi, _ = t_interval(v)
                cells.append(f"{label} {cell(mean, lo, hi)}")
        lines += ["", "Floor (real training vs real held-out images, the same real set): " + ", ".join(cells) + "."]
    return "\n".join(lines) + "\n"


def _diff(result: tuple[float, float, float, int, float]) -> str:
    """The cell of a paired result (mean, lo, hi, n, p)."""
    mean, lo, hi, _, p = result
    return diff_cell(mean, lo, hi, p)
