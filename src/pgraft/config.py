"""Typed experiment parameters loaded once from params.yaml; every bad key or value is rejected here."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SAMPLERS = ("ddim", "ddpm")
TARGETS = ("intermediate", "x0")


class ConfigError(ValueError):
    """params.yaml is invalid; the message names every bad key, its value and what is allowed."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SamplerParams(_Strict):
    name: Literal["ddim", "ddpm"] = "ddim"
    num_steps: int = Field(20, ge=1, le=1000)
    eta: float = Field(1.0, ge=0.0, le=1.0)
    num_train_timesteps: int = Field(1000, ge=2)
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"


class FilterParams(_Strict):
    name: str = "top_k"
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _buildable(self) -> "FilterParams":
        from pgraft import filters

        filters.build(self.name, **self.params)  # raises ValueError naming the bad parameter
        return self


class SampleParams(_Strict):
    num_groups: int = Field(256, ge=1)
    group_size: int = Field(16, ge=1)
    reference_size: int = Field(8000, ge=100)
    batch_size: int = Field(4096, ge=1)


class FinetuneParams(_Strict):
    budgets: list[int] = Field(default_factory=lambda: [100, 300, 1000], min_length=1)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    batch_size: int = Field(256, ge=1)
    rounds: int = Field(1, ge=1, le=100)
    target: Literal["intermediate", "x0"] = "intermediate"
    timesteps: Literal["sampler", "window"] = "sampler"
    checkpoint_every: int = Field(100, ge=0)

    @field_validator("budgets")
    @classmethod
    def _positive_unique(cls, v: list[int]) -> list[int]:
        if any(b < 1 for b in v) or len(set(v)) != len(v) or v != sorted(v):
            raise ValueError("must be distinct positive step counts in increasing order")
        return v


class EvaluateParams(_Strict):
    num_samples: int = Field(2000, ge=10)
    distance: Literal["energy", "sliced_wasserstein"] = "energy"


class TrackingParams(_Strict):
    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    experiment: str = Field("pgraft", min_length=1)
    sync_each_stage: bool = False


class GaussianMixtureParams(_Strict):
    num_modes: int = Field(8, ge=1, le=64)
    radius: float = Field(4.0, gt=0.0)
    std: float = Field(0.5, gt=0.0)


class GaussianRewardParams(_Strict):
    name: Literal["linear", "mode_preference"] = "linear"
    direction: list[float] = Field(default_factory=lambda: [1.0, 0.0], min_length=2, max_length=2)
    temperature: float = Field(1.0, gt=0.0)


class ModelParams(_Strict):
    hidden: int = Field(128, ge=4)
    layers: int = Field(3, ge=1, le=16)


class PretrainParams(_Strict):
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(512, ge=1)
    learning_rate: float = Field(2e-3, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0)


class GaussianParams(_Strict):
    mixture: GaussianMixtureParams = GaussianMixtureParams()
    reward: GaussianRewardParams = GaussianRewardParams()
    model: ModelParams = ModelParams()
    pretrain: PretrainParams = PretrainParams()


class FlowDataParams(_Strict):
    path: str | None = None
    image_size: int = Field(8, ge=4, le=1024)
    channels: Literal[1, 3] = 1
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0)


class FlowModelParams(_Strict):
    block_out_channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    layers_per_block: int = Field(1, ge=1)
    checkpoint: str | None = None


class FeatureNetParams(_Strict):
    steps: int = Field(500, ge=1)


class DigitsFlowParams(_Strict):
    data: FlowDataParams = FlowDataParams()
    model: FlowModelParams = FlowModelParams()
    pretrain: PretrainParams = PretrainParams(steps=1000, batch_size=64, learning_rate=1e-3)
    features: FeatureNetParams = FeatureNetParams()


class Qm9DataParams(_Strict):
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0)


class Qm9ModelParams(_Strict):
    name: Literal["transformer", "mlp"] = "mlp"
    hidden: int = Field(384, ge=4)
    layers: int = Field(4, ge=1, le=16)
    pair_hidden: int = Field(32, ge=4)
    heads: int = Field(4, ge=1)


class Qm9RewardWeights(_Strict):
    validity: float = Field(0.0, ge=0.0)
    qed: float = Field(1.0, ge=0.0)
    sa: float = Field(0.0, ge=0.0)


class Qm9RewardParams(_Strict):
    name: Literal["validity", "qed", "sa", "weighted"] = "qed"
    weights: Qm9RewardWeights = Qm9RewardWeights()


