"""scripts/ddpo_budget.py: the study's selection, summary, paired differences, report and figure on a synthetic
table (no stage runs)."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from pipeline_helpers import study_script


@pytest.fixture(scope="module")
def study():
    yield from study_script("ddpo_budget")


def synthetic() -> pd.DataFrame:
    """Two E, selection rows for two settings per method (seed 100), evaluation rows on seeds 0, 1, 2. Reward:
    method offset + 0.01·log2(E/4096) + seed noise; setting "a" wins at the last E, "b" on the mean over E."""
    offset = {"ddpo": 0.60, "graft": 0.85, "pgraft": 0.83}
    noise = {0: 0.0, 1: 0.01, 2: -0.005, 100: 0.0}
    rows = []
    for method, e, seed, setting, role in (
            [(m, e, 100, s, "selection") for m in offset for e in (4096, 8192) for s in "ab"]
            + [(m, e, s, "a", "evaluation") for m in offset for e in (4096, 8192) for s in (0, 1, 2)]):
        r = offset[method] + 0.01 * np.log2(e / 4096) + noise[seed]
        if role == "selection":
            r += {("a", 4096): -0.05, ("a", 8192): 0.02, ("b", 4096): 0.01, ("b", 8192): 0.0}[setting, e]
        rows.append({"domain": "digits_t2i", "method": method, "setting": setting, "seed": seed, "role": role,
                     "E": e, "optimizer_steps": e // 64 if method == "ddpo" else 250 * e // 4096,
                     "training_flops": float(e) * 1e6, "base_reward_mean": 0.57, "reward_mean": r,
                     "judge_score": r - 0.02, "fid": 50.0 - 10 * r + seed})
    return pd.DataFrame(rows)


def test_selection_rule(study):
    table = synthetic()
    last, mean = study.choose(table, "last"), study.choose(table, "mean")
    assert list(last["setting"]) == ["a"] * 3 and list(mean["setting"]) == ["b"] * 3
    assert last.loc[last["method"] == "ddpo", "score"].item() == pytest.approx(0.63)
    with pytest.raises(ValueError, match="last | mean"):
        study.choose(table, "best")


def test_summary_and_paired_differences(study):
    table = synthetic()
    s = study.summary(table)
    row = s[(s["method"] == "graft") & (s["E"] == 8192) & (s["metric"] == "reward_mean")].iloc[0]
    values = 0.86 + np.array([0.0, 0.01, -0.005])
    half = 4.302652729911275 * values.std(ddof=1) / np.sqrt(3)  # t_{0.975, 2}
    assert row["mean"] == pytest.approx(values.mean()) and row["hi"] - row["mean"] == pytest.approx(half)
    assert row["n"] == 3 and "dist_target" not in set(s["metric"])  # a metric no row has is left out
    d = study.differences(table)
    g = d[(d["contrast"] == "GRAFT − DDPO") & (d["E"] == 4096) & (d["metric"] == "reward_mean")].iloc[0]
    assert g["diff"] == pytest.approx(0.25) and g["lo"] == pytest.approx(0.25) and g["n"] == 3
    assert set(d["contrast"]) == {"GRAFT − DDPO", "P-GRAFT − DDPO", "P-GRAFT − GRAFT"}


def test_report_and_figure(study, tmp_path):
    table = synthetic()
    text = study.report(table, study.choose(table), seed=100, rule="last", k=15, steps_per_round=250)
    assert "### E = 4,096 reward evaluations" in text and "### E = 8,192 reward evaluations" in text
    assert "| DDPO | 64 | 4.1e+09 | 0.6017 [0.583, 0.621] |" in text
    assert "| GRAFT − DDPO | | | +0.25 [0.25, 0.25], p < 0.001" in text
    assert "| digits_t2i | P-GRAFT | a | 0.8600 |" in text
    study.figure(table, tmp_path / "f.png", {"digits_t2i": "digits reward"})
    assert (tmp_path / "f.png").stat().st_size > 10_000


def test_reward_label_names_prompts_only_where_there_are_prompts(study, real_params):
    gaussian = study.reward_label(real_params, "gaussian")
    assert gaussian.startswith("gaussian: mean ") and "prompts" not in gaussian
    assert study.reward_label(real_params, "digits_t2i").endswith(", training prompts")
