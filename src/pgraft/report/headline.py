"""The headline report (results/figures/REPORT.md) from the tidy summary table: pure pandas, no plotting."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from pgraft.report import tables
from pgraft.report.intervals import cell, diff_cell, paired, t_interval
from pgraft.report.labels import words

REWARD = "reward_mean"
INC_METRIC = "fid"


@dataclass
class Methods:
    """One domain's base, GRAFT and P-GRAFT (best k per seed) rows at its largest fine-tuning budget."""

    budget: int
    steps: int  # N: GRAFT's truncation point, the largest k of the grid
    best_ks: dict  # seed -> P-GRAFT's k for that seed, chosen on the other seeds
    base: pd.DataFrame
    graft: pd.DataFrame
    pgraft: pd.DataFrame


def methods(ev: pd.DataFrame) -> Methods:
    """The three methods of one domain's evaluate rows, at the largest budget; P-GRAFT's k is chosen for each seed
    on the other seeds (tables.best_k_per_seed, leave-one-seed-out)."""
    budget, steps = int(ev["budget"].max()), int(ev["k"].max())
    at_b = ev[ev["budget"] == budget]
    ks = tables.best_k_per_seed(at_b, steps)
    chosen = pd.concat([at_b[(at_b["seed"] == s) & (at_b["k"] == k)] for s, k in ks.items()])
    return Methods(budget, steps, ks, at_b[at_b["k"] == 0], at_b[at_b["k"] == steps], chosen)


def mean_cell(rows: pd.DataFrame, metric: str = REWARD) -> str:
    """The mean over seeds of one metric with its 95 % t interval."""
    mean, lo, hi, _ = t_interval(tables.per_seed(rows, metric))
    return cell(mean, lo, hi)


def paired_result(a: pd.DataFrame, b: pd.DataFrame, metric: str = REWARD) -> tuple[float, float, float, int, float]:
    """a − b paired by seed: (mean, lo, hi, pairs, p)."""
    return paired(tables.per_seed(a, metric), tables.per_seed(b, metric))


def paired_cell(result: tuple[float, float, float, int, float]) -> str:
    """The markdown cell of a paired result (mean, lo, hi, pairs, p)."""
    mean, lo, hi, _, p = result
    return diff_cell(mean, lo, hi, p)


def verdict(result: tuple[float, float, float, int, float], ahead: str, behind: str) -> str:
    """`ahead` when the paired interval lies above 0, `behind` below it, "no difference resolved" across it."""
    mean, lo, hi, _, _ = result
    if not pd.notna(lo):
        return "–" if not pd.notna(mean) else "one seed: no interval"
    return ahead if lo > 0 else behind if hi < 0 else "no difference resolved"


def reward_line(table: pd.DataFrame, domain: str, reward: str) -> str:
    """One row of the reward table: base, GRAFT, P-GRAFT(best k), P-GRAFT − GRAFT and the exact target."""
    m = methods(tables.rows_of(table, "evaluate", domain))
    diff = paired_result(m.pgraft, m.graft)
    target = tables.rows_of(table, "reference", domain)
    cells = [domain, reward.replace("|", "\\|"), str(m.base["seed"].nunique()), str(m.budget),
             mean_cell(m.base), mean_cell(m.graft), f"{mean_cell(m.pgraft)} ({tables.best_k_label(m.best_ks)})",
             paired_cell(diff),
             verdict(diff, "P-GRAFT ahead", "GRAFT ahead"), mean_cell(target, "target_reward_mean")]
    return "| " + " | ".join(cells) + " |"


def _section(title: str, caption: str, columns: tuple[str, ...], rows: list[str]) -> list[str]:
    """One report section: heading, caption and a markdown table of `rows`."""
    return [f"## {title}", "", caption, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
            *rows, ""]


def reward_markdown(table: pd.DataFrame, params) -> list[str]:
    """The reward section: one row per domain with evaluate rows (none without)."""
    found = tables.domains_of(table, "evaluate")
    if not found:
        return []
    return _section("Reward: base, GRAFT and P-GRAFT",
                    "At each domain's largest fine-tuning budget (optimizer steps). P-GRAFT's k is chosen for each "
                    "seed on the other seeds (leave-one-seed-out), so no reported value selected itself. P-GRAFT − "
                    f"GRAFT is paired by seed ({tables.PAIRING}), with the two-sided paired t test's p.",
                    ("domain", "reward", "seeds", "budget", "base (k = 0)", "GRAFT (k = N)", "P-GRAFT (best k)",
                     "P-GRAFT − GRAFT", "verdict", "exact tilted target"),
                    [reward_line(table, d, words(params, d).reward) for d in found])


