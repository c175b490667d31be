"""The stage table: every stage of the pipeline, its matrix, inputs, outputs and the params keys it reads."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

# Where a matrix axis takes its values from (params keys); `domain` depends on the stage's `domains` source.
AXIS_SOURCE = {"seed": "seeds", "k": "truncation_grid", "n": "inc.corrected_steps"}
# Which domains a stage's `domain` axis runs over (by its `domains` chain), from the validated params: pgraft.config
# resolves the defaults (reward: the diffusion domains of `domains`; ddpo.domains: its prompt-conditioned ones;
# inc.domains: its flow domains).
DOMAIN_SOURCE = {
    "reward": lambda params: params.reward_domains,
    "ddpo": lambda params: params.ddpo.domains,
    "inc": lambda params: params.inc.domains,
}
DOMAIN_PARAMS = "{domain}"  # in a stage's params: the section of the stage's own domain


@dataclass(frozen=True)
class Port:
    """One input or output of a stage: its command-line option (None: a dependency only) and path pattern."""

    option: str | None
    pattern: str
    # outputs: file | dir (cached by DVC) | metric (cache: false, a DVC metric: only the seed-averaged summary,
    # so `dvc exp show` stays readable) | plain (cache: false; per-seed metrics files) | stamps (the
    # validate stage's directory of per-(stage, domain) stamps: cache: false and kept while validate runs, so a
    # failing validate removes nothing)
    kind: str = "file"
    directory: bool = False  # a plain output that is a directory ("dir" outputs always are)
    help: str = ""  # what the stage command's option means (its --help)

    @property
    def is_dir(self) -> bool:
        return self.directory or self.kind in ("dir", "stamps")


@dataclass(frozen=True)
class Stage:
    """A stage of the pipeline: one command per point of its matrix."""

    name: str
    module: str
    axes: tuple[str, ...] = ()
    domains: str | None = None  # reward | ddpo | inc: which domain list the `domain` axis runs over
    inputs: tuple[Port, ...] = ()
    outputs: tuple[Port, ...] = ()
    params: tuple[str, ...] = ()
    fixed: dict[str, str] = field(default_factory=dict)  # option -> params key whose value is passed
    local: bool = False  # cheap report stage: Snakemake runs it on the submitting host
    #: a training stage (the one training loop or DDPO): given several GPUs, Snakemake starts it data-parallel
    #: under `accelerate launch` (pgraft.pipeline.snakemake)
    parallel: bool = False
    #: Snakemake's priority for the stage's jobs: the INC chain (one long serial chain beside the wide reward
    #: chain) goes first, so that it does not run alone at the end of a run on few cores
    priority: int = 0
    #: one line for `pgraft --help` (the command's own --help is its module's DOC)
    summary: str = ""

    def command(self, fmt) -> str:
        """The stage's command with `fmt(kind, text)` rendering each placeholder for an engine."""
        parts = [f"python -m {self.module}"]
        parts += [f"--{a} {fmt('axis', a)}" for a in self.axes]
        parts += [f"--{o} {fmt('param', key)}" for o, key in self.fixed.items()]
        parts += [f"--{p.option} {fmt('input', p)}" for p in self.inputs if p.option]
        parts += [f"--{p.option} {fmt('output', p)}" for p in self.outputs if p.option]
        return " ".join(parts)

    def command_at(self, raw: dict, point: dict) -> str:
        """The command of one matrix point, every placeholder filled in from the raw params: what an engine runs
        there (the tests and the studies run stages through it)."""
        def fmt(kind, value):
            if kind == "axis":
                return str(point[value])
            if kind == "param":
                return str(lookup(raw, value))
            return value.pattern.format(**point)
        return self.command(fmt)

    def log(self) -> str:
        return f"logs/{self.name}/" + ("-".join("{%s}" % a for a in self.axes) or self.name) + ".log"

    def output(self, option: str) -> Port:
        return next(p for p in self.outputs if p.option == option)


