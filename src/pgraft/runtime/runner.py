"""The stage runner: parse, validate params and arguments before any compute, run the body, track the record."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

from pgraft.config import Params, load_params
from pgraft.devices import is_main_process
from pgraft.errors import ArtifactError, ConfigError, StageError
from pgraft.runtime.threads import set_threads  # noqa: F401 (the stages take it from here)


AXES = {  # a matrix axis as a command-line option: its type and meaning
    "domain": (str, "domain name, one of params 'domains'"),
    "seed": (int, "seed, one of params 'seeds'"),
    "k": (int, "truncation point, one of params 'truncation_grid'"),
    "n": (int, "base Euler steps, one of params 'inc.corrected_steps'"),
}


def base_parser(command: str, doc: str, axes: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    """--params and the axes' options (a command outside the stage table, e.g. probe, adds its own options)."""
    p = argparse.ArgumentParser(prog=f"pgraft {command}", description=doc)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    for axis in axes:
        kind, help_text = AXES[axis]
        p.add_argument(f"--{axis}", type=kind, required=True, help=help_text)
    return p


def stage_parser(command: str, doc: str) -> argparse.ArgumentParser:
    """The argument parser of a stage command, built from the stage table (pgraft.pipeline.table): the axes of
    every stage the command runs as and their ports' options (required where every such stage has them)."""
    from pgraft.pipeline.table import variants

    stages = variants(command)
    axes = [a for s in stages for a in (*s.axes, *s.fixed) if a in AXES]
    p = base_parser(command, doc, tuple(dict.fromkeys(axes)))
    ports = {}
    for s in stages:
        for port in (*s.inputs, *s.outputs):
            if port.option:
                ports.setdefault(port.option, (port.help, sum(port.option in _options(v) for v in stages)))
    for option, (help_text, count) in ports.items():
        p.add_argument(f"--{option}", required=count == len(stages), help=help_text)
    return p


def _options(stage) -> set[str]:
    return {p.option for p in (*stage.inputs, *stage.outputs) if p.option}


def run_stage(stage: str, p: argparse.ArgumentParser, body: Callable[[argparse.Namespace, Params], dict],
              argv: list[str] | None = None) -> int:
    """Parse, validate params and arguments before any compute, run `body`, report errors clearly.

    `body` returns the tracking record's metrics; the record is spooled for MLflow afterwards (pgraft.tracking.
    spool), a FAILED one when the body raises. Under `pgraft warm` the stage runs in a child of the warm
    server instead (pgraft.runtime.warm), the same command with the same files and exit status.
    """
    args = p.parse_args(argv)
    from pgraft.runtime import warm

    handed = warm.delegate(stage, sys.argv[1:] if argv is None else list(argv))  # a warm server's child runs it
    if handed is not None:
        return handed
    t0 = time.perf_counter()
    params = None
    try:
        params = load_params(args.params)
        _check_args(args, params)
        metrics = body(args, params) or {}
    except (ConfigError, ArtifactError, StageError) as err:
        print(f"pgraft {stage}: error: {err}", file=sys.stderr)
        _track(stage, args, params, {}, t0, err)
        return 2
    except Exception as err:  # a crash is tracked as a failed run too, then raised as it is
        _track(stage, args, params, {}, t0, err)
        raise
    if not is_main_process():  # a helper process of a data-parallel launch: the main process records the run
        return 0
    wall = time.perf_counter() - t0
    _track(stage, args, params, metrics, t0)
    print(f"pgraft {stage}: done in {wall:.1f} s", file=sys.stderr)
    return 0


def _track(stage: str, args: argparse.Namespace, params: Params | None, metrics: dict, t0: float,
           error: BaseException | None = None) -> None:
    """Spool the stage's tracking record, FAILED with `error` (once params loaded; main process only); never raises."""
    if params is None or not is_main_process():
        return
    from pgraft.tracking import spool as tracking

    tracking.record(params, args.params, stage=stage, options=vars(args), metrics=metrics,
                    wall_s=time.perf_counter() - t0, error=error)


def _check_args(args: argparse.Namespace, params: Params) -> None:
    if getattr(args, "domain", None) is not None and args.domain not in params.domains:
        raise StageError(f"--domain {args.domain!r} is not in params 'domains' {params.domains}")
    if getattr(args, "n", None) is not None and args.n not in params.inc.corrected_steps:
        raise StageError(f"--n {args.n} is not in params 'inc.corrected_steps' {params.inc.corrected_steps}")
    if getattr(args, "seed", None) is not None and args.seed not in params.seeds:
        raise StageError(f"--seed {args.seed} is not in params 'seeds' {params.seeds}")
    if getattr(args, "k", None) is not None and args.k not in params.truncation_grid:
        raise StageError(f"--k {args.k} is not in params 'truncation_grid' {params.truncation_grid}")
