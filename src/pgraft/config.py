"""Typed experiment parameters loaded once from params.yaml; every bad key or value is rejected here."""

from __future__ import annotations

import importlib
import math
import os
import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from pgraft.domains import REGISTRY
from pgraft.errors import ConfigError
from pgraft.params_base import FilterParams, FinetuneParams, PretrainParams, SamplerParams  # noqa: F401 (re-exported)
from pgraft.params_base import Strict

SAMPLERS = ("ddim", "ddpm")
TARGETS = ("intermediate", "x0")
#: the chains beside the reward chain: which domains of `domains` each can run (its `<key>.domains` defaults to
#: all of them), as (what they are, test on the registered domain class)
CHAINS = {
    "ddpo": ("prompt-conditioned diffusion domains", lambda cls: cls.kind == "diffusion" and cls.conditional),
    "inc": ("flow domains", lambda cls: cls.kind == "flow"),
}


class SampleParams(Strict):
    num_groups: int = Field(256, ge=1)
    group_size: int = Field(16, ge=1)
    reference_size: int = Field(8000, ge=100)
    batch_size: int = Field(4096, ge=1)


class EvaluateParams(Strict):
    num_samples: int = Field(2000, ge=10)
    distance: Literal["energy", "sliced_wasserstein"] = "energy"


class TrackingParams(Strict):
    """MLflow mirroring of the stage records (pgraft.tracking.spool); files stay the source of truth."""

    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    experiment: str = Field("pgraft", min_length=1)
    live: bool = True  # a background syncer mirrors each record soon after its stage ends (else: at aggregate)
    # seconds without new records before that syncer exits: longer than the gaps between a run's stages, so one
    # syncer (one MLflow import, ~5 CPU-s) serves a whole pipeline run
    idle_s: float = Field(600.0, gt=0.0, le=3600.0)


class CorrectorParams(Strict):
    #: the corrector's network: a residual MLP over the flattened noise (hidden x layers) or a small diffusers
    #: UNet2DModel over the noise as an image (unet_channels per block, one ResNet layer each)
    architecture: Literal["mlp", "unet"] = "mlp"
    hidden: int = Field(256, ge=4)
    layers: int = Field(3, ge=1, le=16)
    unet_channels: list[int] = Field(default_factory=lambda: [16, 32], min_length=1)

    @field_validator("unet_channels")
    @classmethod
    def _groups(cls, v: list[int]) -> list[int]:
        groups = min(8, min(v))
        if groups < 1 or any(c % groups for c in v):
            raise ValueError(f"{v}: positive widths, each divisible by min(8, smallest width) = {groups} (the UNet's "
                             "group norm)")
        return v
    steps: int = Field(2000, ge=1)  # the cap: early stopping on the held-out loss may end training sooner
    batch_size: int = Field(256, ge=2)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    coupling: Literal["ot", "independent"] = "ot"  # minibatch pairing of N(0, I) draws with inverted noises
    heldout_fraction: float = Field(0.1, ge=0.0, le=0.5)  # inverted noises held out (0: no early stopping)
    eval_every: int = Field(200, ge=1)  # held-out loss evaluated every this many steps
    patience: int = Field(5, ge=1)  # stop after this many evaluations without a new best held-out score
    #: the held-out score of early stopping: the flow-matching loss on the held-out noises (loss), the energy
    #: distance of corrector outputs to them (energy), or none: the loss is recorded, training runs to `steps`
    stop_on: Literal["none", "loss", "energy"] = "none"


class IncParams(Strict):
    #: flow domains to run INC on; left out: every flow domain of `domains` (SharedParams resolves it)
    domains: list[str] = Field(default_factory=list)
    base_steps: list[int] = Field(default_factory=lambda: [5, 10, 20, 40], min_length=1)
    corrected_steps: list[int] = Field(default_factory=lambda: [5, 10])
    corrector_steps: int = Field(5, ge=1)
    iterations: int = Field(100, ge=1)
    tolerance: float = Field(1e-4, gt=0.0)
    perturb: float = Field(1e-3, ge=0.0)
    num_inverted: int | None = Field(None, ge=0)  # training images inverted per n; None or 0: all of them
    max_residual: float = Field(0.01, gt=0.0)  # drop an inverted image whose last fixed-point update is larger
    roundtrip_threshold: float = Field(0.05, gt=0.0)  # drop an inverted image whose round trip is worse (max abs)
    num_samples: int = Field(2000, ge=10)
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


