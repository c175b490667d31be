"""The report tables on small hand-made summary frames, against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from pgraft.report import tables

COLUMNS = ["kind", "domain", "rule", "seed", "k", "budget", "metric", "x", "value"]


def tidy(*rows) -> pd.DataFrame:
    """Rows (kind, seed, k, budget, metric, value) of domain "toy", as the aggregate stage writes them."""
    return pd.DataFrame([{"kind": kind, "domain": "toy", "rule": "top_k", "seed": s, "k": k, "budget": b,
                          "metric": m, "x": float("nan"), "value": v} for kind, s, k, b, m, v in rows],
                        columns=COLUMNS)


def evaluated(values: dict) -> pd.DataFrame:
    """values[(k, budget, metric)] = [value of seed 0, value of seed 1, ...]."""
    return tidy(*[("evaluate", s, k, b, m, v) for (k, b, m), vs in values.items() for s, v in enumerate(vs)])


EV = evaluated({(0, 10, "reward_mean"): [1.0, 3.0], (0, 10, "diversity"): [2.0, 2.0],
                (4, 10, "reward_mean"): [5.0, 6.0], (4, 10, "diversity"): [1.0, 0.5]})


T1 = 12.706204736174698  # t_{0.975} with 1 degree of freedom (two seeds)


def test_mean_and_t_interval_over_seeds():
    t = tables.per_k_budget(EV, ["reward_mean", "diversity"]).set_index(["k", "metric"])
    # reward at k = 0: seeds 1, 3 -> mean 2, sd sqrt(2), half-width t * sd / sqrt(2) = t
    assert t.loc[(0, "reward_mean"), "mean"] == 2.0 and t.loc[(0, "reward_mean"), "n"] == 2
    assert t.loc[(0, "reward_mean"), ["lo", "hi"]].tolist() == pytest.approx([2 - T1, 2 + T1])
    assert t.loc[(4, "reward_mean"), "mean"] == 5.5  # sd sqrt(0.5): half-width t / 2
    assert t.loc[(4, "reward_mean"), ["lo", "hi"]].tolist() == pytest.approx([5.5 - T1 / 2, 5.5 + T1 / 2])
    assert t.loc[(0, "diversity"), ["lo", "hi"]].tolist() == [2.0, 2.0]  # no spread: a point
    one_seed = tables.per_k_budget(EV[EV["seed"] == 1], ["reward_mean"]).set_index("k")
    assert one_seed.loc[4, "mean"] == 6.0 and one_seed.loc[4, "n"] == 1
    assert np.isnan(one_seed.loc[4, "lo"]) and np.isnan(one_seed.loc[4, "hi"])  # one seed: no interval


def test_paired_differences_against_graft_per_seed():
    d = tables.paired_vs_graft(EV, ("reward_mean", "diversity")).set_index("metric")
    assert list(d["k"]) == [0, 0]  # GRAFT (the largest k) is not compared with itself
    # reward: seed 0: 1 - 5 = -4, seed 1: 3 - 6 = -3 -> mean -3.5, sd sqrt(0.5), se 0.5; t = -3.5 / 0.5 = -7
    assert d.loc["reward_mean", "diff"] == -3.5 and d.loc["reward_mean", "n"] == 2
    assert d.loc["reward_mean", ["lo", "hi"]].tolist() == pytest.approx([-3.5 - 0.5 * T1, -3.5 + 0.5 * T1])
    # two-sided p of t = -7 with 1 degree of freedom: 1 - 2 atan(7) / pi
    assert d.loc["reward_mean", "p"] == pytest.approx(1 - 2 * math.atan(7) / math.pi)
    # diversity: 2 - 1 = 1, 2 - 0.5 = 1.5 -> mean 1.25, se 0.25, t = 5
    assert d.loc["diversity", "diff"] == 1.25
    assert d.loc["diversity", ["lo", "hi"]].tolist() == pytest.approx([1.25 - 0.25 * T1, 1.25 + 0.25 * T1])
    assert d.loc["diversity", "p"] == pytest.approx(1 - 2 * math.atan(5) / math.pi)


def test_paired_differences_use_only_seeds_both_have():
    ev = evaluated({(0, 10, "reward_mean"): [1.0, 3.0], (4, 10, "reward_mean"): [5.0]})
    d = tables.paired_vs_graft(ev, ("reward_mean",))
    assert d["diff"].tolist() == [-4.0] and d["n"].tolist() == [1]
    assert d[["lo", "hi", "p"]].isna().all(axis=None)  # one pair: no interval, no test


def test_domain_markdown_rows():
    ref = tidy(("reference", 0, 0, 0, "target_reward_mean", 4.0), ("reference", 1, 0, 0, "target_reward_mean", 5.0),
               ("reference", 0, 0, 0, "base_reward_mean", 1.0), ("reference", 1, 0, 0, "base_reward_mean", 2.0))
    md = tables.domain_markdown(EV, ref, "toy").splitlines()
    assert "Exact tilted target reward: 4.5; base pool reward: 1.5." in md[2]
    assert "| k | budget | reward_mean | diversity |" in md  # absent metrics are left out, in a fixed order
    assert "Mean over 2 seeds [95 % t interval" in md[2]
    assert "| 0 (base) | – | 2 [-10.7, 14.7] | 2 [2, 2] |" in md  # the base model has no budget
    assert "| 4 (GRAFT) | 10 | 5.5 [-0.853, 11.9] | 0.75 [-2.43, 3.93] |" in md
    assert any(line.startswith("Difference k minus GRAFT, paired by seed") for line in md)
    # no dist_target rows: "–"; p = 1 - 2 atan(7) / pi = 0.0903, 1 - 2 atan(5) / pi = 0.126
    assert "| 0 (base) | 10 | -3.5 [-9.85, 2.85], p = 0.09 | – | +1.25 [-1.93, 4.43], p = 0.13 |" in md


def test_best_k_is_the_partial_k_with_largest_mean_reward():
    ev = evaluated({(0, 10, "reward_mean"): [9.0, 9.0], (1, 10, "reward_mean"): [1.0, 5.0],
                    (2, 10, "reward_mean"): [4.0, 4.0], (4, 10, "reward_mean"): [9.0, 9.0]})
    assert tables.best_k(ev, 4) == 2  # mean 4 at k=2 beats 3 at k=1; k = 0 and k = N never count
    assert tables.best_k(ev[ev["k"] != 2], 4) == 1
    assert tables.best_k(ev[ev["k"].isin([0, 4])], 4) == 4  # no 0 < k < N: GRAFT


def test_best_k_per_seed_is_chosen_without_that_seed():
    # k = 1 wins on seed 0 alone; without seed 0 k = 2 wins, without seed 1 or 2 k = 1 does
    ev = evaluated({(1, 10, "reward_mean"): [9.0, 0.0, 0.0], (2, 10, "reward_mean"): [1.0, 2.0, 2.0],
                    (4, 10, "reward_mean"): [5.0, 5.0, 5.0]})
    assert tables.best_k_per_seed(ev, 4) == {0: 2, 1: 1, 2: 1}
    assert tables.best_k_label({0: 2, 1: 1, 2: 1}) == "best k = 1 for 2 seeds, 2 for 1 seed"
    assert tables.best_k_label({0: 2, 1: 2}) == "best k = 2"
    assert tables.best_k_per_seed(ev[ev["seed"] == 0], 4) == {0: 1}  # one seed: chosen on itself
    dd = tidy(("ddpo", 0, 4, 32, "reward_mean", 1.0))
    c = tables.comparison(pd.concat([ev, dd], ignore_index=True), 4)
    label, rows = c.rows[3]
    assert label == "P-GRAFT (best k = 1 for 2 seeds, 2 for 1 seed)"
    assert sorted(zip(rows["seed"], rows["k"], rows["value"])) == [(0, 2, 1.0), (1, 1, 0.0), (2, 1, 0.0)]


def comparison_frame() -> pd.DataFrame:
    ev = evaluated({(0, 5, "reward_mean"): [0.0, 0.0], (0, 10, "reward_mean"): [2.0, 2.0],
                    (2, 10, "reward_mean"): [3.0, 5.0], (4, 10, "reward_mean"): [3.0, 3.0],
                    (4, 10, "reward_evaluations"): [64.0, 64.0]})
    dd = tidy(("ddpo", 0, 4, 32, "reward_mean", 1.0), ("ddpo", 1, 4, 32, "reward_mean", 2.0),
              ("ddpo", 0, 4, 16, "reward_mean", 7.0), ("pretrain", 0, 0, 0, "flops_per_sample", 1000.0))
    return pd.concat([ev, dd], ignore_index=True)


def test_ddpo_comparison_table():
    c = tables.comparison(comparison_frame(), 4)
    # largest budget, last DDPO checkpoint, the only partial k (for each seed)
    assert (c.budget, c.last, c.best_ks) == (10, 32, {0: 2, 1: 2})
    assert [label for label, _ in c.rows] == ["base (k = 0)", "DDPO (32 reward evaluations)", "GRAFT (k = 4)",
                                             "P-GRAFT (best k = 2)"]
    t = tables.comparison_table(c).set_index("method")
    assert list(t["metric"]) == ["reward_mean"] * 4  # the only comparison metric present
    assert t.loc["base (k = 0)", "mean"] == 2.0 and np.isnan(t.loc["base (k = 0)", "rel"])
    assert t.loc["DDPO (32 reward evaluations)", "mean"] == 1.5
    assert t.loc["DDPO (32 reward evaluations)", "rel"] == pytest.approx(-25.0)  # (1.5 - 2) / 2
    assert t.loc["GRAFT (k = 4)", ["lo", "hi"]].tolist() == [3.0, 3.0]  # no spread
    assert t.loc["GRAFT (k = 4)", "rel"] == pytest.approx(50.0)
    assert t.loc["P-GRAFT (best k = 2)", "mean"] == 4.0  # seeds 3, 5: sd sqrt(2), half-width t
    assert t.loc["P-GRAFT (best k = 2)", ["lo", "hi"]].tolist() == pytest.approx([4 - T1, 4 + T1])
    assert t.loc["P-GRAFT (best k = 2)", "rel"] == pytest.approx(100.0)
    md = tables.comparison_markdown(c, "toy").splitlines()
    assert "on a pool of 64 scored samples, DDPO after 32 reward evaluations (sampler cost of the scored " \
           "samples: 3.2e+04 FLOPs for every method)" in md[2]
    table = md[md.index("| method | reward (train prompts) |") + 2:][:4]
    assert table == ["| base (k = 0) | 2 [2, 2] |", "| DDPO (32 reward evaluations) | 1.5 [-4.85, 7.85] (-25.0 %) |",
                     "| GRAFT (k = 4) | 3 [3, 3] (+50.0 %) |", "| P-GRAFT (best k = 2) | 4 [-8.71, 16.7] (+100.0 %) |"]
    # paired by seed: DDPO - base = -1, 0; GRAFT - base = 1, 1 (no spread: t infinite); P-GRAFT - base = 1, 3
    # (t = 2: p = 1 - 2 atan(2) / pi = 0.295); P-GRAFT - GRAFT = 0, 2
    assert md[-4:] == ["| DDPO (32 reward evaluations) − base | -0.5 [-6.85, 5.85], p = 0.5 |",
                       "| GRAFT (k = 4) − base | +1 [1, 1], p < 0.001 |",
                       "| P-GRAFT (best k = 2) − base | +2 [-10.7, 14.7], p = 0.3 |",
                       "| P-GRAFT (best k = 2) − GRAFT (k = 4) | +1 [-11.7, 13.7], p = 0.5 |"]


def test_inc_table_compares_with_the_base_at_twice_the_steps():
    rows = []
    for seed, (f2, f4, c2) in enumerate(((10.0, 6.0, 7.0), (12.0, 8.0, 9.0))):
        for rule, n, fid, flops in (("base", 2, f2, 2.0), ("base", 4, f4, 4.0), ("inc", 2, c2, 3.0)):
            rows += [{"kind": "inc", "domain": "toy", "rule": rule, "seed": seed, "k": 0, "budget": 0,
                      "metric": m, "x": float(n), "value": v} for m, v in (("fid", fid), ("flops_per_image", flops))]
    md = tables.inc_markdown(pd.DataFrame(rows, columns=COLUMNS), "toy").splitlines()
    assert "| base | 2 | 11 [-1.71, 23.7] | 2 |" in md  # sd sqrt(2): half-width t
    assert "| base + INC | 2 | 8 [-4.71, 20.7] | 3 |" in md
    # change (8 - 11) / 11 = -27.3 %; INC - base per seed: -3, -3 (no spread); base at 2n = 4 steps: FID 7,
    # INC - base at 2n per seed: 1, 1; FLOPs ratio 3 / 4
    assert "| 2 | 11 | 8 | -27.3 % | -3 [-3, -3], p < 0.001 | 7 | +1 [1, 1], p < 0.001 | 0.75 |" in md
