"""Stage validate: refuse bad params before any other stage runs (and so before any output is removed)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DOC = ("Validate params.yaml (keys, values and cross-field rules) and, under DVC, that dvc.yaml is the one the "
       "stage table generates for these params; then write one stamp per (stage, domain) with what can change "
       "that stage's outputs: resolved params values, syntax-tree digests of its modules, library versions (only "
       "stamps whose content changed are rewritten). Every other stage depends on its stamp, so a bad edit stops "
       "the run here, before an engine removes any output.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pgraft validate-stage", description=DOC)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--stamps", required=True, help="directory of the per-(stage, domain) stamps")
    args = p.parse_args(argv)
    import yaml

    from pgraft.config import load_params
    from pgraft.errors import ConfigError
    from pgraft.pipeline import stamps

    root = Path(os.environ.get("DVC_ROOT", "."))
    try:
        load_params(args.params)
        raw = yaml.safe_load(Path(args.params).read_text())
        if os.environ.get("DVC_STAGE"):  # set by DVC for every stage command
            _check_dvc_yaml(raw, root)
    except ConfigError as err:
        print(f"pgraft validate: error: {err}", file=sys.stderr)
        return 2
    from pgraft.pipeline.table import STAMPS, STAMPS_DIGEST

    digest_file = Path(args.stamps) / Path(STAMPS_DIGEST).relative_to(STAMPS)
    changed = stamps.write(raw, root, Path(args.stamps), touch=True, digest_file=digest_file)
    print(f"pgraft validate: params valid; {len(changed)} stamp(s) changed", file=sys.stderr)
    return 0


def _check_dvc_yaml(raw: dict, root: Path) -> None:
    from pgraft.errors import ConfigError
    from pgraft.pipeline.dvc_yaml import stale

    if stale(raw, root / "dvc.yaml", root):
        raise ConfigError("dvc.yaml is not the one the stage table generates for params.yaml (its domain lists "
                          "or the code's imports changed): run `pgraft pipeline dvc` (or `make repro`)")


if __name__ == "__main__":
    raise SystemExit(main())
