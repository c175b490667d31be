"""The parameter models shared by config.py and the domains' own sections (strict, frozen pydantic models)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    """Unknown keys are rejected, values are not coerced (a "20" is not 20), and validated params are frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SamplerParams(Strict):
    name: Literal["ddim", "ddpm"] = "ddim"
    num_steps: int = Field(20, ge=1, le=1000)
    eta: float = Field(1.0, ge=0.0, le=1.0)
    num_train_timesteps: int = Field(1000, ge=2)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"


class FilterParams(Strict):
    name: str = "top_k"
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _buildable(self) -> "FilterParams":
        from pgraft import filters

        filters.build(self.name, **self.params)  # raises ValueError naming the bad parameter
        return self


class FinetuneParams(Strict):
    budgets: list[int] = Field(default_factory=lambda: [100, 300, 1000], min_length=1)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    warmup_steps: int = Field(0, ge=0)  # linear learning-rate warm-up from 0 over this many optimizer steps
    batch_size: int = Field(256, ge=1)
    rounds: int = Field(1, ge=1, le=100)
    #: rounds > 1: false, one run of `rounds` rounds per budget (budget // rounds steps each); true, one run of
    #: `rounds` rounds of budgets[-1] // rounds steps, each budget a checkpoint at the end of a round
    round_checkpoints: bool = False
    target: Literal["intermediate", "x0"] = "intermediate"
    timesteps: Literal["sampler", "window"] = "sampler"
    checkpoint_every: int = Field(100, ge=0)

    @field_validator("budgets")
    @classmethod
    def _positive_unique(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v) or len(set(v)) != len(v) or v != sorted(v):
            raise ValueError("must be distinct positive step counts in increasing order")
        return v

    @model_validator(mode="after")
    def _round_ends(self) -> "FinetuneParams":
        per_round = self.budgets[-1] // self.rounds
        if self.round_checkpoints and (self.budgets[-1] % self.rounds or any(b % per_round for b in self.budgets)):
            raise ValueError(f"round_checkpoints: every budget {self.budgets} must end a round: a multiple of "
                             f"budgets[-1] / rounds = {self.budgets[-1]} / {self.rounds}")
        return self

    def rounds_at(self, budget: int) -> int:
        """GRAFT rounds (each sampling and scoring one pool) behind the checkpoint of `budget`."""
        return budget // (self.budgets[-1] // self.rounds) if self.round_checkpoints else self.rounds


class PretrainParams(Strict):
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(512, ge=1)
    learning_rate: float = Field(2e-3, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0)


class FeatureNetParams(Strict):
    steps: int = Field(500, ge=1)
