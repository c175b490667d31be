"""GPU time of a sweep before it runs: every job of the stage table, its work counted from the params, in hours.

A job's work is counted in images per kind of work (KINDS): sampler steps, LoRA training steps and reward calls,
plus one start-up per job. Seconds per image come from DEFAULT_THROUGHPUT (Stable Diffusion 2 on one H200: the
sampling step measured, the rest assumed), overridden key by key by a measurement file that `measure` writes
on the device that will run the sweep (`pgraft pipeline estimate --measure FILE`, then `--throughput FILE`).
What is counted per stage: the functions of WORK, one per stage (a stage left out is not estimated).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from pgraft.errors import ConfigError
from pgraft.pipeline.dvc_yaml import stage_key
from pgraft.pipeline.table import STAGES, instances

#: the kinds of work, each in seconds per image (startup: seconds per job)
KINDS = {
    "sample_step": "one sampler step of one image (one guided network call, no gradient)",
    "train_step": "one training step per image of the minibatch (guided forward and backward through the LoRA)",
    "reward": "scoring one image (VAE decode and the reward model)",
    "startup": "seconds per job before its first image (imports, the base model and the reward model loaded)",
}
#: Stable Diffusion 2 at 512x512, fp16, guidance on, one NVIDIA H200; measure your own (`measure`)
DEFAULT_THROUGHPUT = {
    # measured: 8.30 images/s with 20 DDIM steps at batch 8 (docs/CLUSTER.md "Stable Diffusion 2 (GPU)")
    "sample_step": 0.0060,
    "train_step": 0.018,    # assumed: three sampling steps (a backward costs about two forwards); not measured
    "reward": 0.10,         # assumed: VAE decode + VQAScore with CLIP-FlanT5-XXL; not measured
    "startup": 120.0,       # assumed: SD2 and the VQAScore model read from a shared filesystem; not measured
}
MEASURED_ON = "measured_on"  # the measurement file's record of the device and model (not a throughput)
CPU_STAGES = ("validate", "filter", "aggregate", "figures")  # no network: not counted in GPU time


@dataclass(frozen=True)
class Work:
    """The work of one job: images x sampler steps, images x training steps, images scored."""

    sample_steps: float = 0.0
    train_steps: float = 0.0
    rewards: float = 0.0

    def seconds(self, throughput: dict) -> float:
        return (throughput["startup"] + self.sample_steps * throughput["sample_step"]
                + self.train_steps * throughput["train_step"] + self.rewards * throughput["reward"])


def _drawn(params, domain: str) -> int:
    """Images of a seed's GRS draw: num_groups x the rule's group size."""
    return params.sample.num_groups * params.group_size(domain)


def _evaluation(params, dom, budgets: int) -> Work:
    """evaluate: per budget, evaluate.num_samples images per prompt split (sampled and scored) and the gallery."""
    n_steps = params.sampler.num_steps
    images = (2 if dom.conditional else 1) * params.evaluate.num_samples
    gallery = len(dom.gallery_prompts()) if dom.conditional and dom.gallery_size else 0
    return Work(sample_steps=budgets * (images + gallery) * n_steps, rewards=budgets * images)


def _pretrain(params, dom, point) -> Work | None:
    return Work() if dom.pretrained else None  # a published base is loaded and recorded; training is not modelled


def _sample(params, dom, point) -> Work:
    return Work(sample_steps=(_drawn(params, dom.name) + params.sample.reference_size) * params.sampler.num_steps)


def _reward(params, dom, point) -> Work:
    return Work(rewards=_drawn(params, dom.name) + params.sample.reference_size)


def _finetune(params, dom, point) -> Work:
    ft = params.finetune_for(dom.name)
    if point["k"] == 0:  # the base itself: nothing is trained
        return Work()
    if ft.rounds == 1:  # one run, a checkpoint at each budget
        return Work(train_steps=ft.budgets[-1] * ft.batch_size)
    runs = 1 if ft.round_checkpoints else len(ft.budgets)  # one run saving at round ends, or one per budget
    redrawn = (ft.rounds - 1) * runs * _drawn(params, dom.name)  # later rounds sample and score again
    steps = ft.budgets[-1] if ft.round_checkpoints else sum(max(1, b // ft.rounds) * ft.rounds for b in ft.budgets)
    return Work(train_steps=steps * ft.batch_size, sample_steps=redrawn * params.sampler.num_steps, rewards=redrawn)


def _evaluate(params, dom, point) -> Work:
    return _evaluation(params, dom, 1 if point["k"] == 0 else len(params.finetune_for(dom.name).budgets))


def _variance(params, dom, point) -> Work:
    """Base continuations from the states after every k < N: variance.states x branches, and every accepted state
    x ceiling_branches for 0 < k < N, each over the N − k remaining steps (a rule without a closed-form acceptance
    rate counts every drawn state)."""
    from pgraft import filters

    cfg, n_steps = params.variance, params.sampler.num_steps
    rule = params.filter_for(dom.name)
    rate = filters.build(rule.name, **rule.params).expected_acceptance()
    accepted = _drawn(params, dom.name) * (1.0 if rate is None else rate)
    rows = [(cfg.states * cfg.branches + (accepted * cfg.ceiling_branches if k else 0), n_steps - k)
            for k in params.truncation_grid if k < n_steps]
    return Work(sample_steps=sum(n * steps for n, steps in rows), rewards=sum(n for n, _ in rows))


def _ddpo(params, dom, point) -> Work:
    c, n_steps = params.ddpo.checkpoints[-1], params.sampler.num_steps
    return Work(sample_steps=c * n_steps, rewards=c, train_steps=c * params.ddpo.inner_epochs * n_steps)


def _evaluate_ddpo(params, dom, point) -> Work:
    return _evaluation(params, dom, len(params.ddpo.checkpoints))


#: the work of one job of each GPU stage (the INC stages are not modelled)
WORK = {"pretrain": _pretrain, "sample": _sample, "reward": _reward, "finetune": _finetune,
        "variance": _variance, "evaluate": _evaluate, "ddpo": _ddpo, "evaluate_ddpo": _evaluate_ddpo}


@dataclass(frozen=True)
class StageEstimate:
    name: str
    jobs: int
    seconds: list[float] | None  # per job; None: not estimated (or a CPU stage)
    work: Work | None  # the largest job's work
    gpu: bool = True  # False: a CPU stage, not counted


def estimate(raw: dict, throughput: dict) -> list[StageEstimate]:
    """One row per (stage, domain) of the stage table under the raw params, with each job's seconds."""
    from pgraft import domains
    from pgraft.config import parse_params

    params = parse_params(raw)
    built: dict = {}
    rows = []
    for stage in STAGES:
        by_domain: dict = {}
        for point in instances(stage, raw):
            by_domain.setdefault(point.get("domain"), []).append(point)
        for domain, points in by_domain.items():
            name, fn = stage_key(stage, domain), WORK.get(stage.name)
            if fn is None:  # a CPU stage, or one whose work is not modelled
                rows.append(StageEstimate(name, len(points), None, None, gpu=stage.name not in CPU_STAGES))
                continue
            if domain not in built:
                built[domain] = domains.build(domain, params)
            works = [fn(params, built[domain], p) for p in points]
            if any(w is None for w in works):
                rows.append(StageEstimate(name, len(points), None, None))
                continue
            seconds = [w.seconds(throughput) for w in works]
            rows.append(StageEstimate(name, len(points), seconds, works[seconds.index(max(seconds))]))
    return rows


