"""The evaluate stage's result: the reference rewards and the metrics of each budget, and its JSON form."""

from __future__ import annotations

from dataclasses import dataclass, field

from pgraft.errors import StageError


@dataclass
class Evaluation:
    """Evaluate's result: the exact target's and the base pool's mean reward, and the metrics of each budget.
    Its JSON form (evaluate.json) keeps one `b<budget>` entry per budget; `from_json` is the one place that reads
    it back."""

    target_reward_mean: float | None
    base_reward_mean: float | None
    budgets: dict[int, dict] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)  # carried along (the fine-tuning loss history)

    def to_json(self) -> dict:
        return {"target_reward_mean": self.target_reward_mean, "base_reward_mean": self.base_reward_mean,
                **{_key(b): row for b, row in self.budgets.items()}, **self.extra}

    @classmethod
    def from_json(cls, data: dict) -> "Evaluation":
        budgets = {int(k[1:]): v for k, v in data.items() if _is_budget(k)}
        extra = {k: v for k, v in data.items() if k not in ("target_reward_mean", "base_reward_mean")
                 and not _is_budget(k)}
        # a file without the reference means fails where they are read, after its budgets (at) were checked
        return cls(data.get("target_reward_mean"), data.get("base_reward_mean"), budgets, extra)

    def at(self, budget: int, source, what: str = "budget", stage: str = "evaluate") -> dict:
        """The metrics of one budget; a StageError naming `source` when the evaluation lacks it."""
        if budget not in self.budgets:
            raise StageError(f"{source} has no {what} {budget}; rerun {stage}")
        return self.budgets[budget]


def _key(budget) -> str:
    return f"b{budget}"


def _is_budget(key: str) -> bool:
    return key[:1] == "b" and key[1:].isdigit()