def ddpo_line(table: pd.DataFrame, domain: str) -> str:
    """One row of the DDPO table: DDPO at its last checkpoint against GRAFT and P-GRAFT, paired by seed."""
    m = methods(tables.rows_of(table, "evaluate", domain))
    dd = tables.rows_of(table, "ddpo", domain)
    last = int(dd["budget"].max())
    ddpo = dd[dd["budget"] == last]
    diffs = [paired_result(m.graft, ddpo), paired_result(m.pgraft, ddpo)]
    cells = [domain, str(last), mean_cell(ddpo), *(paired_cell(d) for d in diffs)]
    return "| " + " | ".join(cells) + " |"


def ddpo_markdown(table: pd.DataFrame) -> list[str]:
    """The DDPO section: one row per domain with DDPO rows (none without)."""
    found = [d for d in tables.domains_of(table, "ddpo") if d in tables.domains_of(table, "evaluate")]
    if not found:
        return []
    return _section("DDPO baseline",
                    "DDPO after its last checkpoint (in reward evaluations) against GRAFT and P-GRAFT (best k) of the "
                    "table above, paired by seed (DDPO's evaluation uses the same noise); the equal-evaluation table "
                    "with every metric is `<domain>_comparison.md`.",
                    ("domain", "DDPO reward evaluations", "DDPO reward", "GRAFT − DDPO", "P-GRAFT − DDPO"),
                    [ddpo_line(table, d) for d in found])


def inc_lines(inc: pd.DataFrame, domain: str) -> list[str]:
    """The rows of one flow domain: per corrected n, base vs base + INC FID, paired, and the base at 2n."""
    s = tables.inc_stats(inc)
    base = s[s["rule"] == "base"].set_index("x")
    lines = []
    for _, r in s[s["rule"] == "inc"].sort_values("x").iterrows():
        n, b = r["x"], base.loc[r["x"]]
        same = tables.inc_paired(inc, n, n, INC_METRIC)
        two = paired_cell(tables.inc_paired(inc, n, 2 * n, INC_METRIC)) if 2 * n in base.index else "–"
        cells = [domain, str(int(n)), cell(b["fid_mean"], b["fid_lo"], b["fid_hi"]),
                 cell(r["fid_mean"], r["fid_lo"], r["fid_hi"]), paired_cell(same),
                 verdict(same, "INC worse", "INC better"), two]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def inc_markdown(table: pd.DataFrame) -> list[str]:
    """The inverse-noise-correction section: one row per (flow domain, corrected n) (none without INC rows)."""
    found = tables.domains_of(table, "inc")
    if not found:
        return []
    return _section("Inverse noise correction: FID (lower is better)",
                    "FID against held-out real images, base flow and base + corrector from the same noise, paired by "
                    "seed; the last column compares base + INC at n with the base at 2n steps. FLOPs and KID: "
                    "`<domain>_inc_table.md`.",
                    ("domain", "n", "base FID", "base + INC FID", "INC − base", "verdict", "INC at n − base at 2n"),
                    [row for d in found for row in inc_lines(tables.rows_of(table, "inc", d), d)])


def links(table: pd.DataFrame) -> list[str]:
    """Links to the full per-domain tables the figures stage writes beside this report."""
    files = [f"{d}_table.md" for d in tables.domains_of(table, "evaluate")]
    files += [f"{d}_decomposition.md" for d in tables.domains_of(table, "ceiling")]
    files += [f"{d}_comparison.md" for d in tables.domains_of(table, "ddpo")]
    files += [f"{d}_inc_table.md" for d in tables.domains_of(table, "inc")]
    return ["## Full tables", ""] + [f"- [{f}]({f})" for f in files] + [""]


def markdown(table: pd.DataFrame, params) -> str:
    """REPORT.md: the headline tables of every domain in the summary, with links to the full tables."""
    seeds = int(table["seed"].dropna().nunique())
    lines = ["# Headline results", "",
             "Written by the `figures` stage from `results/summary.csv`; every number is regenerated by each run. "
             f"Mean over seeds [95 % t interval] ({seeds} seeds in the summary); differences are paired by seed: "
             "mean [95 % t interval], p = two-sided paired t test. A verdict names a side only where the paired "
             "interval excludes 0.", ""]
    lines += reward_markdown(table, params) + ddpo_markdown(table) + inc_markdown(table) + links(table)
    return "\n".join(lines).rstrip("\n") + "\n"
