"""Contract tests over every registered domain, scheduler and distance (no per-implementation cases)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from pgraft import domains
from pgraft.domains.base import DiffusionDomain, Domain, FlowDomain
from pgraft.config import SamplerParams, parse_params
from pgraft.metrics.distances import DISTANCES
from pgraft.samplers.rollout import rollout
from pgraft.samplers.schedule import SCHEDULERS, build_schedule
from pgraft.stages.common import load_model, save_model


def _build(name, small_params):
    raw = dict(small_params)
    if domains.REGISTRY.get(name).kind == "diffusion" and name not in raw["domains"]:
        raw["domains"] = [*raw["domains"], name]
    return domains.build(name, parse_params(raw))


@pytest.fixture(params=domains.REGISTRY.names())
def domain(request, small_params):
    return _build(request.param, small_params)


@pytest.fixture(params=[n for n in domains.REGISTRY.names() if domains.REGISTRY.get(n).conditional])
def conditional_domain(request, small_params):
    return _build(request.param, small_params)


@pytest.fixture(params=[n for n in domains.REGISTRY.names() if domains.REGISTRY.get(n).gallery_size])
def gallery_domain(request, small_params):
    return _build(request.param, small_params)


def _data(domain, n, seed):
    """(x, extra model inputs, prompts or None) of n training examples."""
    data = domain.sample_data(n, torch.Generator().manual_seed(seed))
    if not domain.conditional:
        return data, (), None
    x, prompts = data
    assert len(prompts) == n and all(isinstance(p, str) for p in prompts)
    return x, (torch.as_tensor(domain.tokens(prompts)),), list(prompts)


def test_domain_data_model_reward(domain, tmp_path):
    x, extra, prompts = _data(domain, 64, 0)
    assert x.shape == (64, *domain.shape) and x.dtype == torch.float32
    model = domain.build_model().eval()
    eps = model(x, torch.full((64,), 10), *extra)
    assert eps.shape == x.shape
    aux = domain.train_auxiliary(tmp_path / "auxiliary", torch.Generator().manual_seed(0))
    assert all(np.isfinite(v) for v in aux.values())
    domain.load_auxiliary(tmp_path / "auxiliary")
    r = np.asarray(domain.reward(x.numpy(), prompts))
    assert r.shape == (64,) and np.isfinite(r).all()
    if domain.kind == "diffusion":
        keys = domain.dedup_keys(x.numpy())
        assert keys is None or len(keys) == 64
    assert all(np.isfinite(v) for v in domain.extra_metrics(x.numpy(), prompts).values())


@pytest.mark.parametrize("name", domains.REGISTRY.names())
def test_domain_follows_the_protocol(name):
    cls = domains.REGISTRY.get(name)
    assert cls.name == name and issubclass(cls, {"diffusion": DiffusionDomain, "flow": FlowDomain}[cls.kind])
    assert "properties" in cls.Params.model_json_schema()
    for hook in ("reward", "extra_metrics", "draw"):  # one signature for every domain: cond=None last
        expected = list(inspect.signature(getattr(Domain, hook)).parameters)
        assert list(inspect.signature(getattr(cls, hook)).parameters)[:len(expected)] == expected, hook


def test_domain_prompts_are_split(conditional_domain):
    domain = conditional_domain
    train, held = domain.prompts("train"), domain.prompts("heldout")
    assert train and held and not set(train) & set(held)
    tokens = domain.tokens(train)
    assert tokens.shape[0] == len(train) and tokens.dtype == np.int64
    assert len({tuple(t) for t in tokens}) == len(train)  # distinct prompts, distinct token rows


def test_domain_gallery_draws(gallery_domain):
    domain = gallery_domain
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, _, prompts = _data(domain, 4, 2)
    fig, ax = plt.subplots()
    domain.draw(ax, x.numpy(), prompts)
    plt.close(fig)


def test_domain_model_round_trips_through_safetensors(domain, tmp_path):
    model = domain.build_model().eval()
    save_model(tmp_path, model, domain.name)
    again = load_model(tmp_path, domain)
    x, extra, _ = _data(domain, 8, 1)
    t = torch.full((8,), 3)
    assert torch.equal(model(x, t, *extra), again(x, t, *extra))
    assert not list(tmp_path.glob("*.pt")) and not list(tmp_path.glob("*.pkl"))


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_scheduler_runs_a_rollout(name):
    schedule = build_schedule(SamplerParams(name=name, num_steps=5))
    assert len(schedule.timesteps) == 5 and list(schedule.timesteps) == sorted(schedule.timesteps, reverse=True)
    assert schedule.level_after(5) == (-1, 1.0)
    model = torch.nn.Module()
    model.forward = lambda x, t: torch.zeros_like(x)
    x0, kept = rollout(lambda i: model, schedule, torch.randn(16, 2), torch.Generator().manual_seed(0), keep=[0, 5])
    assert torch.isfinite(x0).all() and set(kept) == {0, 5}


@pytest.mark.parametrize("name", DISTANCES.names())
def test_every_distance_separates_laws(name):
    rng = np.random.default_rng(0)
    x, same, other = rng.normal(size=(800, 2)), rng.normal(size=(800, 2)), rng.normal(2.0, 1.0, size=(800, 2))
    fn = DISTANCES.get(name)
    assert fn(x, same) < 0.1 * fn(x, other)
    w = np.ones(len(other))
    assert fn(x, other, w) == pytest.approx(fn(x, other), rel=1e-6)


def test_unknown_registry_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="gaussian"):
        domains.REGISTRY.get("nope")
