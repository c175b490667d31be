"""Analytic oracles of the bias–variance measurements: the conditional variance estimators, the per-prompt
exact target, the continuation sampler and the decomposition table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pgraft import filters
from pgraft.metrics.conditional_variance import bootstrap, decompose, mean_interval
from pgraft.metrics.tilt import tilt_weights, tilt_weights_by_condition
from pgraft.report.decomposition import decomposition, markdown, t_interval


def test_decompose_recovers_known_within_and_between_variance():
    """r_ib = a_i + e_ib with Var(a) = 4, Var(e) = 1: E[Var(r|a)] = 1, Var(E[r|a]) = 4, whatever B."""
    rng = np.random.default_rng(0)
    for branches in (2, 8):
        r = rng.normal(0, 2, (20000, 1)) + rng.normal(0, 1, (20000, branches))
        within, between = decompose(r)
        assert within == pytest.approx(1.0, abs=0.03) and between == pytest.approx(4.0, abs=0.12)


def test_bootstrap_interval_covers_the_truth_and_refuses_a_single_branch():
    rng = np.random.default_rng(1)
    r = rng.normal(0, 1, (1000, 1)) + rng.normal(0, 0.5, (1000, 4))
    out = bootstrap(r, np.random.default_rng(2), reps=300)
    assert out["within_lo"] < 0.25 < out["within_hi"] and out["between_lo"] < 1.0 < out["between_hi"]
    m = mean_interval(np.arange(10.0), np.random.default_rng(3), reps=300)
    assert m["lo"] < 4.5 < m["hi"] and m["mean"] == 4.5
    with pytest.raises(ValueError, match="B >= 2"):
        decompose(r[:, :1])


def test_per_prompt_target_keeps_the_prompt_mix_of_a_rank_rule():
    """top_k keeps K of every group, and a group shares a prompt: the exact target keeps each prompt's share and
    tilts within it. One CDF pooled over prompts would put nearly all weight on the prompt with high rewards."""
    rule = filters.build("top_k", m=8, k=2)
    rng = np.random.default_rng(0)
    r = np.concatenate([rng.random(3000), 10 + rng.random(1000)])  # prompt b: a quarter of the pool, rewards + 10
    prompts = np.asarray(["a"] * 3000 + ["b"] * 1000)
    w = tilt_weights_by_condition(rule, r, prompts)
    assert w.sum() == pytest.approx(1.0) and w[prompts == "b"].sum() == pytest.approx(0.25)
    assert np.allclose(w[prompts == "a"] / 0.75, tilt_weights(rule, r[prompts == "a"]))
    assert tilt_weights(rule, r)[prompts == "b"].sum() > 0.7  # the pooled tilt (the bug this replaces): 3x its share
    # a rule with g a function of the reward itself (threshold) accepts each sample on its own: pooled is exact
    threshold = filters.build("threshold", tau=5.0)
    assert np.array_equal(tilt_weights_by_condition(threshold, r, prompts), tilt_weights(threshold, r))
    assert np.array_equal(tilt_weights_by_condition(rule, r, None), tilt_weights(rule, r))


def test_continuation_from_x_T_is_the_ordinary_rollout():
    """continue_from(k = 0) draws the same step noise in the same order as a rollout from the same x_T; k = N
    returns the states unchanged."""
    from pgraft.samplers.continuation import continue_from
    from pgraft.samplers.rollout import rollout
    from pgraft.samplers.schedule import build_schedule
    from pgraft.config import SamplerParams

    schedule = build_schedule(SamplerParams(num_steps=6))
    net = torch.nn.Linear(2, 2)
    model = lambda x, t: net(x)  # noqa: E731 - an ε-network of (x, t)
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    ref, _ = rollout(lambda i: model, schedule, x_T, torch.Generator().manual_seed(1))
    got = continue_from(model, schedule, x_T, 0, torch.Generator().manual_seed(1), batch_size=16)
    assert torch.equal(ref, got)
    assert torch.equal(continue_from(model, schedule, x_T, 6, torch.Generator(), batch_size=4), x_T)


def test_t_interval_matches_the_textbook_formula():
    mean, lo, hi, n = t_interval([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3) and hi - mean == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)
    assert np.isnan(t_interval([1.0])[1])


def _frames():
    ev = pd.DataFrame([{"seed": s, "k": k, "budget": b, "metric": "reward_mean", "value": v}
                       for s in (0, 1) for k, b, v in ((0, 10, 1.0), (2, 10, 1.5 + s), (4, 10, 1.2 + s))])
    ceil = pd.DataFrame([{"seed": s, "k": k, "metric": "ceiling", "value": v}
                         for s in (0, 1) for k, v in ((0, 1.0), (2, 2.0 + s), (4, 3.0 + s))])
    var = pd.DataFrame([{"seed": s, "k": k, "metric": m, "value": v}
                        for s in (0, 1) for k in (0, 2, 4) for m, v in (("v_within", 1 - k / 4), ("v_between", k / 4))])
    return ev, ceil, var


def test_decomposition_gap_and_bias_per_seed():
    ev, ceil, var = _frames()
    d = decomposition(ev, ceil).set_index(["k", "quantity"])
    assert d.loc[(2, "gap"), "mean"] == pytest.approx(0.5)  # ceiling 2 + s minus achieved 1.5 + s
    assert d.loc[(4, "gap"), "mean"] == pytest.approx(1.8)
    assert d.loc[(2, "bias"), "mean"] == pytest.approx(1.0) and d.loc[(4, "bias"), "mean"] == 0
    text = markdown(ev, ceil, var, "toy")
    assert "| 4 (GRAFT) | 10 |" in text and "| 0 (base) | – |" in text and "| 2 | 0.5 [0.5, 0.5] |" in text
