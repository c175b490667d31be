"""finetune.round_checkpoints: one multi-round GRAFT run saving a checkpoint at the end of chosen rounds."""

from __future__ import annotations

import copy

import pytest
import torch

from pgraft.params_base import FinetuneParams


def test_round_checkpoints_params():
    ft = FinetuneParams(budgets=[250, 500, 1000, 2000], rounds=8, round_checkpoints=True)
    assert [ft.rounds_at(b) for b in ft.budgets] == [1, 2, 4, 8]
    assert [FinetuneParams(budgets=[250, 500], rounds=2).rounds_at(b) for b in (250, 500)] == [2, 2]
    with pytest.raises(ValueError, match="must end a round"):
        FinetuneParams(budgets=[100, 300], rounds=2, round_checkpoints=True)  # 100 is not a multiple of 150


def test_a_round_checkpoint_is_the_model_after_that_round(real_params):
    """Budgets [3, 6] over 2 rounds in one run: b6 is the separate 2-round run of budget 6 (same generator, 3
    steps a round), and b3 is that run's model after its first round."""
    from pgraft import domains
    from pgraft.config import parse_params
    from pgraft.samplers.levels import NoiseLevels
    from pgraft.stages.common import build_rule
    from pgraft.workflows.context import RunContext
    from pgraft.workflows.finetuning import finetune_rounds

    from pipeline_helpers import shrink

    params = parse_params(shrink(real_params))
    domain = domains.build("gaussian", params)
    torch.manual_seed(0)
    base = domain.build_model().eval()
    schedule = domain.schedule(params.sampler)
    levels = NoiseLevels(schedule.timesteps.long(), schedule.alphas_cumprod.float())
    data = torch.randn(64, 2)
    n = params.sampler.num_steps

    def run(**ft):
        saved = {}
        ft = params.finetune.model_copy(update=dict(rounds=2, batch_size=8, **ft))
        ctx = RunContext(domain, base, schedule, build_rule(params, "gaussian"), 0, n, params.sample.batch_size)
        finetune_rounds(ctx, data, None, levels, ft, num_groups=params.sample.num_groups,
                        group_size=params.group_size("gaussian"), state_key="x0",
                        save=lambda name, m: saved.update({name: copy.deepcopy(m.state_dict())}))
        return saved

    nested, separate = run(budgets=[3, 6], round_checkpoints=True), run(budgets=[6])
    assert list(nested) == ["b3", "b6"] and list(separate) == ["b6"]
    assert all(torch.equal(nested["b6"][key], separate["b6"][key]) for key in nested["b6"])
    assert not all(torch.equal(nested["b3"][key], nested["b6"][key]) for key in nested["b3"])
