"""The report tables' statistics against an independent oracle: on a synthetic tidy table with known per-seed
values, each interval is mean ± t_{0.975, n-1} · sd / √n and each paired p-value is scipy's ttest_rel on the same
numbers paired by seed; the rendered markdown carries exactly those numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from pgraft.report import tables
from pgraft.report.intervals import cell, diff_cell, p_value, paired, t_interval

COLUMNS = ["kind", "domain", "rule", "seed", "k", "budget", "metric", "x", "value"]
SEEDS = (0, 1, 2, 3, 4)
# per-seed values, irregular on purpose: (k, budget, metric) -> values of SEEDS
VALUES = {(0, 10, "reward_mean"): [0.52, 0.55, 0.50, 0.57, 0.53],
          (2, 10, "reward_mean"): [0.71, 0.80, 0.69, 0.78, 0.74],
          (4, 10, "reward_mean"): [0.83, 0.85, 0.76, 0.90, 0.81],
          (0, 10, "dist_target"): [2.31, 2.20, 2.45, 2.28, 2.39],
          (2, 10, "dist_target"): [1.90, 2.05, 1.70, 2.11, 1.98],
          (4, 10, "dist_target"): [2.40, 2.52, 2.33, 2.61, 2.47]}
DDPO = [0.60, 0.58, 0.63, 0.61]  # seeds 0-3 only: seed 4 has no DDPO run


def oracle_interval(v) -> tuple[float, float, float]:
    v = np.asarray(v, dtype=float)
    half = st.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return v.mean(), v.mean() - half, v.mean() + half


def oracle_paired(a, b) -> tuple[float, float, float, float]:
    mean, lo, hi = oracle_interval(np.subtract(a, b))
    return mean, lo, hi, st.ttest_rel(a, b).pvalue


def summary() -> pd.DataFrame:
    rows = [("evaluate", s, k, b, m, vs[i]) for (k, b, m), vs in VALUES.items() for i, s in enumerate(SEEDS)]
    rows += [("evaluate", s, 4, 10, "reward_evaluations", 256.0) for s in SEEDS]
    rows += [("ddpo", s, 4, 64, "reward_mean", v) for s, v in enumerate(DDPO)]
    rows += [("reference", s, 0, 0, m, v) for s in SEEDS for m, v in (("target_reward_mean", 1.0),
                                                                      ("base_reward_mean", 0.5))]
    return pd.DataFrame([{"kind": kind, "domain": "toy", "rule": "top_k", "seed": s, "k": k, "budget": b,
                          "metric": m, "x": float("nan"), "value": v} for kind, s, k, b, m, v in rows],
                        columns=COLUMNS)


def test_t_interval_and_paired_match_the_oracle():
    v = VALUES[(2, 10, "reward_mean")]
    assert t_interval(v) == pytest.approx((*oracle_interval(v), 5))
    a, b = pd.Series(VALUES[(2, 10, "reward_mean")], SEEDS), pd.Series(VALUES[(4, 10, "reward_mean")], SEEDS)
    mean, lo, hi, n, p = paired(a, b)
    assert (mean, lo, hi, p) == pytest.approx(oracle_paired(a.to_numpy(), b.to_numpy())) and n == 5
    # pairing is by seed, not by position: shuffled and partly missing seeds give the same pairs
    shuffled = paired(a.iloc[::-1], b.drop(4))
    assert shuffled[:4] == pytest.approx((*oracle_paired(a.to_numpy()[:4], b.to_numpy()[:4])[:3], 4))
    assert shuffled[4] == pytest.approx(st.ttest_rel(a.to_numpy()[:4], b.to_numpy()[:4]).pvalue)


def test_cells_are_compact_and_say_when_there_is_no_interval():
    assert cell(0.88333, 0.8287, 0.93796) == "0.8833 [0.829, 0.938]"
    assert cell(0.5, float("nan"), float("nan")) == "0.5" and cell(float("nan"), 0, 0) == "–"
    assert diff_cell(-0.2, -0.25, -0.15, 0.0312) == "-0.2 [-0.25, -0.15], p = 0.031"
    assert diff_cell(0.2, float("nan"), float("nan"), float("nan")) == "+0.2"
    assert p_value(0.03) == "p = 0.03" and p_value(0.0004) == "p < 0.001"


def test_domain_table_states_the_oracle_intervals_and_paired_tests():
    t = summary()
    ev, ref = t[t["kind"] == "evaluate"], t[t["kind"] == "reference"]
    cells = tables.per_k_budget(ev, ["reward_mean", "dist_target"]).set_index(["k", "metric"])
    for (k, _, m), v in VALUES.items():
        assert cells.loc[(k, m), ["mean", "lo", "hi"]].tolist() == pytest.approx(oracle_interval(v))
    d = tables.paired_vs_graft(ev, ("reward_mean", "dist_target")).set_index(["k", "metric"])
    for k in (0, 2):
        for m in ("reward_mean", "dist_target"):
            want = oracle_paired(VALUES[(k, 10, m)], VALUES[(4, 10, m)])
            assert d.loc[(k, m), ["diff", "lo", "hi", "p"]].tolist() == pytest.approx(want)
    md = tables.domain_markdown(ev, ref, "toy")
    assert "Mean over 5 seeds [95 % t interval" in md and "paired by seed" in md
    m, lo, hi = oracle_interval(VALUES[(2, 10, "reward_mean")])
    assert f"| 2 | 10 | {m:.4g} [{lo:.3g}, {hi:.3g}] |" in md
    m, lo, hi, p = oracle_paired(VALUES[(2, 10, "reward_mean")], VALUES[(4, 10, "reward_mean")])
    assert f"| 2 | 10 | {m:+.4g} [{lo:.3g}, {hi:.3g}], p = {p:.2g} |" in md


def test_comparison_pairs_each_method_with_the_base_and_p_graft_with_graft():
    c = tables.comparison(summary(), 4)
    assert set(c.best_ks.values()) == {2}
    p = tables.comparison_paired(c).set_index("contrast")
    base, pg, g = (VALUES[(k, 10, "reward_mean")] for k in (0, 2, 4))
    want = {"DDPO (64 reward evaluations) − base": oracle_paired(DDPO, base[:4]),  # the seeds DDPO has
            "GRAFT (k = 4) − base": oracle_paired(g, base),
            "P-GRAFT (best k = 2) − base": oracle_paired(pg, base),
            "P-GRAFT (best k = 2) − GRAFT (k = 4)": oracle_paired(pg, g)}
    assert list(p.index) == list(want)
    for contrast, w in want.items():
        assert p.loc[contrast, ["diff", "lo", "hi", "p"]].tolist() == pytest.approx(w)
    assert p.loc["DDPO (64 reward evaluations) − base", "n"] == 4
    md = tables.comparison_markdown(c, "toy")
    assert "Mean over 5 seeds [95 % t interval]" in md and "paired by seed" in md
    m, lo, hi = oracle_interval(pg)
    assert f"| P-GRAFT (best k = 2) | {m:.4g} [{lo:.3g}, {hi:.3g}] (" in md
    m, lo, hi, pv = want["P-GRAFT (best k = 2) − GRAFT (k = 4)"]
    assert f"| P-GRAFT (best k = 2) − GRAFT (k = 4) | {m:+.4g} [{lo:.3g}, {hi:.3g}], p = {pv:.2g} |" in md


def test_inc_table_pairs_inc_with_the_base_at_n_and_2n_for_fid_and_kid():
    fid = {("base", 5): [20.1, 18.7, 21.4, 19.9], ("base", 10): [11.9, 11.2, 12.6, 11.0],
           ("inc", 5): [13.0, 12.1, 14.8, 12.2]}
    kid = {key: [f / 1000 + 0.001 * i for i, f in enumerate(v)] for key, v in fid.items()}
    rows = [{"kind": "inc", "domain": "toy", "rule": rule, "seed": s, "k": 0, "budget": 0, "metric": m,
             "x": float(n), "value": v}
            for (rule, n), vs in fid.items() for s, f in enumerate(vs)
            for m, v in (("fid", f), ("kid", kid[(rule, n)][s]), ("flops_per_image", float(n)))]
    inc = pd.DataFrame(rows, columns=COLUMNS)
    s = tables.inc_stats(inc).set_index(["rule", "x"])
    assert s.loc[("inc", 5.0), ["fid_mean", "fid_lo", "fid_hi"]].tolist() == pytest.approx(
        oracle_interval(fid[("inc", 5)]))
    assert s.loc[("inc", 5.0), "fid_std"] == pytest.approx(np.std(fid[("inc", 5)], ddof=1))  # the figure's bars
    same = oracle_paired(fid[("inc", 5)], fid[("base", 5)])
    assert tables.inc_paired(inc, 5.0, 5.0, "fid")[:3] == pytest.approx(same[:3])
    assert tables.inc_paired(inc, 5.0, 5.0, "fid")[4] == pytest.approx(same[3])
    md = tables.inc_markdown(inc, "toy")
    assert "FID and KID against held-out real images, mean over 4 seeds [95 % t interval]" in md
    assert "| method | base steps n | FID | KID | FLOPs / image |" in md
    cells = [f"{m:+.4g} [{lo:.3g}, {hi:.3g}], {p_value(p)}" for m, lo, hi, p in (
        same, oracle_paired(kid[("inc", 5)], kid[("base", 5)]), oracle_paired(fid[("inc", 5)], fid[("base", 10)]))]
    row = next(line for line in md.splitlines() if line.startswith("| 5 | "))
    assert row.split(" | ")[4:6] == cells[:2] and row.split(" | ")[7] == cells[2]


def test_between_bases_is_welch_over_each_base_models_seeds():
    t = summary()
    ev = t[t["kind"] == "evaluate"]
    got = tables.between_bases(ev, 2).set_index(["k", "base"])
    for k in (0, 2, 4):
        v = np.asarray(VALUES[(k, 10, "reward_mean")])
        b0, b1 = v[[0, 2, 4]], v[[1, 3]]  # SEEDS 0-4: seed s uses base s mod 2
        assert got.loc[(k, 0), "mean"] == pytest.approx(b0.mean()) and got.loc[(k, 0), "seeds"] == [0, 2, 4]
        r = st.ttest_ind(b1, b0, equal_var=False)
        ci = r.confidence_interval()
        assert got.loc[(k, 1), ["diff", "lo", "hi", "p"]].tolist() == pytest.approx(
            [b1.mean() - b0.mean(), ci.low, ci.high, r.pvalue])
    md = tables.domain_markdown(ev, t[t["kind"] == "reference"], "toy", base_models=2)
    assert "## Between base models" in md
    assert "| k | base 0 (seeds 0, 2, 4) | base 1 (seeds 1, 3) | base 1 − base 0 |" in md
    assert "Between base models" not in tables.domain_markdown(ev, t[t["kind"] == "reference"], "toy")
