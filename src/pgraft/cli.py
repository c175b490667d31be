"""The `pgraft` command: run a pipeline stage, validate params, export the schema, sync tracking."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from pgraft.stages import STAGES

STAGE_HELP = {
    "pretrain": "train the domain's base model from scratch",
    "sample": "one base sampling run per (domain, seed), keeping every truncation point's state",
    "reward": "terminal rewards of the samples and of the reference pool",
    "filter": "GRS selection within groups (+ acceptance-law check)",
    "finetune": "GRAFT / P-GRAFT fine-tuning at truncation point k, one checkpoint per budget",
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
        "\n  track      `pgraft track sync`: mirror spooled stage records into MLflow"
        "\n\n`pgraft <command> --help` shows each command's options.")
    top = argparse.ArgumentParser(prog="pgraft", description="Reward fine-tuning of diffusion models by "
                                  "rejection sampling (GRAFT / P-GRAFT): pipeline stages and tools.",
                                  epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("command", choices=[*STAGES, "validate", "schema", "track"], metavar="command")
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
    return _track(rest)


def _validate(rest: list[str]) -> int:
    from pgraft.config import ConfigError, load_params

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
    from pgraft.config import ConfigError, load_params
    from pgraft.stages import tracking

    p = argparse.ArgumentParser(prog="pgraft track", description="Mirror the spooled stage records into MLflow.")
    p.add_argument("action", choices=["sync"])
    p.add_argument("--params", default="params.yaml")
    args = p.parse_args(rest)
    try:
        params = load_params(args.params)
    except ConfigError as err:
        print(f"pgraft track: error: {err}", file=sys.stderr)
        return 2
    stats = tracking.sync(params.tracking.uri, params.tracking.experiment)
    print(json.dumps(stats))
    return 0 if stats["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