class Qm9Params(_Strict):
    data: Qm9DataParams = Qm9DataParams()
    model: Qm9ModelParams = Qm9ModelParams()
    pretrain: PretrainParams = PretrainParams(steps=3000, batch_size=256, learning_rate=2e-3)
    reward: Qm9RewardParams = Qm9RewardParams()
    filter: FilterParams | None = None


class LayoutDataParams(_Strict):
    path: str | None = None
    num_layouts: int = Field(20000, ge=10)
    max_boxes: int = Field(16, ge=2, le=128)
    seed: int = Field(0, ge=0)
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0)


class LayoutModelParams(_Strict):
    d_model: int = Field(48, ge=4)
    layers: int = Field(1, ge=1, le=16)
    heads: int = Field(2, ge=1)
    ff: int = Field(96, ge=4)

    @model_validator(mode="after")
    def _heads_divide(self) -> "LayoutModelParams":
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of heads {self.heads}")
        return self


class LayoutRewardWeights(_Strict):
    alignment: float = Field(1.0, ge=0.0)
    overlap: float = Field(1.0, ge=0.0)


class LayoutRewardParams(_Strict):
    name: Literal["alignment", "overlap", "combined"] = "combined"
    weights: LayoutRewardWeights = LayoutRewardWeights()


class LayoutFeatureParams(_Strict):
    steps: int = Field(400, ge=1)
    batch_size: int = Field(128, ge=2)
    d_model: int = Field(64, ge=4)
    layers: int = Field(2, ge=1, le=16)
    feature_dim: int = Field(32, ge=2)


class LayoutMetricParams(_Strict):
    max_iou_layouts: int = Field(200, ge=1)
    max_iou_candidates: int = Field(50, ge=1)


class LayoutsParams(_Strict):
    data: LayoutDataParams = LayoutDataParams()
    model: LayoutModelParams = LayoutModelParams()
    pretrain: PretrainParams = PretrainParams(steps=3000, batch_size=256, learning_rate=1e-3)
    reward: LayoutRewardParams = LayoutRewardParams()
    features: LayoutFeatureParams = LayoutFeatureParams()
    metrics: LayoutMetricParams = LayoutMetricParams()


class PromptMixParams(_Strict):
    digit: float = Field(0.2, ge=0.0)
    attribute: float = Field(0.4, ge=0.0)
    composition: float = Field(0.4, ge=0.0)

    @model_validator(mode="after")
    def _some(self) -> "PromptMixParams":
        if self.digit + self.attribute + self.composition <= 0:
            raise ValueError("at least one prompt kind needs a positive weight")
        return self


class T2IDataParams(_Strict):
    split_seed: int = Field(0, ge=0)
    judge_fraction: float = Field(0.25, gt=0.0, lt=0.5)
    test_fraction: float = Field(0.25, gt=0.0, lt=0.5)
    heldout_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    mix: PromptMixParams = PromptMixParams()


class T2IModelParams(_Strict):
    architecture: Literal["mlp", "unet"] = "mlp"
    text_dim: int = Field(64, ge=8)
    hidden: int = Field(256, ge=8)
    layers: int = Field(3, ge=1, le=16)
    block_out_channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    layers_per_block: int = Field(1, ge=1)


class JudgeParams(_Strict):
    steps: int = Field(1500, ge=1)


class DigitsT2IParams(_Strict):
    data: T2IDataParams = T2IDataParams()
    model: T2IModelParams = T2IModelParams()
    pretrain: PretrainParams = PretrainParams(steps=3000, batch_size=256, learning_rate=1e-3)
    judges: JudgeParams = JudgeParams()
    features: FeatureNetParams = FeatureNetParams()
    finetune: FinetuneParams | None = None
    filter: FilterParams | None = None


class Sd2ModelParams(_Strict):
    pretrained: str = Field("stabilityai/stable-diffusion-2-1-base", min_length=1)
    resolution: int = Field(512, ge=8, le=2048)
    precision: Literal["fp16", "bf16", "fp32"] = "fp16"
    device: Literal["auto", "cuda", "cpu"] = "auto"
    guidance_scale: float = Field(7.5, ge=0.0)
    lora_rank: int = Field(4, ge=1, le=256)
    lora_alpha: float = Field(4.0, gt=0.0)

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            raise ValueError("must be a multiple of 8 (the VAE downsamples by 8)")
        return v


class Sd2PromptParams(_Strict):
    path: str | None = None
    heldout_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0)


