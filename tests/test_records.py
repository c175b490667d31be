"""The evaluate stage's typed result and its JSON form (evaluate.json): one place writes and reads it."""

from __future__ import annotations

import pytest

from pgraft.errors import StageError
from pgraft.metrics.records import Evaluation


def test_the_json_form_round_trips_in_order():
    data = {"target_reward_mean": 0.5, "base_reward_mean": 0.25, "b20": {"reward_mean": 0.3},
            "b100": {"reward_mean": 0.4}, "loss_history": {"train_loss": [[1, 0.2]]}}
    result = Evaluation.from_json(data)
    assert result.budgets == {20: {"reward_mean": 0.3}, 100: {"reward_mean": 0.4}}
    assert result.extra == {"loss_history": {"train_loss": [[1, 0.2]]}}
    assert list(result.to_json().items()) == list(data.items())


def test_a_missing_budget_names_the_file_and_the_stage_to_rerun():
    result = Evaluation(0.5, 0.25, {20: {}})
    assert result.at(20, "e.json") == {}
    with pytest.raises(StageError, match=r"e.json has no budget 500; rerun evaluate"):
        result.at(500, "e.json")
    with pytest.raises(StageError, match=r"has no checkpoint 7; rerun evaluate_ddpo"):
        result.at(7, "e.json", "checkpoint", "evaluate_ddpo")
