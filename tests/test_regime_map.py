"""scripts/regime_map.py and pgraft.report.best_k: win / tie / loss, the best k chosen on the selection seeds and
reported on the evaluation seeds, and the best-k predictor, on synthetic data (no stage runs)."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from pipeline_helpers import study_script

from pgraft.report import best_k


@pytest.fixture(scope="module")
def study():
    yield from study_script("regime_map")


def test_verdict(study):
    assert study.verdict(0.01, 0.2) == "win"
    assert study.verdict(-0.3, -0.01) == "loss"
    assert study.verdict(-0.1, 0.1) == "tie" and study.verdict(0.0, 0.1) == "tie"
    assert study.verdict(float("nan"), float("nan")) == "n/a"


def runs_table() -> pd.DataFrame:
    """One cell. Selection seed 100: k = 10 best (0.80), k = 15 second (0.78). Evaluation seeds 0, 1, 2: k = 15 is
    the best there (0.95), k = 10 scores 0.90, GRAFT 0.85 — the report must use k = 10 (chosen on seed 100) and
    never k = 15, even though k = 15 would look better on the evaluation seeds."""
    rows = []
    cell = {"domain": "gaussian", "hardness": "linear", "groups": 64, "target": "x0", "budget": 100,
            "metric": "reward_mean", "accepted": 128}
    for k, v in ((5, 0.70), (10, 0.80), (15, 0.78)):
        rows.append({**cell, "k": k, "seed": 100, "role": "selection", "value": v})
    noise = {0: 0.0, 1: 0.01, 2: -0.01}
    for s, e in noise.items():
        rows.append({**cell, "k": 10, "seed": s, "role": "evaluation", "value": 0.90 + e + 0.002 * s})
        rows.append({**cell, "k": 15, "seed": s, "role": "evaluation", "value": 0.95 + e})
        rows.append({**cell, "target": "graft", "k": 20, "seed": s, "role": "evaluation", "value": 0.85 + e})
    return pd.DataFrame(rows)


def test_best_k_is_chosen_on_selection_and_reported_on_evaluation_seeds(study):
    runs = runs_table()
    chosen = study.choose_k(runs)
    assert len(chosen) == 1 and int(chosen["best_k"].iloc[0]) == 10
    assert chosen["score"].iloc[0] == pytest.approx(0.80)
    assert chosen["score_k15"].iloc[0] == pytest.approx(0.78)
    cells = study.contrasts(runs, chosen)
    c = cells.iloc[0]
    assert c["best_k"] == 10 and c["n"] == 3
    assert c["diff"] == pytest.approx(0.05 + 0.002)  # k = 10 on seeds 0, 1, 2 against GRAFT, paired
    assert c["pgraft"] == pytest.approx(0.902) and c["graft"] == pytest.approx(0.85)
    assert c["verdict"] == "win" and c["lo"] > 0


def test_tie_and_loss_cells(study):
    runs = runs_table()
    ev = runs["role"] == "evaluation"
    tied = runs.copy()
    tied.loc[ev & (tied["k"] == 10), "value"] = 0.85 + np.array([0.03, -0.02, -0.01])  # paired diffs straddle 0
    assert study.contrasts(tied, study.choose_k(tied)).iloc[0]["verdict"] == "tie"
    lost = runs.copy()
    lost.loc[ev & (lost["k"] == 10), "value"] -= 0.2
    assert study.contrasts(lost, study.choose_k(lost)).iloc[0]["verdict"] == "loss"


def variance(ceilings: dict[int, float], within: dict[int, float]) -> dict:
    return {"k": {str(k): {"ceiling": c, "within": within[k]} for k, c in ceilings.items()}}


def probe(excess: list[float], gain: float, n: int = 20) -> dict:
    train = [1.0] * n
    return {"train_probe": train, "heldout_probe": [t + e for t, e in zip(train, excess)],
            "heldout_base": [t + e + gain for t, e in zip(train, excess)]}


def test_predictor_limits():
    var = variance({0: 0.5, 5: 0.6, 10: 0.8, 15: 0.9, 20: 1.0}, {0: 1.0, 5: 0.8, 10: 0.4, 15: 0.1, 20: 0.0})
    # no learning error: the largest ceiling wins among the candidates, GRAFT's margin over it is its bias
    none = best_k.predict(var, probe([0.0] * 20, 0.1), [5, 10, 15])
    assert none["rho"] == 0.0 and none["k"] == 15 and none["margin"] == pytest.approx(0.9 - 1.0)
    # all error, all of it in the last steps (15..20): P-GRAFT(15) keeps its ceiling, GRAFT loses the span
    late = best_k.predict(var, probe([0.0] * 15 + [1.0] * 5, 0.0), [5, 10, 15])
    assert late["rho"] == 1.0 and late["share"][15] == 0.0 and late["share"][20] == 1.0
    assert late["k"] == 15 and late["margin"] == pytest.approx(0.9 - (1.0 - 0.5))
    # uniform error of half the fitted change: s follows the reward variance resolved, ΔV
    flat = best_k.predict(var, probe([0.1] * 20, 0.1), [5, 10, 15])
    assert flat["rho"] == pytest.approx(0.5)
    assert [flat["share"][k] for k in (0, 5, 10, 15, 20)] == pytest.approx([0, 0.2, 0.6, 0.9, 1.0])
    r = {k: c - 0.5 * flat["share"][k] * 0.5 for k, c in flat["ceiling"].items()}
    assert flat["predicted"] == pytest.approx(r) and flat["k"] == max((5, 10, 15), key=r.get)


def test_predictor_checks_and_averages():
    var = variance({0: 0.5, 10: 0.8, 20: 1.0}, {0: 1.0, 10: 0.4, 20: 0.0})
    with pytest.raises(ValueError, match="not on the variance grid"):
        best_k.predict(var, probe([0.0] * 20, 0.1), [5])
    with pytest.raises(ValueError, match="sampler steps"):
        best_k.predict(var, probe([0.0] * 10, 0.1, n=10), [10])
    mean = best_k.average([probe([0.0] * 20, 0.2), probe([0.2] * 20, 0.0)])
    assert mean["heldout_probe"] == pytest.approx([1.1] * 20) and mean["heldout_base"] == pytest.approx([1.2] * 20)
    assert best_k.average([var, var])["k"]["10"]["ceiling"] == pytest.approx(0.8)


def test_report_and_heatmap(study, tmp_path):
    runs = runs_table()
    cells = study.contrasts(runs, study.choose_k(runs)).assign(accepted=128, predicted_k=15, predicted_margin=-0.1,
                                                              rho=0.2)
    a = study.agreement(cells)
    assert a == {"cells": 1, "exact": 0.0, "mean_abs_error": 5.0, "decided": 1, "sign": 0.0}
    text = study.predictor_report(cells)
    assert "| gaussian | linear | 128 | 100 | x0 | 10 | 15 |" in text
    study.heatmap(cells, "gaussian", tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 0


@pytest.mark.parametrize("key, value, message", [
    ("evaluation_seeds", [100, 1], "both selection and evaluation seeds"),
    ("ks", [5, 20], "outside"),
    ("domains", ["gaussian", "digits_flow"], "no setting for domain"),
    ("hardness", {"gaussian": [{"name": "a"}], "digits_t2i": [{"name": "b"}], "digits_flow": [{"name": "c"}]},
     "not registered diffusion domains"),
    ("hardness", {"gaussian": []}, "no setting for domain"),
])
def test_regime_map_params_are_validated(real_params, key, value, message):
    import copy

    from pgraft.config import parse_params
    from pgraft.errors import ConfigError

    raw = copy.deepcopy(real_params)
    raw["regime_map"][key] = value
    with pytest.raises(ConfigError, match=message):
        parse_params(raw).check_regime_map()


def test_regime_map_ks_are_checked_by_the_study_only(real_params):
    """No stage reads regime_map, so a run with a smaller N validates; the study refuses it before any compute."""
    import copy

    from pgraft.config import parse_params
    from pgraft.errors import ConfigError

    raw = copy.deepcopy(real_params)
    raw["sampler"]["num_steps"] = 4
    raw["truncation_grid"] = [0, 2, 4]
    params = parse_params(raw)
    with pytest.raises(ConfigError, match=r"regime_map.ks \[5, 10, 15\]: \[5, 10, 15\] outside"):
        params.check_regime_map()


def test_default_regime_map_reproduces_the_planned_grid(real_params, study):
    from pgraft.config import RegimeMapParams, parse_params

    rm = parse_params(real_params).regime_map
    assert rm == RegimeMapParams()  # params.yaml states the model's defaults
    assert study.hardness_runs(rm) == {"gaussian": {"linear": "linear", "modes16_sharp": "modes16_sharp"},
                                       "digits_t2i": {"all_prompts": "all_prompts", "composition": "all_prompts"}}