class Sd2RewardParams(_Strict):
    name: str = "vqascore"
    vqa_model: str = Field("clip-flant5-xxl", min_length=1)
    command: list[str] = Field(default_factory=list)
    timeout_s: float = Field(3600.0, gt=0.0)
    batch_size: int = Field(16, ge=1)
    chunk_size: int = Field(512, ge=1)

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        from pgraft.rewards.t2i import REWARDS

        REWARDS.get(v)  # raises ValueError listing the valid names
        return v


class Sd2Params(_Strict):
    model: Sd2ModelParams = Sd2ModelParams()
    prompts: Sd2PromptParams = Sd2PromptParams()
    reward: Sd2RewardParams = Sd2RewardParams()
    metrics: list[str] = Field(default_factory=list)
    finetune: FinetuneParams | None = None
    filter: FilterParams | None = None

    @field_validator("metrics")
    @classmethod
    def _registered(cls, v: list[str]) -> list[str]:
        from pgraft.rewards.t2i import REWARDS

        for name in v:
            REWARDS.get(name)
        return v


class CorrectorParams(_Strict):
    hidden: int = Field(256, ge=4)
    layers: int = Field(3, ge=1, le=16)
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)


class IncParams(_Strict):
    domains: list[str] = Field(default_factory=list)
    base_steps: list[int] = Field(default_factory=lambda: [5, 10, 20, 40], min_length=1)
    corrected_steps: list[int] = Field(default_factory=lambda: [5, 10])
    corrector_steps: int = Field(5, ge=1)
    iterations: int = Field(20, ge=1)
    tolerance: float = Field(1e-4, gt=0.0)
    perturb: float = Field(1e-3, ge=0.0)
    num_inverted: int = Field(1000, ge=10)
    num_samples: int = Field(1000, ge=10)
    batch_size: int = Field(500, ge=1)
    corrector: CorrectorParams = CorrectorParams()

    @model_validator(mode="after")
    def _steps(self) -> "IncParams":
        if any(n < 1 for n in self.base_steps) or len(set(self.base_steps)) != len(self.base_steps):
            raise ValueError(f"base_steps {self.base_steps}: distinct positive step counts")
        extra = [n for n in self.corrected_steps if n not in self.base_steps]
        if extra:
            raise ValueError(f"corrected_steps {self.corrected_steps}: {extra} not in base_steps {self.base_steps}")
        return self


class DdpoParams(_Strict):
    """DDPO (Black et al. 2023): policy-gradient fine-tuning with online sampling, the baseline of the comparison."""

    domains: list[str] = Field(default_factory=list)
    checkpoints: list[int] = Field(default_factory=lambda: [1024, 2048, 4096])
    prompts_per_batch: int = Field(16, ge=1)
    samples_per_prompt: int = Field(16, ge=2)
    inner_epochs: int = Field(1, ge=1)
    minibatch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-4, gt=0.0, le=1.0)
    clip_range: float = Field(1e-3, gt=0.0, le=1.0)
    adv_clip_max: float = Field(5.0, gt=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)

    @model_validator(mode="after")
    def _checkpoints(self) -> "DdpoParams":
        batch = self.prompts_per_batch * self.samples_per_prompt
        c = self.checkpoints
        if not c or c != sorted(set(c)) or any(v < batch or v % batch for v in c):
            raise ValueError(f"checkpoints {c}: increasing reward-evaluation counts, each a multiple of one "
                             f"batch (prompts_per_batch x samples_per_prompt = {batch})")
        if self.minibatch_size > batch:
            raise ValueError(f"minibatch_size {self.minibatch_size} exceeds the batch of {batch} trajectories")
        return self