def read_throughput(path: str | Path | None) -> tuple[dict, dict]:
    """DEFAULT_THROUGHPUT with the keys of a measurement file replaced, and where each value came from."""
    values, source = dict(DEFAULT_THROUGHPUT), {k: "default" for k in DEFAULT_THROUGHPUT}
    if path is None:
        return values, source
    try:
        given = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read the throughput file ({type(err).__name__}: {err})") from err
    if not isinstance(given, dict):
        raise ConfigError(f"{path}: expected a JSON object of seconds per image, keys {sorted(KINDS)}")
    for key, value in given.items():
        if key == MEASURED_ON:
            continue
        if key not in KINDS:
            raise ConfigError(f"{path}: {key}: unknown kind of work; allowed: {sorted(KINDS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ConfigError(f"{path}: {key} (given {value!r}): expected seconds, a number >= 0")
        values[key], source[key] = float(value), str(path)
    return values, source


def report(rows: list[StageEstimate], throughput: dict, source: dict, title: str, notes: list[str]) -> str:
    """The printed estimate: the throughput used, per stage jobs x hours per job, and the totals."""
    lines = [f"GPU-time estimate for {title}", "seconds per image (startup: per job):"]
    lines += [f"  {k:<12} {throughput[k]:>10.4g}  {source[k]:<10} {KINDS[k]}" for k in KINDS]
    head = f"{'stage':<26} {'jobs':>5} {'h per job':>10} {'GPU-h':>9}   work of the largest job"
    lines += ["", head, "-" * len(head)]
    total, longest = 0.0, ("", 0.0)
    for r in rows:
        if not r.gpu:
            lines.append(f"{r.name:<26} {r.jobs:>5} {'-':>10} {'-':>9}   CPU only")
            continue
        if r.seconds is None:
            lines.append(f"{r.name:<26} {r.jobs:>5} {'?':>10} {'?':>9}   not estimated (no model of its work)")
            continue
        per_job, hours = max(r.seconds) / 3600, sum(r.seconds) / 3600
        total += hours
        longest = max(longest, (r.name, per_job), key=lambda t: t[1])
        w = r.work
        work = ", ".join(f"{v:,.0f} {label}" for v, label in ((w.sample_steps, "image-steps sampled"),
                                                              (w.train_steps, "image-steps trained"),
                                                              (w.rewards, "images scored")) if v) or "startup only"
        lines.append(f"{r.name:<26} {r.jobs:>5} {per_job:>10.2f} {hours:>9.2f}   {work}")
    lines += ["-" * len(head), f"total: {total:.1f} GPU-hours; longest job {longest[0]}: {longest[1]:.2f} h "
              "(its SLURM runtime must exceed that); h per job: the stage's largest job"]
    if any(r.gpu and r.seconds is None for r in rows):
        lines.append("the stages marked ? are not in the total")
    return "\n".join(lines + notes)


def notes(params) -> list[str]:
    """Reward evaluations per seed spent by GRAFT / P-GRAFT and by DDPO at its checkpoints (the comparison's axis),
    and a warning when one throughput table stands for several domains' models."""
    out = []
    if len(params.reward_domains) > 1:
        out.append(f"one table of seconds per image stands for the models of {len(params.reward_domains)} domains "
                   f"({', '.join(params.reward_domains)}); --measure times the first")
    for d in params.ddpo.domains:
        ft = params.finetune_for(d)
        graft = _drawn(params, d) * ft.rounds
        same = "" if graft in params.ddpo.checkpoints else f" (none equals {graft:,})"
        out.append(f"reward evaluations per seed, {d}: GRAFT / P-GRAFT {graft:,}; DDPO checkpoints "
                   f"{params.ddpo.checkpoints}{same}")
    return out


def measure(params, domain_name: str, steps: int = 2) -> dict:
    """Seconds per image of each kind of work on this machine, with the configured model of `domain_name` (its
    base, batch sizes, sampler and reward): one warm-up call each, then one timed call."""
    import copy

    import torch

    from pgraft import domains
    from pgraft.finetune import DenoisingObjective, train
    from pgraft.samplers.rollout import sample_in_batches
    from pgraft.workflows.scoring import conditions, score

    dom = domains.build(domain_name, params)
    if dom.kind != "diffusion":
        raise ConfigError(f"measure: domain {domain_name!r} is a {dom.kind} domain; only diffusion domains are "
                          "measured")
    cuda = torch.device(dom.device).type == "cuda"

    def timed(fn):
        """(seconds, result) of one call, the device's queue drained before and after."""
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    batch = params.sample.batch_size
    prompts, cond = conditions(dom, "train", batch)
    startup, base = timed(dom.build_model)
    gen = torch.Generator().manual_seed(0)
    schedule = dom.schedule(params.sampler.model_copy(update={"num_steps": steps}))

    def draw():
        return sample_in_batches(lambda i: base, schedule, batch, dom.shape, gen, batch, cond=cond,
                                 device=dom.device)[0]

    timed(draw)  # warm-up
    sample_s, x = timed(draw)
    first = None if prompts is None else prompts[:1]
    startup += timed(lambda: score(dom, x[:1].numpy(), first))[0]  # the first call loads the reward model
    reward_s, _ = timed(lambda: score(dom, x.numpy(), prompts))
    ft = params.finetune_for(domain_name)
    model = copy.deepcopy(base).requires_grad_(True)
    objective = DenoisingObjective(x.float(), schedule.alphas_cumprod, cond=cond)
    timed(lambda: train(model, objective, 1, ft.learning_rate, ft.batch_size, gen))  # warm-up
    train_s, _ = timed(lambda: train(model, objective, steps, ft.learning_rate, ft.batch_size, gen))
    device = torch.cuda.get_device_name() if cuda else "cpu"
    return {"sample_step": sample_s / (batch * steps), "train_step": train_s / (ft.batch_size * steps),
            "reward": reward_s / batch, "startup": startup,
            MEASURED_ON: {"device": device, "domain": domain_name, "steps": steps, "sample_batch": batch,
                          "train_batch": ft.batch_size}}
