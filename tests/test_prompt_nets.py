"""The prompt-conditioned networks encode a sampling batch's prompts once, with the same numbers as every step."""

from __future__ import annotations

import torch

from pgraft.models.prompt_nets import PromptMLP
from pgraft.params_base import SamplerParams
from pgraft.samplers.rollout import sample_in_batches
from pgraft.samplers.schedule import build_schedule


def _draw(model, tokens):
    schedule = build_schedule(SamplerParams(num_steps=5))
    x, _ = sample_in_batches(lambda i: model, schedule, len(tokens), (1, 4, 4), torch.Generator().manual_seed(0), 8,
                             cond=tokens)
    return x


def test_a_rollout_encodes_its_prompts_once_with_unchanged_samples(monkeypatch):
    torch.manual_seed(0)
    model = PromptMLP([1, 4, 4], vocab_size=12, max_tokens=5, text_dim=16, hidden=32, layers=1).eval()
    tokens = torch.randint(1, 12, (20, 5))
    calls = []
    forward = type(model.text).forward
    monkeypatch.setattr(type(model.text), "forward", lambda self, t: calls.append(1) or forward(self, t))
    cached = _draw(model, tokens)
    assert len(calls) == 3  # one encoder pass per batch (20 samples in batches of 8), not one per step
    monkeypatch.setattr(type(model.text), "encode", lambda self, t: self(t))  # every step encodes again
    assert torch.equal(cached, _draw(model, tokens))


def test_an_optimizer_step_or_gradients_bypass_the_kept_states():
    torch.manual_seed(0)
    model = PromptMLP([1, 4, 4], vocab_size=12, max_tokens=5, text_dim=16, hidden=32, layers=1)
    tokens = torch.randint(1, 12, (4, 5))
    with torch.no_grad():
        before = model.text.encode(tokens).clone()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model.text(tokens).square().mean().backward()  # with gradients: computed, never kept
    opt.step()
    with torch.no_grad():
        after = model.text.encode(tokens)
        assert not torch.equal(before, after) and torch.equal(after, model.text(tokens))