class Params(_Strict):
    domains: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    truncation_grid: list[int] = Field(min_length=2)
    sampler: SamplerParams = SamplerParams()
    filter: FilterParams = FilterParams(params={"m": 16, "k": 2})
    sample: SampleParams = SampleParams()
    finetune: FinetuneParams = FinetuneParams()
    evaluate: EvaluateParams = EvaluateParams()
    tracking: TrackingParams = TrackingParams()
    inc: IncParams = IncParams()
    ddpo: DdpoParams = DdpoParams()
    gaussian: GaussianParams | None = None
    digits_flow: DigitsFlowParams | None = None
    digits_t2i: DigitsT2IParams | None = None
    layouts: LayoutsParams | None = None
    qm9: Qm9Params | None = None
    qm9_dedup: Qm9Params | None = None
    sd2: Sd2Params | None = None

    @field_validator("domains")
    @classmethod
    def _known_domains(cls, v: list[str]) -> list[str]:
        from pgraft.domains import REGISTRY

        valid = [n for n in REGISTRY.names() if REGISTRY.get(n).kind == "diffusion"]
        bad = [d for d in v if d not in valid]
        if bad:
            raise ValueError(f"unknown reward domain(s) {bad}; valid: {valid} (flow domains go in inc.domains)")
        if len(set(v)) != len(v):
            raise ValueError("domains must not repeat")
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if any(s < 0 for s in v) or len(set(v)) != len(v):
            raise ValueError("seeds must be distinct non-negative integers")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> "Params":
        n = self.sampler.num_steps
        grid = self.truncation_grid
        if any(k < 0 or k > n for k in grid):
            raise ValueError(f"truncation_grid {grid}: every k must lie in [0, sampler.num_steps={n}]")
        if len(set(grid)) != len(grid) or grid != sorted(grid):
            raise ValueError(f"truncation_grid {grid}: values must be distinct and increasing")
        if grid[0] != 0 or grid[-1] != n:
            raise ValueError(f"truncation_grid {grid}: must include 0 (base) and N={n} (GRAFT)")
        from pgraft.domains import REGISTRY

        flows = [n for n in REGISTRY.names() if REGISTRY.get(n).kind == "flow"]
        bad = [d for d in self.inc.domains if d not in flows]
        if bad:
            raise ValueError(f"inc.domains {self.inc.domains}: {bad} are not flow domains; valid: {flows}")
        bad = [d for d in self.ddpo.domains if d not in self.domains or not REGISTRY.get(d).conditional]
        if bad:
            raise ValueError(f"ddpo.domains {self.ddpo.domains}: {bad} must be prompt-conditioned domains listed "
                             f"in domains {self.domains}")
        for d in [*self.domains, *self.inc.domains]:
            if getattr(self, d) is None:
                raise ValueError(f"domain {d!r} is listed in domains but has no '{d}:' section")
        return self

    def finetune_for(self, domain: str) -> FinetuneParams:
        """The fine-tuning settings of `domain`: its section's own `finetune:` when it sets one, else the top-level."""
        own = getattr(getattr(self, domain, None), "finetune", None)
        return own if own is not None else self.finetune

    def filter_for(self, domain: str) -> FilterParams:
        """The GRS rule of `domain`: its section's own `filter:` when it sets one, else the top-level one."""
        own = getattr(getattr(self, domain, None), "filter", None)
        return own if own is not None else self.filter

    def group_size(self, domain: str | None = None) -> int:
        """Samples per group: the rule's own size (n or m) or, for per-sample rules, sample.group_size."""
        from pgraft import filters

        f = self.filter if domain is None else self.filter_for(domain)
        rule = filters.build(f.name, **f.params)
        return rule.group_size or self.sample.group_size

    def domain_params(self, domain: str) -> BaseModel:
        section = getattr(self, domain, None) if domain in (*self.domains, *self.inc.domains) else None
        if section is None:
            raise ConfigError(f"domain {domain!r} is not configured (domains: {self.domains}, "
                              f"inc.domains: {self.inc.domains})")
        return section


def load_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate params.yaml; raise ConfigError naming every bad key, value and rule."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the params file ({type(err).__name__}: {err})") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level, got {type(raw).__name__}")
    return parse_params(raw, source=str(path))


def parse_params(raw: dict, source: str = "params") -> Params:
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_errors(err, raw, source)) from None


def format_errors(err: ValidationError, raw: dict, source: str) -> str:
    lines = [f"{source}: {err.error_count()} invalid setting(s)"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            allowed = _allowed_keys(parent)
            msg = f"unknown key; allowed here: {allowed}"
        given = _lookup(raw, e["loc"])
        shown = "" if given is _MISSING else f" (given {given!r})"
        lines.append(f"  - {key}{shown}: {msg}")
    return "\n".join(lines)


_MISSING = object()


def _lookup(raw: Any, loc: tuple) -> Any:
    node = raw
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return _MISSING
    if isinstance(node, float) and math.isnan(node):
        return "nan"
    return node


def _allowed_keys(parent: tuple) -> list[str]:
    model: Any = Params
    for part in parent:
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return []
        ann = field.annotation
        candidates = getattr(ann, "__args__", (ann,))
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if model is None:
            return []
    return sorted(model.model_fields)


def json_schema() -> dict:
    """The JSON Schema of params.yaml; Snakemake validates its config against it."""
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **Params.model_json_schema()}
