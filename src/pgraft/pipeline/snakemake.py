"""Snakemake rules as data, from the stage table: workflow/Snakefile defines one rule per stage in a loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from pgraft.pipeline import stamps
from pgraft.pipeline.table import STAGES, STAMPS_DIGEST, Stage, domain_list, instances, lookup, stamp_path


@dataclass
class Rule:
    """Everything a Snakemake `rule:` needs, with wildcard-dependent parts as functions of the wildcards."""

    name: str
    inputs: Callable[[object], dict]
    outputs: dict[str, tuple[str, bool]]  # name -> (pattern, is a directory)
    params: dict[str, Callable[[object], object]]
    log: str
    shell: str
    domains: list[str] | None
    local: bool
    priority: int


# how a training stage given several GPUs starts: one process per GPU, DDP (pgraft.finetune.parallel); every
# setting on the command line, so no `accelerate config` file changes it
LAUNCH = "python -m accelerate.commands.launch --multi_gpu --num_processes {gpus} --num_machines 1 " \
         "--mixed_precision no --dynamo_backend no -m "


def _command(stage: Stage, config: dict) -> Callable[..., str]:
    """The stage's command at one job's wildcards (the rule's shell is "{params.cmd} > {log} 2>&1": a shell
    string written in a loop would bind late, to the last rule of the loop). A training stage whose job has
    more than one GPU (resource `gpu`, e.g. set-resources in the SLURM profile) runs under `accelerate launch`
    with one process per GPU; with one GPU or none it is the plain command."""
    def cmd(wildcards, resources) -> str:
        point = dict(wildcards.items())

        def fmt(kind: str, value) -> str:
            if kind == "axis":
                return str(point[value])
            if kind == "param":
                return str(lookup(config, value))
            return value.pattern.format(**point)
        text = stage.command(fmt)
        gpus = int(resources.get("gpu") or 0)
        if stage.parallel and gpus > 1:
            return LAUNCH.format(gpus=gpus) + text.removeprefix("python -m ")
        return text
    return cmd


# one torch/BLAS thread per core Snakemake gives the job (`threads`, 1 unless a profile sets more)
SHELL = "PGRAFT_THREADS={threads} {params.cmd} > {log} 2>&1"


class Plan:
    """The rules of the workflow for one raw params dict (the Snakemake config) and one repository root."""

    def __init__(self, config: dict, root: Path):
        self.config = config
        self.root = Path(root)
        self._stamps = stamps.contents(config, self.root)
        self._outputs = sorted({p.pattern.format(**pt) for s in STAGES for pt in instances(s, config)
                                for p in s.outputs})

    def stamp(self, stage: Stage, domain: str | None) -> str:
        """The digest of one (stage, domain)'s stamp; for validate, of every stamp (it writes them all)."""
        if stage.name == "validate":
            return stamps.digest_all(self._stamps)
        return stamps.digest(self._stamps[stamp_path(stage, domain)])

    def upstream(self, path: str) -> list[str]:
        """An input path itself, or, where no stage writes it, every stage output lying under it."""
        if path in self._outputs or not any(o.startswith(path + "/") for o in self._outputs):
            return [path]
        return [o for o in self._outputs if o.startswith(path + "/")]

    def _inputs(self, stage: Stage) -> Callable[[object], dict]:
        def inputs(wildcards) -> dict:
            point = dict(wildcards.items())
            out: dict = {}
            for i, p in enumerate(stage.inputs):
                out[f"in{i}"] = self.upstream(p.pattern.format(**point))
            return out
        return inputs

    def _params(self, stage: Stage) -> dict[str, Callable]:
        """The stamp's digest (a changed stamp reruns the job: Snakemake's params trigger; no source file is an
        input, so an edit that changes no stamp reruns nothing) and the command."""
        return {"stamp": lambda w: self.stamp(stage, getattr(w, "domain", None)), "cmd": _command(stage, self.config)}

    def _rule_outputs(self, stage: Stage) -> dict[str, tuple[str, bool]]:
        """A rule's outputs; validate's are its stamp files, one by one (Snakemake records a job's params for
        files, so a changed stamp digest reruns validate after a code edit)."""
        if stage.name == "validate":
            return {"digest": (STAMPS_DIGEST, False),
                    **{f"stamp{i}": (path, False) for i, path in enumerate(sorted(self._stamps))}}
        return {p.option: (p.pattern, p.is_dir) for p in stage.outputs}

    def rules(self) -> list[Rule]:
        return [Rule(name=s.name, inputs=self._inputs(s), outputs=self._rule_outputs(s),
                     params=self._params(s), log=s.log(), shell=SHELL,
                     domains=domain_list(s, self.config) if s.domains else None, local=s.local,
                     priority=s.priority)
                for s in STAGES]

    def targets(self) -> list[str]:
        """What `rule all` asks for: the local stages' outputs (the report, and the validate stamp: Snakemake
        validates the params when it parses the workflow, so no job waits for validate; a job downstream of a
        rerun would hide its own params changes, as Snakemake skips the checks of jobs below a rerun)."""
        return [path for s in STAGES if s.local for path, _ in self._rule_outputs(s).values()]