class StatTrackingParams(Strict):
    """DDPO's per-prompt reward statistics (pgraft.finetune.ddpo.PerPromptStatTracker): each prompt keeps its last
    buffer_size rewards and standardises its advantages by them once it holds min_count; buffer_size 0 uses the
    statistics of the prompt's samples in the current batch alone."""

    buffer_size: int = Field(32, ge=0)
    min_count: int = Field(16, ge=1)

    @model_validator(mode="after")
    def _reachable(self) -> "StatTrackingParams":
        if self.buffer_size and self.min_count > self.buffer_size:
            raise ValueError(f"min_count {self.min_count} exceeds buffer_size {self.buffer_size}: a prompt's buffer "
                             "would never hold enough rewards (buffer_size 0: the current batch's statistics)")
        return self


class DdpoParams(Strict):
    """DDPO (Black et al. 2023): policy-gradient fine-tuning with online sampling, the baseline of the comparison."""

    #: prompt-conditioned domains that get a DDPO run; left out: every one of `domains` (SharedParams resolves it)
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
    stat_tracking: StatTrackingParams = StatTrackingParams()

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


class VarianceParams(Strict):
    """The variance stage (docs/METHOD.md §2): base continuations from stored states x_tk at every k of the grid."""

    states: int = Field(128, ge=2)  # training states per k whose continuations estimate E[Var(r|X_tk)]
    branches: int = Field(8, ge=2)  # base continuations per such state
    ceiling_branches: int = Field(2, ge=1)  # base continuations per accepted state (the exact target's reward)
    bootstrap: int = Field(1000, ge=100)  # bootstrap resamples of the states for the 95 % intervals


