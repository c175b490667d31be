"""The headline report (REPORT.md) on a small hand-made summary frame, against the report's own statistics."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from pgraft.report import headline
from pgraft.report.intervals import cell, diff_cell, paired, t_interval

COLUMNS = ["kind", "domain", "rule", "seed", "k", "budget", "metric", "x", "value"]
SEEDS = (0, 1, 2)


class StubParams:
    """What the report reads of the params: each domain's section (none: the reward is named after the domain)."""

    evaluate = SimpleNamespace(distance="energy")

    def section(self, domain):
        return None


def row(kind, seed, k, budget, metric, value, rule="", x=float("nan"), domain="toy") -> dict:
    return dict(zip(COLUMNS, (kind, domain, rule, seed, k, budget, metric, x, value)))


#: reward per (k, budget) and seed: k = 5 is P-GRAFT's best at the largest budget for every seed
REWARD = {(0, 20): [1.0, 1.2, 1.1], (0, 100): [1.0, 1.2, 1.1], (5, 20): [1.5, 1.6, 1.4], (5, 100): [2.0, 2.3, 2.1],
          (10, 20): [1.8, 1.7, 1.9], (10, 100): [2.2, 2.2, 2.4]}
DDPO = [1.3, 1.1, 1.4]  # at its last checkpoint, 4096 reward evaluations
FID = {("base", 5): [20.0, 22.0, 21.0], ("base", 10): [12.0, 13.0, 12.5], ("inc", 5): [18.0, 21.0, 19.0]}


def summary() -> pd.DataFrame:
    rows = [row("evaluate", s, k, b, "reward_mean", v[i]) for (k, b), v in REWARD.items() for i, s in enumerate(SEEDS)]
    rows += [row("reference", s, 0, 0, "target_reward_mean", 3.0 + s / 10) for s in SEEDS]
    rows += [row("ddpo", s, float("nan"), b, "reward_mean", v) for s, v in zip(SEEDS, DDPO) for b in (1024, 4096)]
    for (rule, n), values in FID.items():
        for s, v in zip(SEEDS, values):
            rows += [row("inc", s, float("nan"), float("nan"), m, val, rule, n, "flow")
                     for m, val in (("fid", v), ("flops_per_image", 1e6 * n + (1e5 if rule == "inc" else 0)))]
    return pd.DataFrame(rows, columns=COLUMNS)


def seeds_of(values) -> pd.Series:
    return pd.Series(values, index=list(SEEDS))


def test_methods_take_the_largest_budget_and_a_best_k_chosen_on_the_other_seeds():
    m = headline.methods(summary().query("kind == 'evaluate'"))
    assert (m.budget, m.steps) == (100, 10) and m.best_ks == {0: 5, 1: 5, 2: 5}
    assert sorted(m.pgraft["value"]) == sorted(REWARD[(5, 100)])
    assert sorted(m.graft["value"]) == sorted(REWARD[(10, 100)])


def test_the_reward_row_states_each_method_and_the_paired_difference():
    md = headline.markdown(summary(), StubParams())
    base, graft, pg = (cell(*t_interval(REWARD[key])[:3]) for key in ((0, 100), (10, 100), (5, 100)))
    mean, lo, hi, _, p = paired(seeds_of(REWARD[(5, 100)]), seeds_of(REWARD[(10, 100)]))
    target = cell(*t_interval([3.0, 3.1, 3.2])[:3])
    expected = (f"| toy | toy reward | 3 | 100 | {base} | {graft} | {pg} (best k = 5) | {diff_cell(mean, lo, hi, p)} | "
                f"{'GRAFT ahead' if hi < 0 else 'no difference resolved'} | {target} |")
    assert expected in md.splitlines()


def test_ddpo_is_compared_at_its_last_checkpoint_paired_by_seed():
    lines = headline.markdown(summary(), StubParams()).splitlines()
    graft = paired(seeds_of(REWARD[(10, 100)]), seeds_of(DDPO))
    assert any(line.startswith(f"| toy | 4096 | {cell(*t_interval(DDPO)[:3])} | {diff_cell(*graft[:3], graft[4])} |")
               for line in lines)


def test_inc_rows_pair_base_and_corrector_at_n_and_against_the_base_at_2n():
    lines = headline.markdown(summary(), StubParams()).splitlines()
    same = paired(seeds_of(FID[("inc", 5)]), seeds_of(FID[("base", 5)]))
    two = paired(seeds_of(FID[("inc", 5)]), seeds_of(FID[("base", 10)]))
    base, inc = (cell(*t_interval(FID[key])[:3]) for key in (("base", 5), ("inc", 5)))
    assert same[2] < 0  # INC's FID is lower on every seed: the interval lies below 0
    expected = (f"| flow | 5 | {base} | {inc} | {diff_cell(*same[:3], same[4])} | INC better | "
                f"{diff_cell(*two[:3], two[4])} |")
    assert expected in lines


NAN = float("nan")
VERDICTS = [((1.0, 0.5, 1.5, 3, 0.01), "P-GRAFT ahead"), ((-1.0, -1.5, -0.5, 3, 0.01), "GRAFT ahead"),
            ((0.1, -0.5, 0.7, 3, 0.6), "no difference resolved"), ((0.1, NAN, NAN, 1, NAN), "one seed: no interval")]


@pytest.mark.parametrize("result, word", VERDICTS)
def test_a_verdict_names_a_side_only_where_the_interval_excludes_zero(result, word):
    assert headline.verdict(result, "P-GRAFT ahead", "GRAFT ahead") == word


def test_the_report_links_the_full_tables_and_leaves_out_absent_sections():
    md = headline.markdown(summary().query("kind != 'ddpo' and kind != 'inc'"), StubParams())
    assert "- [toy_table.md](toy_table.md)" in md.splitlines()
    assert "## DDPO baseline" not in md and "## Inverse noise correction" not in md
