"""What every stage shares: argument parsing, validated params, clear errors, model files, tracking."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Callable

from pgraft.checkpoints import load_model, save_model  # noqa: F401 (the stages import them from here)
from pgraft.config import Params, load_params
from pgraft.errors import ArtifactError, ConfigError, StageError


def parser(stage: str, doc: str, *, domain: bool = True, seed: bool = False, k: bool = False,
           n: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"pgraft {stage}", description=doc)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    if domain:
        p.add_argument("--domain", required=True, help="domain name, one of params 'domains'")
    if seed:
        p.add_argument("--seed", type=int, required=True, help="seed, one of params 'seeds'")
    if k:
        p.add_argument("--k", type=int, required=True, help="truncation point, one of params 'truncation_grid'")
    if n:
        p.add_argument("--n", type=int, required=True, help="base Euler steps, one of params 'inc.corrected_steps'")
    return p


def run_stage(stage: str, p: argparse.ArgumentParser, body: Callable[[argparse.Namespace, Params], dict],
              argv: list[str] | None = None) -> int:
    """Parse, validate params and arguments before any compute, run `body`, report errors clearly.

    `body` returns the tracking record's metrics; the record is spooled for MLflow afterwards.
    """
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    try:
        params = load_params(args.params)
        _check_args(args, params)
        metrics = body(args, params) or {}
    except (ConfigError, ArtifactError, StageError) as err:
        print(f"pgraft {stage}: error: {err}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    from pgraft.stages import tracking

    tracking.record(params, args.params, stage=stage, domain=getattr(args, "domain", None),
                    seed=getattr(args, "seed", None), k=getattr(args, "k", None),
                    metrics=metrics, wall_s=wall)
    print(f"pgraft {stage}: done in {wall:.1f} s", file=sys.stderr)
    return 0


def _check_args(args: argparse.Namespace, params: Params) -> None:
    if getattr(args, "domain", None) is not None and args.domain not in (*params.domains, *params.inc.domains):
        raise StageError(f"--domain {args.domain!r} is not in params 'domains' {params.domains} "
                         f"nor 'inc.domains' {params.inc.domains}")
    if getattr(args, "n", None) is not None and args.n not in params.inc.corrected_steps:
        raise StageError(f"--n {args.n} is not in params 'inc.corrected_steps' {params.inc.corrected_steps}")
    if getattr(args, "seed", None) is not None and args.seed not in params.seeds:
        raise StageError(f"--seed {args.seed} is not in params 'seeds' {params.seeds}")
    if getattr(args, "k", None) is not None and args.k not in params.truncation_grid:
        raise StageError(f"--k {args.k} is not in params 'truncation_grid' {params.truncation_grid}")








def auxiliary_dir(model_dir) -> Path:
    """Where a domain's auxiliary networks (judges, feature networks) live inside the base model directory."""
    return Path(model_dir) / "auxiliary"


def build_rule(params: Params, domain: str):
    """The GRS rule that filters `domain` (its section's `filter:` or the top-level one)."""
    from pgraft import filters

    f = params.filter_for(domain)
    return filters.build(f.name, **f.params)






def set_threads() -> None:
    """Use the cores the scheduler gave this job (SLURM/Snakemake set these), else all."""
    import torch

    n = os.environ.get("PGRAFT_THREADS") or os.environ.get("SLURM_CPUS_PER_TASK")
    if n:
        torch.set_num_threads(int(n))