STAMPS = "results/stamps"  # one stamp per (stage, domain): the params values and source digests it runs with
#: the digest of every stamp, written by the validate stage only (never by `pgraft pipeline dvc`): Snakemake
#: runs validate when it is missing, so the validate job has recorded params that a code edit then changes
STAMPS_DIGEST = f"{STAMPS}/all.sha256"


def stamp_path(stage: Stage, domain: str | None) -> str:
    """The stamp of one (stage, domain): what DVC checks instead of the stage's params keys and source files."""
    return f"{STAMPS}/{stage.name}-{domain}.json" if domain else f"{STAMPS}/{stage.name}.json"


def _evaluated(finetuned: str) -> tuple[Port, ...]:
    """What the evaluate command reads: the base, the fine-tuned checkpoints, the seed's reference and rewards."""
    return (Port("model", "results/{domain}/base", help="base model directory"),
            Port("finetuned", finetuned, help="fine-tuned checkpoints directory (from finetune or ddpo)"),
            Port("reference", "results/{domain}/seed{seed}/reference.npz", help="reference pool .npz (from sample)"),
            Port("rewards", "results/{domain}/seed{seed}/rewards.parquet", help="rewards .parquet (from reward)"))


def _evaluation(metrics_dir: str) -> tuple[Port, ...]:
    """What the evaluate command writes into one metrics directory."""
    return (Port("out", f"{metrics_dir}/evaluate.json", "plain", help="output metrics JSON"),
            Port("gallery", f"{metrics_dir}/gallery.npz", "plain",
                 help="output .npz of a few samples of the largest budget (figures)"))

NETWORKS = ("device", "precision")  # where and in what precision a stage runs its networks
INC_PRIORITY = 10  # the INC chain's Snakemake priority (Stage.priority)

MODEL = "base model directory (from pretrain)"
METRICS = "output metrics JSON"
SAMPLES = "samples .npz from the sample stage"

