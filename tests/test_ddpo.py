"""DDPO: the stochastic DDIM step's log-probability, per-prompt advantages and the PPO update's direction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgraft.config import DdpoParams, SamplerParams, StatTrackingParams
from pgraft.finetune import ddpo
from pgraft.finetune.ddpo import PerPromptStatTracker, advantages, ppo_update, sample_trajectories
from pgraft.models.mlp import MLPDenoiser
from pgraft.samplers.ddim_logprob import ddim_step_with_logprob, previous_timestep
from pgraft.samplers.schedule import build_schedule


@pytest.mark.parametrize("eta", [0.3, 1.0])
def test_logprob_is_the_gaussian_density_of_diffusers_ddim_step(eta):
    schedule = build_schedule(SamplerParams(name="ddim", num_steps=10, eta=eta))
    g = torch.Generator().manual_seed(0)
    x_t, eps, noise = (torch.randn(6, 3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    for t in schedule.timesteps[[0, 5, 8]]:
        t = int(t)
        # diffusers' own step with a given noise: x_prev = μ + σ·noise
        x_prev = schedule.scheduler.step(eps, t, x_t, eta=eta, variance_noise=noise).prev_sample
        mean = schedule.scheduler.step(eps, t, x_t, eta=eta, variance_noise=torch.zeros_like(noise)).prev_sample
        t_prev = previous_timestep(schedule, t)
        std = eta * schedule.scheduler._get_variance(t, t_prev).double().sqrt()
        direct = torch.distributions.Normal(mean, std).log_prob(x_prev).flatten(1).mean(1)
        _, lp = ddim_step_with_logprob(schedule, eps, t, x_t, eta, prev_sample=x_prev)
        assert torch.allclose(lp, direct, atol=1e-5, rtol=1e-5), (lp - direct).abs().max()  # float32 ᾱ
        drawn, _ = ddim_step_with_logprob(schedule, eps, t, x_t, eta, generator=torch.Generator().manual_seed(1))
        same_noise = torch.randn(noise.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        assert torch.allclose(drawn, schedule.scheduler.step(eps, t, x_t, eta=eta, variance_noise=same_noise).prev_sample,
                              atol=1e-5)


def test_the_last_step_is_deterministic_when_the_final_alpha_is_one():
    schedule = build_schedule(SamplerParams(name="ddim", num_steps=4, eta=1.0))
    x_t, eps = torch.randn(3, 2), torch.randn(3, 2)
    t = int(schedule.timesteps[-1])
    x_prev, lp = ddim_step_with_logprob(schedule, eps, t, x_t, 1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(lp, torch.zeros(3))
    assert torch.allclose(x_prev, schedule.scheduler.step(eps, t, x_t, eta=1.0).prev_sample, atol=1e-6)


def test_deterministic_sampler_is_refused():
    schedule = build_schedule(SamplerParams(name="ddim", num_steps=4, eta=0.0))
    with pytest.raises(ValueError, match="eta"):
        ddim_step_with_logprob(schedule, torch.zeros(1, 2), int(schedule.timesteps[0]), torch.zeros(1, 2), 0.0)


def test_advantages_are_standardised_within_each_prompt():
    r = np.array([1.0, 2.0, 3.0, 10.0, 10.0, 40.0])
    groups = np.array([0, 0, 0, 1, 1, 1])
    a = advantages(r, groups, clip=5.0)
    for g in (0, 1):
        assert a[groups == g].mean() == pytest.approx(0.0, abs=1e-9)
        assert a[groups == g].std() == pytest.approx(1.0, rel=1e-6)
    assert np.abs(advantages(np.array([0.0, 0, 0, 0, 0, 100.0]), np.zeros(6, int), clip=1.0)).max() <= 1.0


def test_a_ppo_step_moves_the_policy_towards_higher_advantage():
    torch.manual_seed(0)
    schedule = build_schedule(SamplerParams(name="ddim", num_steps=5, eta=1.0))
    model = MLPDenoiser(dim=2, hidden=32, layers=1)
    g = torch.Generator().manual_seed(3)
    traj = sample_trajectories(model, schedule, torch.randn(32, 2, generator=g), None, 1.0, g)
    adv = torch.tensor([1.0, -1.0] * 16)

    def log_probs():
        out = []
        with torch.no_grad():
            for j, t in enumerate(schedule.timesteps):
                eps = model(traj.states[j], t.expand(32))
                out.append(ddim_step_with_logprob(schedule, eps, int(t), traj.states[j], 1.0,
                                                  prev_sample=traj.states[j + 1])[1])
        return torch.stack(out).sum(0)

    before = log_probs()
    assert torch.allclose(before, traj.log_probs.sum(0), atol=1e-5)  # the stored π_old is the model's own
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)  # a small step: first order
    stats = ppo_update(model, opt, schedule, traj, adv, 1.0, clip_range=10.0, minibatch_size=32, max_grad_norm=1e9,
                       generator=torch.Generator().manual_seed(0))
    change = log_probs() - before
    assert float((adv * change).sum()) > 0  # likelier where the advantage is positive, less likely elsewhere
    assert change[adv > 0].mean() > change[adv < 0].mean()
    assert stats["clip_fraction"] == 0.0


def test_per_prompt_stat_tracker_by_hand():
    """buffer_size 4, min_count 3: a prompt's own buffer once it holds 3 rewards (this iteration's included),
    else the whole batch; the buffer keeps the last 4."""
    tracker = PerPromptStatTracker(buffer_size=4, min_count=3)
    # iteration 1: neither buffer holds 3 rewards -> the batch [1, 3, 5]: mean 3, std sqrt(8/3)
    a = tracker.advantages(["a", "a", "b"], np.array([1.0, 3.0, 5.0]))
    np.testing.assert_allclose(a, np.array([-2.0, 0.0, 2.0]) / (np.sqrt(8 / 3) + 1e-6), rtol=1e-12)
    # iteration 2: a = [1, 3, 2, 6] (mean 3, std sqrt(3.5)), b = [5, 4, 0] (mean 3, std sqrt(14/3))
    a = tracker.advantages(["a", "b", "a", "b"], np.array([2.0, 4.0, 6.0, 0.0]))
    np.testing.assert_allclose(a, [-1 / (np.sqrt(3.5) + 1e-6), 1 / (np.sqrt(14 / 3) + 1e-6),
                                   3 / (np.sqrt(3.5) + 1e-6), -3 / (np.sqrt(14 / 3) + 1e-6)], rtol=1e-12)
    # iteration 3: a's buffer drops its oldest two: [2, 6, 10, 0], mean 4.5, std sqrt(14.75)
    a = tracker.advantages(["a", "a"], np.array([10.0, 0.0]))
    np.testing.assert_allclose(a, np.array([5.5, -4.5]) / (np.sqrt(14.75) + 1e-6), rtol=1e-12)
    assert list(tracker.buffers["a"]) == [2.0, 6.0, 10.0, 0.0] and list(tracker.buffers["b"]) == [5.0, 4.0, 0.0]


def test_stat_tracking_params():
    assert DdpoParams().stat_tracking == StatTrackingParams(buffer_size=32, min_count=16)
    assert StatTrackingParams(buffer_size=0, min_count=50).buffer_size == 0  # min_count unused without a buffer
    with pytest.raises(ValueError, match="exceeds buffer_size"):
        StatTrackingParams(buffer_size=8, min_count=16)


def _tiny_run(monkeypatch, buffer_size: int) -> tuple[list, list]:
    """Two DDPO iterations of a tiny unconditional MLP; returns each iteration's (rewards, groups, advantages
    given to PPO) and the prompts the tracker saw."""
    schedule = build_schedule(SamplerParams(name="ddim", num_steps=3, eta=1.0))
    torch.manual_seed(0)
    model = MLPDenoiser(dim=2, hidden=8, layers=1)
    cfg = DdpoParams(checkpoints=[8, 16], prompts_per_batch=2, samples_per_prompt=4, minibatch_size=8,
                     stat_tracking=StatTrackingParams(buffer_size=buffer_size, min_count=4))
    seen, tracked = [], []
    real_update, real_track = ddpo.ppo_update, PerPromptStatTracker.advantages
    monkeypatch.setattr(ddpo, "ppo_update", lambda *a, **k: (seen.append(a[4].clone()), real_update(*a, **k))[1])
    monkeypatch.setattr(PerPromptStatTracker, "advantages",
                        lambda self, keys, r: (tracked.append((list(keys), r.copy())), real_track(self, keys, r))[1])
    groups = np.repeat(np.arange(2), 4)
    prompts = lambda i: (["p0"] * 4 + [f"q{i}"] * 4, None, groups)  # noqa: E731
    ddpo.train_ddpo(model, schedule, (2,), lambda x, p: x[:, 0], prompts, cfg, 1.0, torch.Generator().manual_seed(1),
                    lambda e, m: None)
    return seen, tracked


def test_buffer_size_zero_is_the_batch_group_statistics(monkeypatch):
    """buffer_size 0: the advantages PPO gets are exactly `advantages(r, groups, clip)` of each batch (the
    behaviour before stat tracking), and no tracker is used."""
    calls = []
    real = ddpo.advantages
    monkeypatch.setattr(ddpo, "advantages", lambda r, g, c: (calls.append((r.copy(), g.copy(), c)), real(r, g, c))[1])
    seen, tracked = _tiny_run(monkeypatch, buffer_size=0)
    assert len(calls) == len(seen) == 2 and not tracked
    for (r, g, clip), adv in zip(calls, seen):
        assert clip == 5.0 and np.array_equal(g, np.repeat(np.arange(2), 4))
        assert torch.equal(adv, torch.as_tensor(real(r, g, clip), dtype=torch.float32))


def test_tracking_keys_advantages_by_prompt(monkeypatch):
    seen, tracked = _tiny_run(monkeypatch, buffer_size=8)
    assert [keys for keys, _ in tracked] == [["p0"] * 4 + ["q0"] * 4, ["p0"] * 4 + ["q1"] * 4]
    r1, r2 = tracked[0][1], tracked[1][1]
    p0 = np.concatenate([r1[:4], r2[:4]])  # "p0" came back: its buffer holds both iterations' rewards
    np.testing.assert_allclose(seen[1][:4].numpy(), np.clip((r2[:4] - p0.mean()) / (p0.std() + 1e-6), -5, 5),
                               rtol=1e-5)
    q1 = r2[4:]  # a new prompt with min_count = 4 rewards: its own statistics
    np.testing.assert_allclose(seen[1][4:].numpy(), np.clip((q1 - q1.mean()) / (q1.std() + 1e-6), -5, 5), rtol=1e-5)
