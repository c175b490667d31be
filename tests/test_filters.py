"""Tests for pgraft.filters: contract, Monte Carlo oracles (docs/METHOD.md §1), bad params, dedup."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate
from scipy.special import betainc
from scipy.stats import norm

from pgraft.filters import REGISTRY, build

# Valid default parameters for every registered rule. A rule added to REGISTRY without an
# entry here makes the contract tests fail (see make_rule and test_defaults_cover_registry).
DEFAULTS = {
    "best_of_n": {"n": 4},
    "top_k": {"m": 8, "k": 2},
    "threshold": {"tau": 0.3},
    "rejection": {"alpha": 0.5, "r_max": 1.0},
    "top_k_dedup": {"m": 8, "k": 2},
}
# Rejection flips coins per position, so exact equivariance / locality of the mask only holds
# when the coins are irrelevant: alpha -> 0 makes g(r) = 1{r >= r_max} up to exp(-huge).
DETERMINISTIC = {"rejection": {"alpha": 1e-9, "r_max": 0.0}}
NAMES = sorted(REGISTRY)

# Monte Carlo oracle settings: 160k samples, 20 bins of u -> >= 8000 samples per bin, so the
# binomial std of a bin's acceptance rate is <= 0.0056; MC_TOL is ~3.6 sigma in the worst bin.
N_SAMPLES = 160_000
N_BINS = 20
MC_TOL = 0.02
MASS_TOL = 0.01  # accepted-sample histogram: per-bin probability mass


def make_rule(name, overrides=None):
    assert name in DEFAULTS, f"registered rule {name!r} has no entry in DEFAULTS"
    params = dict(DEFAULTS[name])
    if overrides and name in overrides:
        params = dict(overrides[name])
    return build(name, **params)


def make_batch(rule, rng, n_groups=6, per_sample_group=5):
    size = rule.group_size or per_sample_group
    rewards = rng.normal(size=n_groups * size)
    groups = np.repeat(np.arange(n_groups) * 7 + 3, size)  # non-contiguous ids
    return rewards, groups


def grid_in_x(rule, lo=0.0, hi=1.0, n=2001):
    """Points where g is evaluated: u in [lo, hi] for cdf rules, r = Phi^{-1}(u) otherwise."""
    u = np.linspace(lo, hi, n)
    if rule.law_argument == "cdf":
        return u
    return norm.ppf(np.clip(u, 1e-12, 1 - 1e-12))


# ---------------------------------------------------------------------------
# 1. Contract tests
# ---------------------------------------------------------------------------
def test_defaults_cover_registry():
    assert set(DEFAULTS) == set(REGISTRY)
    assert set(REGISTRY) == {"best_of_n", "top_k", "threshold", "rejection", "top_k_dedup"}


@pytest.mark.parametrize("name", NAMES)
def test_build_and_attributes(name):
    rule = make_rule(name)
    assert rule.name == name
    assert isinstance(rule, REGISTRY[name])
    assert rule.params == DEFAULTS[name]
    assert json.loads(json.dumps(rule.params)) == rule.params
    assert build(name, **rule.params).params == rule.params
    expected_size = {"best_of_n": "n", "top_k": "m", "top_k_dedup": "m"}
    if name in expected_size:
        assert rule.group_size == DEFAULTS[name][expected_size[name]]
        assert rule.law_argument == "cdf"
    else:
        assert rule.group_size is None
        assert rule.law_argument == "reward"
        assert rule.expected_acceptance() is None


@pytest.mark.parametrize("name", NAMES)
def test_select_returns_bool_mask(name):
    rule = make_rule(name)
    rewards, groups = make_batch(rule, np.random.default_rng(0))
    mask = rule.select(rewards, groups, generator=np.random.default_rng(1))
    assert isinstance(mask, np.ndarray) and mask.dtype == bool
    assert mask.shape == rewards.shape
    # works with plain lists and without a generator
    mask2 = rule.select(list(rewards), list(groups))
    assert mask2.dtype == bool and mask2.shape == rewards.shape


@pytest.mark.parametrize("name", NAMES)
def test_select_is_permutation_equivariant(name):
    rule = make_rule(name, DETERMINISTIC)
    rng = np.random.default_rng(2)
    rewards, groups = make_batch(rule, rng)
    mask = rule.select(rewards, groups, generator=np.random.default_rng(3))
    for _ in range(5):
        perm = rng.permutation(rewards.size)
        mask_p = rule.select(rewards[perm], groups[perm], generator=np.random.default_rng(4))
        np.testing.assert_array_equal(mask_p, mask[perm])
    # relabelling the group ids changes nothing
    relabel = {g: 1000 - 3 * i for i, g in enumerate(np.unique(groups))}
    groups_r = np.array([relabel[g] for g in groups])
    np.testing.assert_array_equal(rule.select(rewards, groups_r, np.random.default_rng(5)), mask)


@pytest.mark.parametrize("name", NAMES)
def test_select_is_local_to_groups(name):
    rule = make_rule(name, DETERMINISTIC)
    rewards, groups = make_batch(rule, np.random.default_rng(6))
    mask = rule.select(rewards, groups, generator=np.random.default_rng(7))
    for g in np.unique(groups):
        sel = groups == g
        alone = rule.select(rewards[sel], groups[sel], generator=np.random.default_rng(8))
        np.testing.assert_array_equal(alone, mask[sel])
        if name in ("top_k", "top_k_dedup"):
            assert alone.sum() == rule.params["k"]
        if name == "best_of_n":
            assert alone.sum() == 1 and np.argmax(rewards[sel]) == np.flatnonzero(alone)[0]


def test_rejection_deterministic_override_is_a_step():
    rule = make_rule("rejection", DETERMINISTIC)
    rewards, groups = make_batch(rule, np.random.default_rng(9))
    np.testing.assert_array_equal(rule.select(rewards, groups), rewards >= 0.0)


def test_rejection_generator_reproducible():
    rule = make_rule("rejection")
    rewards, groups = make_batch(rule, np.random.default_rng(10), n_groups=50)
    a = rule.select(rewards, groups, generator=np.random.default_rng(11))
    b = rule.select(rewards, groups, generator=np.random.default_rng(11))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="generator"):
        rule.select(rewards, groups, generator=np.random.RandomState(0))


@pytest.mark.parametrize("name", NAMES)
def test_empty_input(name):
    rule = make_rule(name)
    mask = rule.select(np.array([]), np.array([], dtype=int))
    assert mask.dtype == bool and mask.shape == (0,)
    assert rule.select([], []).shape == (0,)


@pytest.mark.parametrize("name", NAMES)
def test_nan_and_inf_raise(name):
    rule = make_rule(name)
    rewards, groups = make_batch(rule, np.random.default_rng(12))
    bad = rewards.copy()
    bad[[0, 3]] = np.nan
    with pytest.raises(ValueError, match="2 NaN"):
        rule.select(bad, groups)
    bad = rewards.copy()
    bad[1] = np.inf
    bad[2] = -np.inf
    bad[4] = np.inf
    with pytest.raises(ValueError, match="3 inf"):
        rule.select(bad, groups)


@pytest.mark.parametrize("name", NAMES)
def test_bad_shapes_raise(name):
    rule = make_rule(name)
    rewards, groups = make_batch(rule, np.random.default_rng(13))
    with pytest.raises(ValueError, match="different lengths"):
        rule.select(rewards, groups[:-1])
    with pytest.raises(ValueError, match="1-D"):
        rule.select(rewards.reshape(-1, 1), groups)
    with pytest.raises(ValueError, match="integer"):
        rule.select(rewards, groups.astype(float))
    if name == "top_k_dedup":
        with pytest.raises(ValueError, match="keys"):
            rule.select(rewards, groups, keys=list(range(rewards.size - 1)))


@pytest.mark.parametrize("name", [n for n in NAMES if n in ("best_of_n", "top_k", "top_k_dedup")])
def test_wrong_group_size_raises(name):
    rule = make_rule(name)
    size = rule.group_size
    rewards = np.arange(3 * size - 2, dtype=float)
    groups = np.concatenate([np.full(size, 0), np.full(size, 5), np.full(size - 2, 42)])
    with pytest.raises(ValueError, match=f"group 42 has {size - 2}"):
        rule.select(rewards, groups)


@pytest.mark.parametrize("name", NAMES)
def test_acceptance_probability_range_and_monotone(name):
    rule = make_rule(name)
    x = grid_in_x(rule)
    g = rule.acceptance_probability(x)
    assert g.shape == x.shape and g.dtype == np.float64
    assert np.all((g >= 0) & (g <= 1))
    assert np.all(np.diff(g) >= -1e-12)
    assert np.ndim(rule.acceptance_probability(0.5)) == 0
    with pytest.raises(ValueError, match="NaN"):
        rule.acceptance_probability([0.5, np.nan])
    if rule.law_argument == "cdf":
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            rule.acceptance_probability([-0.1, 0.5])
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            rule.acceptance_probability(1.5)


def test_closed_form_edge_cases():
    u = np.linspace(0, 1, 11)
    np.testing.assert_array_equal(build("best_of_n", n=1).acceptance_probability(u), np.ones(11))
    np.testing.assert_array_equal(build("top_k", m=5, k=5).acceptance_probability(u), np.ones(11))
    np.testing.assert_allclose(build("top_k", m=5, k=1).acceptance_probability(u), u**4)
    np.testing.assert_allclose(build("best_of_n", n=3).acceptance_probability(u), u**2)
    assert build("top_k", m=8, k=2).expected_acceptance() == 0.25
    assert build("best_of_n", n=4).expected_acceptance() == 0.25
    th = build("threshold", tau=0.5)
    np.testing.assert_array_equal(th.acceptance_probability([0.4, 0.5, 0.6]), [0.0, 1.0, 1.0])
    rj = build("rejection", alpha=2.0, r_max=1.0)
    np.testing.assert_allclose(rj.acceptance_probability([-1.0, 1.0, 1e6]), [math.exp(-1), 1, 1])


def test_ties_broken_by_index():
    groups = np.zeros(6, dtype=int)
    rewards = np.array([1.0, 2.0, 2.0, 2.0, 0.0, 2.0])
    np.testing.assert_array_equal(
        build("top_k", m=6, k=2).select(rewards, groups), [0, 1, 1, 0, 0, 0]
    )
    np.testing.assert_array_equal(
        build("best_of_n", n=6).select(rewards, groups), [0, 1, 0, 0, 0, 0]
    )
    assert build("top_k", m=6, k=3).select(np.ones(6), groups).tolist() == [1, 1, 1, 0, 0, 0]


# ---------------------------------------------------------------------------
# 2. Monte Carlo oracles (docs/METHOD.md §1: closed forms of g)
# ---------------------------------------------------------------------------
def simulate(rule, seed, keys="none"):
    """Draw i.i.d. rewards from the base law, apply the rule; return (u, rewards, keep)."""
    rng = np.random.default_rng(seed)
    size = rule.group_size or 8
    n = (N_SAMPLES // size) * size
    groups = np.repeat(np.arange(n // size), size)
    if rule.law_argument == "cdf":
        rewards = rng.random(n)  # Uniform(0, 1): u = F(r) = r
        u = rewards
    else:
        rewards = rng.normal(size=n)  # N(0, 1): u = Phi(r)
        u = norm.cdf(rewards)
    key_arg = np.arange(n) if keys == "distinct" else None
    keep = rule.select(rewards, groups, generator=rng, keys=key_arg)
    return u, rewards, keep


def binned_rate(u, keep):
    b = np.minimum((u * N_BINS).astype(int), N_BINS - 1)
    return np.bincount(b, weights=keep, minlength=N_BINS) / np.bincount(b, minlength=N_BINS)


def binned_law(rule, law=None):
    """Average of g over each u-bin (u uniform within the bin), on a fine grid."""
    law = law or rule.acceptance_probability
    out = np.empty(N_BINS)
    for b in range(N_BINS):
        x = grid_in_x(rule, b / N_BINS, (b + 1) / N_BINS, 402)[1:-1]
        out[b] = np.mean(law(x))
    return out


ORACLE_CASES = [
    ("best_of_n", {"n": 4}, "none"),
    ("best_of_n", {"n": 2}, "none"),
    ("top_k", {"m": 8, "k": 2}, "none"),
    ("top_k", {"m": 4, "k": 3}, "none"),
    ("top_k_dedup", {"m": 8, "k": 2}, "distinct"),
    ("top_k_dedup", {"m": 8, "k": 3}, "none"),
    ("threshold", {"tau": 0.3}, "none"),
    ("rejection", {"alpha": 0.5, "r_max": 1.0}, "none"),
    ("rejection", {"alpha": 2.0, "r_max": 4.0}, "none"),
]


def test_oracle_cases_cover_registry():
    assert {c[0] for c in ORACLE_CASES} == set(REGISTRY)


@pytest.mark.parametrize("name,params,keys", ORACLE_CASES)
def test_mc_acceptance_matches_closed_form(name, params, keys):
    rule = build(name, **params)
    u, rewards, keep = simulate(rule, seed=100, keys=keys)
    dev = np.abs(binned_rate(u, keep) - binned_law(rule))
    assert dev.max() < MC_TOL, f"{rule}: max |MC - g| = {dev.max():.4f} (bins {np.round(dev, 3)})"
    # overall rate against E[g]
    expected = rule.expected_acceptance()
    if expected is None:  # reward rules: E[g] under N(0, 1) by quadrature
        expected = integrate.quad(
            lambda r: norm.pdf(r) * float(rule.acceptance_probability(r)), -12, 12, points=[
                rule.params.get("tau", rule.params.get("r_max", 0.0))]
        )[0]
        assert abs(keep.mean() - expected) < 0.005
    else:
        assert keep.mean() == pytest.approx(expected, abs=1e-12)


def test_negative_control_top_k_wrong_laws_fail():
    """The MC curve of top_k(8, 2) matches I_u(6, 2) and clearly not the naive wrong laws."""
    m, k = 8, 2
    rule = build("top_k", m=m, k=k)
    u, _, keep = simulate(rule, seed=200)
    rate = binned_rate(u, keep)
    assert np.abs(rate - binned_law(rule)).max() < MC_TOL
    for wrong in (lambda x: x ** (m - k), lambda x: betainc(k, m - k, x)):
        assert np.abs(rate - binned_law(rule, wrong)).max() > 5 * MC_TOL
    # and the binned comparison is sharp enough to separate neighbouring parameters
    assert np.abs(rate - binned_law(build("top_k", m=m, k=k + 1))).max() > 5 * MC_TOL


@pytest.mark.parametrize("name,params", [("top_k", {"m": 8, "k": 2}), ("rejection", {"alpha": 0.5, "r_max": 1.0})])
def test_accepted_histogram_matches_tilt(name, params):
    """Accepted samples have law p̄·g/E[g] (docs/METHOD.md §1): compare bin masses in u."""
    rule = build(name, **params)
    u, _, keep = simulate(rule, seed=300)
    b = np.minimum((u[keep] * N_BINS).astype(int), N_BINS - 1)
    mc_mass = np.bincount(b, minlength=N_BINS) / keep.sum()
    law = binned_law(rule)  # E[g | u in bin]; each bin has base mass 1/N_BINS
    tilt_mass = law / law.sum()
    assert np.abs(mc_mass - tilt_mass).max() < MASS_TOL
    # sanity: the tilt is far from the base (uniform masses)
    assert np.abs(tilt_mass - 1 / N_BINS).max() > 5 * MASS_TOL


# ---------------------------------------------------------------------------
# 3. Bad parameters
# ---------------------------------------------------------------------------
def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as exc:
        build("best_of_m", n=4)
    msg = str(exc.value)
    assert "best_of_m" in msg
    for name in REGISTRY:
        assert name in msg


BAD_PARAMS = [
    ("top_k", {"m": 4, "k": 5}, "k", "5"),
    ("top_k", {"m": 4, "k": 0}, "k", "0"),
    ("top_k", {"m": 0, "k": 0}, "m", "0"),
    ("top_k_dedup", {"m": 4, "k": 6}, "k", "6"),
    ("top_k", {"m": 8, "k": 2.0}, "k", "2.0"),
    ("best_of_n", {"n": 0}, "n", "0"),
    ("best_of_n", {"n": -3}, "n", "-3"),
    ("best_of_n", {"n": 2.5}, "n", "2.5"),
    ("best_of_n", {"n": True}, "n", "True"),
    ("best_of_n", {"n": "4"}, "n", "'4'"),
    ("rejection", {"alpha": 0, "r_max": 1.0}, "alpha", "0"),
    ("rejection", {"alpha": -1, "r_max": 1.0}, "alpha", "-1"),
    ("rejection", {"alpha": 1.0, "r_max": float("inf")}, "r_max", "inf"),
    ("rejection", {"alpha": float("nan"), "r_max": 1.0}, "alpha", "nan"),
    ("threshold", {"tau": float("nan")}, "tau", "nan"),
    ("threshold", {"tau": False}, "tau", "False"),
    ("top_k", {"m": 8}, "k", None),  # missing
    ("rejection", {"alpha": 1.0}, "r_max", None),  # missing
    ("best_of_n", {"n": 4, "beta": 2}, "beta", "2"),  # unknown extra
]


@pytest.mark.parametrize("name,params,pname,value", BAD_PARAMS)
def test_bad_params_raise(name, params, pname, value):
    with pytest.raises(ValueError) as exc:
        build(name, **params)
    msg = str(exc.value)
    assert name in msg and pname in msg, msg
    if value is not None:
        assert value in msg, msg


def test_valid_numeric_types_accepted():
    assert build("rejection", alpha=1, r_max=0).params == {"alpha": 1.0, "r_max": 0.0}
    assert isinstance(build("threshold", tau=np.float32(0.5)).params["tau"], float)
    assert build("top_k", m=np.int64(8), k=2).params == {"m": 8, "k": 2}
    assert type(build("top_k", m=np.int64(8), k=2).params["m"]) is int


# ---------------------------------------------------------------------------
# 4. top_k_dedup
# ---------------------------------------------------------------------------
def test_dedup_keeps_distinct_keys_only():
    rule = build("top_k_dedup", m=6, k=3)
    rewards = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    groups = np.zeros(6, dtype=int)
    keys = ["CCO", "CCO", "c1ccccc1", "c1ccccc1", "CN", "CC"]
    np.testing.assert_array_equal(rule.select(rewards, groups, keys=keys), [1, 0, 1, 0, 1, 0])
    # shuffled within the group: the best of each key is kept
    perm = np.array([3, 5, 0, 4, 1, 2])
    mask_p = rule.select(rewards[perm], groups, keys=[keys[i] for i in perm])
    np.testing.assert_array_equal(mask_p, np.array([1, 0, 1, 0, 1, 0], bool)[perm])


def test_dedup_few_distinct_keys_keeps_fewer_than_k():
    rule = build("top_k_dedup", m=5, k=3)
    rewards = np.array([0.1, 0.9, 0.5, 0.7, 0.3])
    groups = np.zeros(5, dtype=int)
    np.testing.assert_array_equal(rule.select(rewards, groups, keys=["a"] * 5), [0, 1, 0, 0, 0])
    mask = rule.select(rewards, groups, keys=["a", "a", "b", "a", "b"])
    np.testing.assert_array_equal(mask, [0, 1, 1, 0, 0])


def test_dedup_is_per_group():
    rule = build("top_k_dedup", m=3, k=2)
    rewards = np.array([3.0, 2.0, 1.0, 1.0, 2.0, 3.0])
    groups = np.array([0, 0, 0, 9, 9, 9])
    keys = ["x", "x", "y", "y", "x", "x"]
    np.testing.assert_array_equal(rule.select(rewards, groups, keys=keys), [1, 0, 1, 1, 0, 1])


def test_dedup_distinct_keys_equals_top_k():
    rng = np.random.default_rng(400)
    m, k, n_groups = 8, 3, 200
    rewards = rng.normal(size=m * n_groups)
    groups = np.repeat(rng.permutation(n_groups), m)
    top_k = build("top_k", m=m, k=k).select(rewards, groups)
    dedup = build("top_k_dedup", m=m, k=k)
    keys = [f"mol{i}" for i in rng.permutation(rewards.size)]
    np.testing.assert_array_equal(dedup.select(rewards, groups, keys=keys), top_k)
    np.testing.assert_array_equal(dedup.select(rewards, groups), top_k)
    # keys repeated across groups but distinct within each group: still top_k
    keys_local = [i % m for i in range(rewards.size)]
    np.testing.assert_array_equal(dedup.select(rewards, groups, keys=keys_local), top_k)


def test_dedup_random_against_reference_loop():
    rng = np.random.default_rng(500)
    m, k, n_groups = 6, 3, 300
    rewards = rng.normal(size=m * n_groups)
    groups = rng.permutation(np.repeat(np.arange(n_groups), m))
    keys = [("k", int(v)) for v in rng.integers(0, 4, size=rewards.size)]
    mask = build("top_k_dedup", m=m, k=k).select(rewards, groups, keys=keys)
    ref = np.zeros(rewards.size, bool)
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        seen = set()
        for i in idx[np.argsort(-rewards[idx], kind="stable")]:
            if keys[i] not in seen and len(seen) < k:
                seen.add(keys[i])
                ref[i] = True
    np.testing.assert_array_equal(mask, ref)
    with pytest.raises(ValueError, match="hashable"):
        build("top_k_dedup", m=m, k=k).select(rewards, groups, keys=[[1]] * rewards.size)