STAGES: tuple[Stage, ...] = (
    Stage("validate", "pgraft.stages.validate", inputs=(Port(None, "params.yaml"),),
          outputs=(Port("stamps", STAMPS, "stamps", help="directory of the per-(stage, domain) stamps"),), local=True,
          summary="check params.yaml and write the per-(stage, domain) stamps"),
    Stage("pretrain", "pgraft.stages.pretrain", ("domain",), "reward",
          outputs=(Port("out", "results/{domain}/base", "dir",
                        help="output directory for model.safetensors + config.json"),
                   Port("metrics", "results/metrics/{domain}/pretrain.json", "plain", help=METRICS)),
          params=("sampler.num_train_timesteps", "sampler.beta_schedule", "sampler.num_steps", "base_models",
                  *NETWORKS, DOMAIN_PARAMS), parallel=True, summary="train the domain's base model from scratch"),
    Stage("sample", "pgraft.stages.sample", ("domain", "seed"), "reward",
          inputs=(Port("model", "results/{domain}/base", help=MODEL),),
          outputs=(Port("out", "results/{domain}/seed{seed}/samples.npz",
                        help="output samples .npz (x0, groups, state_k<k>)"),
                   Port("reference", "results/{domain}/seed{seed}/reference.npz", help="output reference pool .npz"),
                   Port("metrics", "results/metrics/{domain}/seed{seed}/sample.json", "plain", help=METRICS)),
          params=("sampler", "truncation_grid", "filter", "sample", *NETWORKS, DOMAIN_PARAMS),
          summary="one base sampling run per (domain, seed), keeping every truncation point's state"),
    Stage("reward", "pgraft.stages.reward", ("domain", "seed"), "reward",
          inputs=(Port("model", "results/{domain}/base",
                       help="base model directory (holds the domain's auxiliary networks)"),
                  Port("samples", "results/{domain}/seed{seed}/samples.npz", help=SAMPLES),
                  Port("reference", "results/{domain}/seed{seed}/reference.npz",
                       help="reference pool .npz from the sample stage")),
          outputs=(Port("out", "results/{domain}/seed{seed}/rewards.parquet",
                        help="output rewards .parquet (set, index, reward)"),),
          params=("device", DOMAIN_PARAMS), summary="terminal rewards of the samples and of the reference pool"),
    Stage("filter", "pgraft.stages.filter", ("domain", "seed"), "reward",
          inputs=(Port("samples", "results/{domain}/seed{seed}/samples.npz", help="samples .npz (groups, dedup keys)"),
                  Port("rewards", "results/{domain}/seed{seed}/rewards.parquet",
                       help="rewards .parquet from the reward stage")),
          outputs=(Port("out", "results/{domain}/seed{seed}/selection.parquet",
                        help="output selection .parquet (index, group, reward, u, keep)"),
                   Port("acceptance", "results/metrics/{domain}/seed{seed}/acceptance.csv", "plain",
                        help="output acceptance-law check .csv"),
                   Port("metrics", "results/metrics/{domain}/seed{seed}/filter.json", "plain", help=METRICS)),
          params=("filter", "sample.group_size", DOMAIN_PARAMS),
          summary="GRS selection within groups (+ acceptance-law check)"),
    Stage("finetune", "pgraft.stages.finetune", ("domain", "seed", "k"), "reward",
          inputs=(Port("model", "results/{domain}/base", help="base model directory"),
                  Port("samples", "results/{domain}/seed{seed}/samples.npz", help=SAMPLES),
                  Port("selection", "results/{domain}/seed{seed}/selection.parquet",
                       help="selection .parquet from the filter stage")),
          outputs=(Port("out", "results/{domain}/seed{seed}/k{k}/finetuned", "dir",
                        help="output directory: b<budget>.safetensors + config.json"),),
          params=("sampler", "filter", "sample.num_groups", "sample.group_size", "sample.batch_size", "finetune",
                  *NETWORKS, DOMAIN_PARAMS), parallel=True,
          summary="GRAFT / P-GRAFT fine-tuning at truncation point k, one checkpoint per budget"),
    Stage("evaluate", "pgraft.stages.evaluate", ("domain", "seed", "k"), "reward",
          inputs=_evaluated("results/{domain}/seed{seed}/k{k}/finetuned"),
          outputs=_evaluation("results/metrics/{domain}/seed{seed}/k{k}"),
          params=("sampler", "filter", "sample.batch_size", "evaluate", "finetune.budgets", *NETWORKS,
                  DOMAIN_PARAMS), summary="reward, distance to the exact tilted target, distance to base, diversity"),
    Stage("variance", "pgraft.stages.variance", ("domain", "seed"), "reward",
          inputs=(Port("model", "results/{domain}/base", help=MODEL),
                  Port("samples", "results/{domain}/seed{seed}/samples.npz",
                       help="samples .npz with the states after k steps (from sample)"),
                  Port("selection", "results/{domain}/seed{seed}/selection.parquet",
                       help="selection .parquet with rewards and the keep-mask (from filter)")),
          outputs=(Port("out", "results/metrics/{domain}/seed{seed}/variance.json", "plain",
                        help="output JSON: per k, the variance terms and the ceiling with intervals"),),
          params=("sampler", "truncation_grid", "sample.batch_size", "variance", *NETWORKS, DOMAIN_PARAMS),
          summary="E[Var(r|X_tk)] per truncation point and each k's exact-target reward (ceiling)"),
    Stage("ddpo", "pgraft.stages.ddpo", ("domain", "seed"), "ddpo",
          inputs=(Port("model", "results/{domain}/base", help=MODEL),),
          outputs=(Port("out", "results/{domain}/seed{seed}/ddpo/finetuned", "dir",
                        help="output directory: b<evaluations>.safetensors + config.json"),
                   Port("metrics", "results/metrics/{domain}/seed{seed}/ddpo/train.json", "plain",
                        help="output training log JSON")),
          params=("sampler", "ddpo", *NETWORKS, DOMAIN_PARAMS), parallel=True,
          summary="the DDPO baseline: online sampling + PPO on the reward (prompt-conditioned domains)"),
    Stage("evaluate_ddpo", "pgraft.stages.evaluate", ("domain", "seed"), "ddpo", fixed={"k": "sampler.num_steps"},
          inputs=_evaluated("results/{domain}/seed{seed}/ddpo/finetuned"),
          outputs=_evaluation("results/metrics/{domain}/seed{seed}/ddpo"),
          params=("sampler", "filter", "sample.batch_size", "evaluate", "ddpo.checkpoints", *NETWORKS,
                  DOMAIN_PARAMS)),
    Stage("pretrain_flow", "pgraft.stages.pretrain", ("domain",), "inc",
          outputs=(Port("out", "results/{domain}/base", "dir",
                        help="output directory for model.safetensors + config.json"),
                   Port("metrics", "results/metrics/{domain}/pretrain.json", "plain", help=METRICS),
                   Port("features", "results/{domain}/features", "dir",
                        help="image domains: output directory of the FID feature network")),
          params=(*NETWORKS, DOMAIN_PARAMS), parallel=True, priority=INC_PRIORITY),
    Stage("invert", "pgraft.stages.invert", ("domain", "n"), "inc",
          inputs=(Port("model", "results/{domain}/base", help="base flow model directory (from pretrain)"),),
          outputs=(Port("out", "results/{domain}/inc/n{n}/inverted.npz",
                        help="output .npz of inverted noises (the kept ones)"),
                   Port("metrics", "results/metrics/{domain}/inc/n{n}/invert.json", "plain", help=METRICS)),
          params=("inc.num_inverted", "inc.iterations", "inc.tolerance", "inc.perturb", "inc.max_residual",
                  "inc.roundtrip_threshold", "inc.batch_size", *NETWORKS, DOMAIN_PARAMS), priority=INC_PRIORITY,
          summary="INC: real data back to noise through the base flow's Euler sampler (fixed-point backward Euler)"),
    Stage("correct", "pgraft.stages.correct", ("domain", "seed", "n"), "inc",
          inputs=(Port("inverted", "results/{domain}/inc/n{n}/inverted.npz",
                       help="inverted noises .npz (from invert)"),),
          outputs=(Port("out", "results/{domain}/seed{seed}/inc/n{n}/corrector", "dir",
                        help="output corrector directory"),),
          params=("inc.corrector", *NETWORKS, DOMAIN_PARAMS), parallel=True, priority=INC_PRIORITY,
          summary="INC: train the corrector flow from N(0, I) to the inverted noises"),
    Stage("evaluate_flow", "pgraft.stages.evaluate_flow", ("domain", "seed"), "inc",
          inputs=(Port("model", "results/{domain}/base", help="base flow model directory"),
                  Port("features", "results/{domain}/features", help="FID feature network directory (from pretrain)"),
                  Port("correctors-dir", "results/{domain}/seed{seed}/inc",
                       help="directory holding n<n>/corrector for every n of inc.corrected_steps (from correct)")),
          outputs=(Port("out", "results/metrics/{domain}/seed{seed}/inc.json", "plain", help=METRICS),),
          params=("inc", *NETWORKS, DOMAIN_PARAMS), priority=INC_PRIORITY,
          summary="INC: FID vs FLOPs per image for the base at every n and for base + corrector"),
    Stage("aggregate", "pgraft.stages.aggregate", local=True,
          inputs=(Port("metrics-dir", "results/metrics", help="directory of per-stage metrics (results/metrics)"),),
          outputs=(Port("out", "results/summary.csv", "plain", help="output tidy table .csv"),
                   Port("plots-dir", "results/plots", "plain", True,
                        help="output directory of per-seed CSVs for dvc plots"),
                   Port("summary-dir", "results/summary", "metric", True,
                        help="output directory of one <domain>.json per domain: reward mean and sd over seeds per k "
                             "and budget (the DVC metrics)"),
                   Port("galleries", "results/galleries.npz", "plain",
                        help="output .npz of the first seed's gallery samples (figures)")),
          params=("domains", "seeds", "truncation_grid", "sampler.num_steps", "filter", "finetune", "ddpo", "inc",
                  "tracking", "plugins", "*"), summary="collect all metrics into one tidy table"),
    Stage("figures", "pgraft.stages.figures", local=True,
          inputs=(Port("summary", "results/summary.csv", help="tidy table from aggregate (results/summary.csv)"),
                  Port("galleries", "results/galleries.npz",
                       help="gallery samples from aggregate (results/galleries.npz)")),
          outputs=(Port("out", "results/figures", "plain", True, help="output directory (results/figures)"),),
          params=("domains", "seeds", "base_models", "truncation_grid", "sampler.num_steps", "ddpo.domains", "plugins",
                  "*"), summary="figures, markdown tables and REPORT.md from the tidy table only"),
)
BY_NAME = {s.name: s for s in STAGES}
#: the stage commands (`pgraft <command>`, `python -m pgraft.stages.<command>`), in table order: one per stage
#: module (evaluate serves evaluate and evaluate_ddpo, pretrain pretrain and pretrain_flow); validate is the
#: engines' own check, not a command of the pipeline's results
COMMANDS = tuple(dict.fromkeys(s.module.rsplit(".", 1)[1] for s in STAGES if s.name != "validate"))