class HardnessSetting(Strict):
    """One setting of a domain's hardness axis in the regime map: params overrides and the metric compared."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")  # a directory name of the study's work tree
    #: dotted params keys set in the cell's params.yaml (e.g. gaussian.mixture.num_modes: 16); a setting that
    #: changes the domain's section gets its own base model
    set: dict[str, Any] = Field(default_factory=dict)
    #: the evaluation metric (a key of evaluate.json's budget rows) the best k and P-GRAFT − GRAFT are computed on
    metric: str = Field("reward_mean", min_length=1)


class ProbeParams(Strict):
    """The learning-error probe of the best-k predictor (pgraft.finetune.probe): a short GRAFT fine-tune on part of
    the accepted samples and the held-out denoising loss per sampler step."""

    steps: int = Field(50, ge=1)
    heldout_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    noise_draws: int = Field(4, ge=1)  # noise draws per held-out sample and sampler step


def _default_hardness() -> dict[str, list[HardnessSetting]]:
    return {"gaussian": [HardnessSetting(name="linear"),
                         HardnessSetting(name="modes16_sharp", set={
                             "gaussian.mixture.num_modes": 16, "gaussian.reward.name": "mode_preference",
                             "gaussian.reward.temperature": 0.25})],
            "digits_t2i": [HardnessSetting(name="all_prompts"),
                           HardnessSetting(name="composition", metric="reward_composition")]}


class RegimeMapParams(Strict):
    """The regime-map study (scripts/regime_map.py, `make study-regime`): where P-GRAFT(best k) beats GRAFT. Read by
    that script alone, never by a pipeline stage. Cells: domain x hardness x num_groups x budget x target."""

    domains: list[str] = Field(default_factory=lambda: ["gaussian", "digits_t2i"], min_length=1)
    #: sample.num_groups of a cell: accepted training samples = num_groups x the filter's K (top_k: 2)
    num_groups: list[int] = Field(default_factory=lambda: [16, 64, 256], min_length=1)
    budgets: list[int] = Field(default_factory=lambda: [100, 500], min_length=1)  # finetune.budgets of every run
    targets: list[Literal["x0", "intermediate"]] = Field(default_factory=lambda: ["x0", "intermediate"], min_length=1)
    ks: list[int] = Field(default_factory=lambda: [5, 10, 15], min_length=1)  # P-GRAFT's candidates, 0 < k < N
    selection_seeds: list[int] = Field(default_factory=lambda: [100], min_length=1)  # the best k is chosen here
    evaluation_seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=2)  # reported here
    hardness: dict[str, list[HardnessSetting]] = Field(default_factory=_default_hardness)
    probe: ProbeParams = ProbeParams()

    @model_validator(mode="after")
    def _grid(self) -> "RegimeMapParams":
        for key in ("domains", "num_groups", "budgets", "targets", "ks", "selection_seeds", "evaluation_seeds"):
            v = getattr(self, key)
            if len(set(v)) != len(v):
                raise ValueError(f"regime_map.{key} {v}: a value repeats")
        if any(x < 1 for x in [*self.num_groups, *self.budgets, *self.ks]):
            raise ValueError("regime_map: num_groups, budgets and ks must be positive")
        if self.budgets != sorted(self.budgets):
            raise ValueError(f"regime_map.budgets {self.budgets}: increasing step counts")
        if any(s < 0 for s in [*self.selection_seeds, *self.evaluation_seeds]):
            raise ValueError("regime_map: seeds must be non-negative")
        both = sorted(set(self.selection_seeds) & set(self.evaluation_seeds))
        if both:
            raise ValueError(f"regime_map: seeds {both} are both selection and evaluation seeds (the best k is "
                             "chosen on seeds that report nothing)")
        missing = [d for d in self.domains if not self.hardness.get(d)]
        if missing:
            raise ValueError(f"regime_map.hardness: no setting for domain(s) {missing}")
        for d, settings in self.hardness.items():
            names = [s.name for s in settings]
            if len(set(names)) != len(names):
                raise ValueError(f"regime_map.hardness.{d}: a setting name repeats {names}")
        return self


class SharedParams(Strict):
    """The settings every run shares; `Params` adds one optional section per registered domain."""

    #: modules imported before validation; each registers out-of-tree domains (pgraft.domains.register)
    plugins: list[str] = Field(default_factory=list)
    #: every domain to run: the diffusion domains run the reward chain (and DDPO if prompt-conditioned), the flow
    #: domains run INC; `ddpo.domains` and `inc.domains` default to those of this list
    domains: list[str] = Field(min_length=1)
    seeds: list[int] = Field(min_length=1)
    #: independently pretrained base models per diffusion domain: seed s fine-tunes and evaluates base
    #: s mod base_models, so the spread over seeds includes the spread over base models (docs/METHOD.md §6); all
    #: are trained whatever the seeds, so adding a seed never retrains a base
    base_models: int = Field(2, ge=1)
    #: where every stage runs the networks: auto (CUDA when torch.cuda.is_available()) | cpu | cuda
    #: (docs/CLUSTER.md "GPUs");
    #: cuda without a CUDA device fails when a stage starts, naming this key
    device: Literal["auto", "cpu", "cuda"] = "cpu"
    #: mixed precision of the networks that allow it (the UNets): auto and bf16 autocast to bf16 on CUDA, fp32 does
    #: not; a CPU always computes in fp32
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    truncation_grid: list[int] = Field(min_length=2)
    sampler: SamplerParams = SamplerParams()
    filter: FilterParams = FilterParams(params={"m": 16, "k": 2})
    sample: SampleParams = SampleParams()
    finetune: FinetuneParams = FinetuneParams()
    evaluate: EvaluateParams = EvaluateParams()
    tracking: TrackingParams = TrackingParams()
    inc: IncParams = IncParams()
    ddpo: DdpoParams = DdpoParams()
    variance: VarianceParams = VarianceParams()
    regime_map: RegimeMapParams = RegimeMapParams()  # the regime-map study's grid (scripts/regime_map.py only)

    @field_validator("domains")
    @classmethod
    def _known_domains(cls, v: list[str]) -> list[str]:
        valid = REGISTRY.names()
        bad = [d for d in v if d not in valid]
        if bad:
            raise ValueError(f"unknown domain(s) {bad}; valid: {valid}")
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
    def _cross_checks(self) -> "SharedParams":
        n = self.sampler.num_steps
        grid = self.truncation_grid
        if any(k < 0 or k > n for k in grid):
            raise ValueError(f"truncation_grid {grid}: every k must lie in [0, sampler.num_steps={n}]")
        if len(set(grid)) != len(grid) or grid != sorted(grid):
            raise ValueError(f"truncation_grid {grid}: values must be distinct and increasing")
        if grid[0] != 0 or grid[-1] != n:
            raise ValueError(f"truncation_grid {grid}: must include 0 (base) and N={n} (GRAFT)")
        for d in self.domains:
            if self.section(d) is None:
                raise ValueError(f"domain {d!r} is listed in domains but has no '{d}:' section")
        rm = self.regime_map
        unknown = [d for d in [*rm.domains, *rm.hardness] if d not in REGISTRY.names()
                   or REGISTRY.get(d).kind != "diffusion"]
        if unknown:
            raise ValueError(f"regime_map: {unknown} are not registered diffusion domains")
        self._resolve_chain("ddpo", self.ddpo)
        self._resolve_chain("inc", self.inc)
        return self

    def check_regime_map(self, source: str = "params") -> None:
        """The regime map's truncation points against this run's N: checked by the study before it runs (no stage
        reads the section, so a run that shrinks sampler.num_steps needs no matching regime_map.ks)."""
        rm, n = self.regime_map, self.sampler.num_steps
        bad = [k for k in rm.ks if not 0 < k < n]
        if bad:
            raise ConfigError(f"{source}: regime_map.ks {rm.ks}: {bad} outside (0, sampler.num_steps={n}) (P-GRAFT's "
                              "k; GRAFT, k = N, is every cell's reference)")

    def _resolve_chain(self, key: str, section: DdpoParams | IncParams) -> None:
        """`<key>.domains` as given (each one a choice of CHAINS[key] among `domains`) or, left out, every choice."""
        choices = self.chain_choices(key)
        if "domains" not in section.model_fields_set:
            # validated params are frozen: the default is set once, here, on a copy of the section
            object.__setattr__(self, key, section.model_copy(update={"domains": choices}))
            return
        given = section.domains
        bad = [d for d in given if d not in choices]
        if bad:
            raise ValueError(f"{key}.domains {given}: {bad} are not among the {CHAINS[key][0]} listed in domains; "
                             f"valid: {choices} (leave {key}.domains out to run all of them)")
        if len(set(given)) != len(given):
            raise ValueError(f"{key}.domains {given}: a domain repeats")

    def chain_choices(self, key: str) -> list[str]:
        """The domains of `domains` that chain `key` (ddpo | inc) can run, in their order."""
        accepts = CHAINS[key][1]
        return [d for d in self.domains if accepts(REGISTRY.get(d))]

    @property
    def reward_domains(self) -> list[str]:
        """The domains of the reward chain (pretrain, sample, reward, filter, finetune, evaluate): the diffusion
        domains of `domains`, in their order."""
        return [d for d in self.domains if REGISTRY.get(d).kind == "diffusion"]

    @property
    def run_domains(self) -> list[str]:
        """Every domain some chain runs (the reward domains and inc.domains), in the order of `domains`."""
        return [d for d in self.domains if d in self.reward_domains or d in self.inc.domains]

    def finetune_for(self, domain: str) -> FinetuneParams:
        """The fine-tuning settings of `domain`: its section's own `finetune:` when it sets one, else the top-level."""
        own = getattr(self.section(domain), "finetune", None)
        return own if own is not None else self.finetune

    def filter_for(self, domain: str) -> FilterParams:
        """The GRS rule of `domain`: its section's own `filter:` when it sets one, else the top-level one."""
        own = getattr(self.section(domain), "filter", None)
        return own if own is not None else self.filter

    def group_size(self, domain: str | None = None) -> int:
        """Samples per group: the rule's own size (n or m) or, for per-sample rules, sample.group_size."""
        from pgraft import filters

        f = self.filter if domain is None else self.filter_for(domain)
        rule = filters.build(f.name, **f.params)
        return rule.group_size or self.sample.group_size

    def section(self, domain: str) -> BaseModel | None:
        """The `domain:` section of a registered domain (None when params.yaml has none)."""
        return getattr(self, domain) if domain in REGISTRY and domain in type(self).model_fields else None

    def domain_params(self, domain: str) -> BaseModel:
        """The section of a domain this run uses (listed in domains)."""
        section = self.section(domain) if domain in self.domains else None
        if section is None:
            raise ConfigError(f"domain {domain!r} is not configured (domains: {self.domains})")
        return section


