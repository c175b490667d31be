"""The `pgraft` command: run a pipeline stage, validate params, export the schema, sync tracking."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from pgraft import __version__
from pgraft.pipeline.table import COMMANDS as STAGES, variants

STAGE_MODULES = {name: f"pgraft.stages.{name}" for name in STAGES}  # explicit: no import strings in config


def _summary(command: str) -> str:
    """A command's line in `pgraft --help`: its first stage's summary in the stage table."""
    return next(s.summary for s in variants(command) if s.summary)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    epilog = "stages:\n" + "\n".join(f"  {n:<13} {_summary(n)}" for n in STAGES) + (
        "\n\nother commands:\n  validate   check params.yaml and print the resolved settings"
        "\n  schema     print the JSON Schema of params.yaml"
        "\n  pipeline   `pgraft pipeline dvc`: write dvc.yaml and the stamps from the stage table (--check: fail if"
        "\n             stale);"
        "\n             `pgraft pipeline show`: the stages, their matrices, params keys and code files;"
        "\n             `pgraft pipeline use --params <file>`: check a params file and make it params.yaml;"
        "\n             `pgraft pipeline estimate --params <file>`: GPU-hours per stage (--measure: on this machine)"
        "\n  warm       `pgraft warm <command ...>`: run an engine (snakemake, dvc repro) with a warm stage server:"
        "\n             each stage forks from a process that imported torch once (make repro uses it)"
        "\n  track      `pgraft track sync`: mirror spooled stage records into MLflow; `pgraft track wait`:"
        "\n             wait for the background syncer (docs/TRACKING.md \"Compare in MLflow\")"
        "\n\n`pgraft <command> --help` shows each command's options.")
    top = argparse.ArgumentParser(prog="pgraft", description="Reward fine-tuning of diffusion models by "
                                  "rejection sampling (GRAFT / P-GRAFT): pipeline stages and tools.",
                                  epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    top.add_argument("-V", "--version", action="version", version=f"pgraft {__version__}")
    top.add_argument("command", choices=[*STAGES, "validate", "schema", "track", "pipeline", "warm"], metavar="command")
    top.add_argument("rest", nargs=argparse.REMAINDER)
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0
    ns = top.parse_args(argv[:1])
    rest = argv[1:]
    if ns.command in STAGES:
        return importlib.import_module(STAGE_MODULES[ns.command]).main(rest)
    if ns.command == "warm":
        from pgraft.runtime.warm import run_with_server

        command = rest[1:] if rest[:1] == ["--"] else rest
        if not command or command[0] in ("-h", "--help"):
            print("usage: pgraft warm [--] COMMAND ...\n\nRun COMMAND (e.g. `snakemake --profile "
                  "workflow/profiles/local` or `dvc repro`) with a warm stage server: every stage it starts forks "
                  "from a process that has imported torch, diffusers and the other heavy libraries once (about 4 s "
                  "saved per stage); outputs are the same as without it. Exit status: COMMAND's.")
            return 0 if command else 2
        return run_with_server(command)
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
    p.add_argument("action", choices=["dvc", "show", "use", "estimate"],
                   help="dvc: write dvc.yaml; show: print the stage table; use: check a params file (its keys, "
                        "prompt file and base model), make it params.yaml and write dvc.yaml; estimate: GPU-hours "
                        "per stage from seconds per image (docs/CLUSTER.md \"Reproducing the paper's SD2 experiment\")")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--out", default="dvc.yaml", help="dvc.yaml path (actions dvc and use)")
    p.add_argument("--check", action="store_true", help="do not write: exit 1 if --out differs from the table's")
    p.add_argument("--throughput", help="estimate: JSON of seconds per image replacing the defaults (from --measure)")
    p.add_argument("--measure", metavar="FILE", help="estimate: first measure seconds per image on this machine with "
                   "the configured model and write them to FILE")
    args = p.parse_args(rest)
    try:
        params = load_params(args.params)
        if args.action == "use":
            _check_inputs(params, args.params)
    except ConfigError as err:
        print(f"pgraft pipeline: error: {err}", file=sys.stderr)
        return 2
    raw = yaml.safe_load(Path(args.params).read_text())
    if args.action == "show":
        return _show(raw)
    if args.action == "estimate":
        return _estimate(args, params, raw)
    if args.action == "use" and Path(args.params).resolve() != Path("params.yaml").resolve():
        from pgraft.io import atomic_path

        with atomic_path(Path("params.yaml")) as tmp:  # the file every stage and both engines read
            tmp.write_bytes(Path(args.params).read_bytes())
        print(f"params.yaml: now a copy of {args.params} (`git checkout params.yaml dvc.yaml` restores the default)")
    return _write_dvc_yaml(raw, Path(args.out), args.check)


def _write_dvc_yaml(raw: dict, out, check: bool) -> int:
    from pgraft.io import atomic_path
    from pgraft.pipeline.dvc_yaml import render, stale_lock_entries

    from pgraft.pipeline import stamps
    from pgraft.pipeline.table import STAMPS

    text = render(raw)
    stamps_dir = out.parent / STAMPS
    if check:
        fresh = out.exists() and out.read_text() == text
        print(f"{out}: {'up to date' if fresh else 'STALE: run `pgraft pipeline dvc`'}")
        old = stamps.stale(raw, out.parent, stamps_dir)
        print(f"{stamps_dir}: " + (f"{len(old)} STALE (run `pgraft pipeline dvc`): {old[:3]}" if old else "up to date"))
        return 0 if fresh and not old else 1
    changed = stamps.write(raw, out.parent, stamps_dir)  # after a code edit: what DVC then reruns
    print(f"{stamps_dir}: {len(changed)} stamp(s) rewritten")
    if out.exists() and out.read_text() == text:
        print(f"{out}: up to date")
    else:
        with atomic_path(out) as tmp:
            tmp.write_text(text)
        print(f"{out}: written from the stage table")
    lock = out.with_name("dvc.lock")
    dropped = stale_lock_entries(raw, lock)
    if dropped:  # rewritten by DVC's own YAML writer, the way DVC writes it
        from dvc.utils.serialize import modify_yaml

        with modify_yaml(lock) as data:
            for name in dropped:
                data.get("stages", {}).pop(name, None)
        print(f"{lock}: dropped {len(dropped)} entries of stages dvc.yaml no longer has")
    return 0


def _check_inputs(params, source: str) -> None:
    """Before any compute: each diffusion domain's sampler builds (a pretrained base's scheduler config is read
    from its files) and a prompt-conditioned domain's prompt pool reads; a missing base model or prompt file
    stops here, naming its key."""
    from pgraft import domains
    from pgraft.errors import ConfigError

    for name in params.reward_domains:
        domain = domains.build(name, params)
        try:
            domain.schedule(params.sampler)
            pools = [domain.prompts(split) for split in ("train", "heldout")] if domain.conditional else []
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        found = (["base model found (its scheduler config reads)"] if domain.pretrained else []) + \
            ([f"{len(pools[0])} training and {len(pools[1])} held-out prompts"] if pools else [])
        if found:
            print(f"{source}: {name}: {'; '.join(found)}")


def _estimate(args, params, raw: dict) -> int:
    from pgraft.errors import ConfigError
    from pgraft.pipeline import estimate as est

    try:
        if args.measure:
            from pgraft.io import write_json

            if not params.reward_domains:
                raise ConfigError(f"{args.params}: --measure needs a diffusion domain in domains")
            domain = params.reward_domains[0]
            measured = est.measure(params, domain)
            write_json(args.measure, measured)
            print(f"{args.measure}: seconds per image measured with {domain} on {measured[est.MEASURED_ON]['device']}")
        throughput, source = est.read_throughput(args.measure or args.throughput)
        rows = est.estimate(raw, throughput)
    except ConfigError as err:
        print(f"pgraft pipeline: error: {err}", file=sys.stderr)
        return 2
    print(est.report(rows, throughput, source, args.params, est.notes(params)))
    return 0


def _show(raw: dict) -> int:
    from pathlib import Path

    from pgraft.pipeline import stamps
    from pgraft.pipeline.code_deps import stage_files
    from pgraft.pipeline.table import STAGES, domain_list, instances, params_keys

    full = stamps.resolved(raw)

    for stage in STAGES:
        domains = domain_list(stage, raw) if stage.domains else [None]
        n = sum(1 for _ in instances(stage, raw))
        print(f"{stage.name}: {n} job(s), axes {list(stage.axes) or '-'}, module {stage.module}")
        for d in domains:
            files = stage_files(stage.module, d, Path("."), stamps.rules_of(d, full))
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
    from pgraft.tracking import spool as tracking

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
    from pgraft.tracking import sync as tracking_sync

    stats = tracking_sync.sync(t.uri, t.experiment, pipeline=args.pipeline, force=args.force)
    print(json.dumps(stats))
    return 0 if stats["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
