"""The `pgraft` command: run a pipeline stage, validate params, export the schema, sync tracking."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from pgraft import __version__
from pgraft.stages import STAGES

STAGE_HELP = {
    "pretrain": "train the domain's base model from scratch",
    "sample": "one base sampling run per (domain, seed), keeping every truncation point's state",
    "reward": "terminal rewards of the samples and of the reference pool",
    "filter": "GRS selection within groups (+ acceptance-law check)",
    "finetune": "GRAFT / P-GRAFT fine-tuning at truncation point k, one checkpoint per budget",
    "variance": "E[Var(r|X_tk)] per truncation point and each k's exact-target reward (ceiling)",
    "ddpo": "the DDPO baseline: online sampling + PPO on the reward (prompt-conditioned domains)",
    "evaluate": "reward, distance to the exact tilted target, distance to base, diversity",
    "invert": "INC: real data back to noise through the base flow's Euler sampler (fixed-point backward Euler)",
    "correct": "INC: train the corrector flow from N(0, I) to the inverted noises",
    "evaluate_flow": "INC: FID vs FLOPs per image for the base at every n and for base + corrector",
    "aggregate": "collect all metrics into one tidy table (and mirror the records into MLflow)",
    "figures": "figures and the markdown table from the tidy table only",
}
STAGE_MODULES = {name: f"pgraft.stages.{name}" for name in STAGES}  # explicit: no import strings in config


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    epilog = "stages:\n" + "\n".join(f"  {n:<10} {STAGE_HELP[n]}" for n in STAGES) + (
        "\n\nother commands:\n  validate   check params.yaml and print the resolved settings"
        "\n  schema     print the JSON Schema of params.yaml"
        "\n  pipeline   `pgraft pipeline dvc`: write dvc.yaml from the stage table (--check: fail if stale);"
        "\n             `pgraft pipeline show`: the stages, their matrices, params keys and code files"
        "\n  track      `pgraft track sync`: mirror spooled stage records into MLflow; `pgraft track wait`:"
        "\n             wait for the background syncer (README \"Compare in MLflow\")"
        "\n\n`pgraft <command> --help` shows each command's options.")
    top = argparse.ArgumentParser(prog="pgraft", description="Reward fine-tuning of diffusion models by "
                                  "rejection sampling (GRAFT / P-GRAFT): pipeline stages and tools.",
                                  epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("-V", "--version", action="version", version=f"pgraft {__version__}")
    top.add_argument("command", choices=[*STAGES, "validate", "schema", "track", "pipeline"], metavar="command")
    top.add_argument("rest", nargs=argparse.REMAINDER)
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    ns = top.parse_args(argv[:1])
    rest = argv[1:]
    if ns.command in STAGES:
        return importlib.import_module(STAGE_MODULES[ns.command]).main(rest)
    if ns.command == "schema":
        from pgraft.config import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    if ns.command == "validate":
        return _validate(rest)
    if ns.command == "pipeline":
        return _pipeline(rest)
    return _track(rest)


def _pipeline(rest: list[str]) -> int:
    from pathlib import Path

    import yaml

    from pgraft.config import load_params
    from pgraft.errors import ConfigError

    p = argparse.ArgumentParser(prog="pgraft pipeline", description="The stage table that both engines run.")
    p.add_argument("action", choices=["dvc", "show"], help="dvc: write dvc.yaml; show: print the stage table")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", default="dvc.yaml", help="dvc.yaml path (action dvc)")
    p.add_argument("--check", action="store_true", help="do not write: exit 1 if --out differs from the table's")
    args = p.parse_args(rest)
    try:
        load_params(args.params)
    except ConfigError as err:
        print(f"pgraft pipeline: error: {err}", file=sys.stderr)
        return 2
    raw = yaml.safe_load(Path(args.params).read_text())
    if args.action == "show":
        return _show(raw)
    from pgraft.io import atomic_path
    from pgraft.pipeline.dvc_yaml import render

    text = render(raw)
    out = Path(args.out)
    if args.check:
        fresh = out.exists() and out.read_text() == text
        print(f"{out}: {'up to date' if fresh else 'STALE: run `pgraft pipeline dvc`'}")
        return 0 if fresh else 1
    if out.exists() and out.read_text() == text:
        print(f"{out}: up to date")
        return 0
    with atomic_path(out) as tmp:
        tmp.write_text(text)
    print(f"{out}: written from the stage table")
    return 0


def _show(raw: dict) -> int:
    from pathlib import Path

    from pgraft.pipeline.code_deps import stage_files
    from pgraft.pipeline.table import STAGES, domain_list, instances, params_keys

    for stage in STAGES:
        domains = domain_list(stage, raw) if stage.domains else [None]
        n = sum(1 for _ in instances(stage, raw))
        print(f"{stage.name}: {n} job(s), axes {list(stage.axes) or '-'}, module {stage.module}")
        for d in domains:
            files = stage_files(stage.module, d, Path("."))
            label = d or "(all)"
            print(f"  {label}: params {params_keys(stage, d, raw)}; {len(files)} source files")
    return 0


def _validate(rest: list[str]) -> int:
    from pgraft.config import load_params
    from pgraft.errors import ConfigError

    p = argparse.ArgumentParser(prog="pgraft validate", description="Validate a params file.")
    p.add_argument("--params", default="params.yaml")
    args = p.parse_args(rest)
    try:
        params = load_params(args.params)
    except ConfigError as err:
        print(f"pgraft validate: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(params.model_dump(mode="json"), indent=2))
    return 0


def _track(rest: list[str]) -> int:
    from pgraft.config import load_params
    from pgraft.errors import ConfigError
    from pgraft.stages import tracking

    p = argparse.ArgumentParser(prog="pgraft track", description="Mirror the spooled stage records into MLflow "
                                "(the store and experiment of params' tracking section).")
    p.add_argument("action", choices=["sync", "wait"],
                   help="sync: mirror what changed since the store last saw the spool; wait: wait until no "
                        "background syncer runs (before reading MLflow right after a pipeline)")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--pipeline", help="sync only this pipeline id (a directory of .pgraft/spool)")
    p.add_argument("--force", action="store_true", help="recheck every spooled pipeline against MLflow")
    p.add_argument("--timeout", type=float, default=600.0, help="wait: seconds to wait at most")
    args = p.parse_args(rest)
    try:
        params = load_params(args.params)
    except ConfigError as err:
        print(f"pgraft track: error: {err}", file=sys.stderr)
        return 2
    t = params.tracking
    if args.action == "wait":
        idle = tracking.wait_idle(t.uri, t.experiment, timeout=args.timeout)
        print("no background syncer runs" if idle else f"a background syncer still runs after {args.timeout:.0f} s")
        return 0 if idle else 1
    from pgraft.stages import tracking_sync

    stats = tracking_sync.sync(t.uri, t.experiment, pipeline=args.pipeline, force=args.force)
    print(json.dumps(stats))
    return 0 if stats["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