def _sections(names) -> dict[str, Any]:
    """One optional section per domain name: the domain's own params model, None when absent."""
    clash = [n for n in names if n in SharedParams.model_fields]
    if clash:
        raise ConfigError(f"domain(s) {clash} registered under the name of a top-level params key")
    return {n: (REGISTRY.get(n).Params | None, None) for n in names}


#: the params model of the built-in domains (pgraft.domains registers them)
Params = create_model("Params", __base__=SharedParams, __module__=__name__, **_sections(REGISTRY.names()))
_MODELS: dict[tuple[str, ...], type[Params]] = {tuple(REGISTRY.names()): Params}


def params_model() -> type[Params]:
    """The params model of every registered domain: Params plus the sections of plugin domains."""
    names = tuple(REGISTRY.names())
    if names not in _MODELS:
        added = [n for n in names if n not in Params.model_fields]
        _MODELS[names] = create_model("Params", __base__=Params, __module__=__name__, **_sections(added))
    return _MODELS[names]


def import_plugins(raw: dict, source: str = "params") -> None:
    """Import the modules of `plugins:` (each registers its domains with pgraft.domains.register)."""
    plugins = raw.get("plugins", [])
    if not isinstance(plugins, list) or not all(isinstance(m, str) for m in plugins):
        raise ConfigError(f"{source}: plugins (given {plugins!r}): expected a list of module names")
    if plugins and os.getcwd() not in sys.path:  # plugin modules may lie in the repository root
        sys.path.insert(0, os.getcwd())
    for module in plugins:
        try:
            importlib.import_module(module)
        except Exception as err:  # any failure of third-party code is a params error naming the module
            reason = (str(err).splitlines() or [""])[0]
            raise ConfigError(f"{source}: plugins: cannot import {module!r} ({type(err).__name__}: {reason})") from None


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
    """Validate a params mapping, after importing its plugins (their domains' sections become valid keys)."""
    import_plugins(raw, source)
    model = params_model()
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_errors(err, raw, source, model)) from None


def format_errors(err: ValidationError, raw: dict, source: str, model: type[BaseModel] = Params) -> str:
    """One line per error: the key, the value given (never a whole section, at most SHOWN characters) and the rule
    it breaks (what is expected). Pydantic's own text is never used: it repeats the input, the whole params dict
    for a cross-field rule."""
    lines = [f"{source}: {err.error_count()} invalid setting(s)"]
    for e in err.errors():
        msg = " ".join(e["msg"].removeprefix("Value error, ").split())  # one line
        if not e["loc"]:  # a cross-field rule of the top level: its message names the keys and values
            lines.append(f"  - {msg}")
            continue
        key = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            msg = f"unknown key; allowed here: {_allowed_keys(model, e['loc'][:-1])}"
        given = _lookup(raw, e["loc"])
        shown = "" if given is _MISSING or isinstance(given, dict) else f" (given {_short(given)})"
        lines.append(f"  - {key}{shown}: {msg}")
    return "\n".join(lines)


SHOWN = 80  # characters of a given value an error line repeats


def _short(value: Any) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= SHOWN else text[:SHOWN - 3] + "..."


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


def _allowed_keys(model: Any, parent: tuple) -> list[str]:
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
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **params_model().model_json_schema()}