def variants(command: str) -> tuple[Stage, ...]:
    """The stages a command runs as (evaluate: evaluate and evaluate_ddpo; pretrain: pretrain and pretrain_flow)."""
    return tuple(s for s in STAGES if s.module == f"pgraft.stages.{command}")


# ---- the matrix -----------------------------------------------------------------------------------------------

def lookup(raw: dict, key: str, default=None):
    """The value at a dotted params key of the raw params dict (default when absent)."""
    node = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def domain_list(stage: Stage, raw: dict) -> list[str]:
    """The domains a stage runs over; a stage without a `domain` axis runs once."""
    if not stage.domains:
        return []
    from pgraft.config import parse_params

    return list(DOMAIN_SOURCE[stage.domains](parse_params(raw)))


def axis_values(stage: Stage, axis: str, raw: dict) -> list:
    if axis == "domain":
        return domain_list(stage, raw)
    return list(lookup(raw, AXIS_SOURCE[axis], []) or [])


def instances(stage: Stage, raw: dict) -> Iterator[dict]:
    """Every point of the stage's matrix under the raw params, as a dict of axis values."""
    values = [axis_values(stage, a, raw) for a in stage.axes]
    for combo in itertools.product(*values):
        yield dict(zip(stage.axes, combo))


def instance_name(stage: Stage, point: dict) -> str:
    """The DVC name of one point of a stage's matrix (also how tests and reports name jobs)."""
    rest = [str(point[a]) for a in stage.axes if a != "domain"]
    head = f"{stage.name}-{point['domain']}" if "domain" in point else stage.name
    return head + ("@" + "-".join(rest) if rest else "")


def path(stage_name: str, option: str, **point) -> str:
    """The path of one output of a stage at one matrix point (how the report finds its inputs)."""
    return BY_NAME[stage_name].output(option).pattern.format(**point)


def params_keys(stage: Stage, domain: str | None, raw: dict) -> list[str]:
    """The params keys a stage instance reads: `{domain}` becomes the domain's section, `*` every domain section
    of the run (report stages)."""
    keys: list[str] = []
    for key in stage.params:
        if key == DOMAIN_PARAMS:
            keys.append(domain)
        elif key == "*":
            keys += [d for d in run_domains(raw) if d not in keys]
        else:
            keys.append(key)
    return keys


def stamped(raw: dict) -> list[tuple[Stage, str | None]]:
    """Every (stage, domain) that gets a stamp from validate: each stage but validate, once per domain it runs."""
    return [(s, d) for s in STAGES if s.name != "validate" for d in (domain_list(s, raw) if s.domains else [None])]


def run_domains(raw: dict) -> list[str]:
    """Every domain of the run (those of `domains` that the reward chain or INC runs), in their order."""
    from pgraft.config import parse_params

    return parse_params(raw).run_domains

