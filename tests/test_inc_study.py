"""scripts/inc_study.py: its corrector settings, the seed spread it prints beside single-seed cells, its report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline_helpers import study_script


@pytest.fixture(scope="module")
def study():
    yield from study_script("inc_study")


def test_corrector_settings_name_an_mlp_or_a_unet(study):
    assert study.corrector_setting("256x3") == {"architecture": "mlp", "hidden": 256, "layers": 3}
    unet = study.corrector_setting("unet16-32")
    assert unet == {"architecture": "unet", "unet_channels": [16, 32]}
    assert study.size_label(unet) == "unet16-32" and study.size_label(study.corrector_setting("128x2")) == "mlp128x2"
    with pytest.raises(ValueError):
        study.corrector_setting("wide")


def test_seed_spread_is_the_std_of_paired_differences(study, tmp_path):
    for seed, (d5, d10) in enumerate([(-1.0, 2.0), (1.0, 4.0), (3.0, 6.0)]):
        (tmp_path / f"seed{seed}").mkdir()
        (tmp_path / f"seed{seed}" / "inc.json").write_text(json.dumps(
            {"inc_n5": {"fid_minus_base": d5}, "inc_n10": {"fid_minus_base": d10}, "base_n5": {}}))
    assert study.seed_spread(tmp_path) == pytest.approx({5: 2.0, 10: 2.0})
    assert study.seed_spread(tmp_path / "absent") == {}


def test_report_states_the_spread_and_each_cell_difference(study):
    table = pd.DataFrame([{"n": 5, "num_inverted": "all", "coupling": c, "corrector": "mlp256x3", "step_cap": 2000,
                           "corrector_steps": e, "base_fid": 20.0, "inc_fid": f, "fid_change_pct": 100 * (f - 20) / 20}
                          for c, e, f in (("ot", 20, 18.0), ("independent", 20, 22.0), ("ot", 5, 19.0))])
    text = study.report(table, 100, {5: 3.5})
    assert "standard deviation of 3.50 at n = 5" in text and "fid_minus_base" in text and "-2" in text
    assert "## Mean FID change (%) by corrector_steps and n" in text


def test_invocations_over_other_axes_are_merged_and_a_rerun_cell_replaced(study, tmp_path):
    row = {"n": 5, "num_inverted": "all", "coupling": "ot", "corrector": "mlp256x3", "step_cap": 2000, "inc_fid": 1.0}
    first = study.merged(pd.DataFrame([{**row, "corrector_steps": 20}, {**row, "corrector": "unet16-32",
                                                                        "corrector_steps": 20, "inc_fid": 2.0}]),
                         tmp_path / "s.csv")
    first.drop(columns="corrector_steps").to_csv(tmp_path / "s.csv", index=False)  # written before the axis existed
    second = study.merged(pd.DataFrame([{**row, "corrector_steps": 20, "inc_fid": 3.0},
                                        {**row, "corrector_steps": 20, "coupling": "independent"},
                                        {**row, "corrector_steps": 5, "inc_fid": 4.0}]), tmp_path / "s.csv")
    got = {(r.coupling, r.corrector, r.corrector_steps): r.inc_fid for r in second.itertuples()}
    assert got == {("ot", "mlp256x3", 20): 3.0, ("ot", "unet16-32", 20): 2.0, ("independent", "mlp256x3", 20): 1.0,
                   ("ot", "mlp256x3", 5): 4.0}


def test_evaluation_of_a_chosen_cell_pairs_base_and_inc_by_seed(study, tmp_path):
    def write(root, seed, base, inc):
        (root / f"seed{seed}").mkdir(parents=True)
        (root / f"seed{seed}" / "inc.json").write_text(json.dumps(
            {"base_n5": {"fid": base, "kid": 1.0}, "inc_n5": {"fid": inc, "kid": 0.5}}))

    for seed, (base, inc) in enumerate([(20.0, 15.0), (22.0, 18.0), (18.0, 12.0)]):
        write(tmp_path / "out" / "evaluation" / "unet16-32_s2000", seed, base, inc)
        write(tmp_path / "default", seed, base, base + 1.0)
    text = study.evaluation(tmp_path / "out", tmp_path / "default")
    assert "| unet16-32_s2000 | 5 | [0, 1, 2] | 20.00 | 15.00 | -5 [" in text and "-25 %" in text
    assert "| the default's (params.yaml) | 5 | [0, 1, 2] | 20.00 | 21.00 | +1 " in text
    assert study.evaluation(tmp_path / "nothing", tmp_path / "default") == ""
