"""Stage validate: refuse bad params before any other stage runs (and so before any output is removed)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DOC = ("Validate params.yaml (keys, values and cross-field rules) and, under DVC, that dvc.yaml is the one the "
       "stage table generates for these params. Every other stage depends on this one, so a bad edit stops "
       "the run here, before an engine removes any output. Writes a stamp whose content never changes.")
STAMP = "params valid\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="pgraft validate-stage", description=DOC)
    p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    p.add_argument("--out", required=True, help="stamp file written when the params are valid")
    args = p.parse_args(argv)
    from pgraft.errors import ConfigError
    from pgraft.config import load_params
    from pgraft.io import atomic_path

    try:
        load_params(args.params)
        if os.environ.get("DVC_STAGE"):  # set by DVC for every stage command
            _check_dvc_yaml(args.params)
    except ConfigError as err:
        print(f"pgraft validate: error: {err}", file=sys.stderr)
        return 2
    with atomic_path(args.out) as tmp:
        tmp.write_text(STAMP)
    return 0


def _check_dvc_yaml(params_path: str) -> None:
    import yaml

    from pgraft.errors import ConfigError
    from pgraft.pipeline.dvc_yaml import stale

    root = Path(os.environ.get("DVC_ROOT", "."))
    raw = yaml.safe_load(Path(params_path).read_text())
    if stale(raw, root / "dvc.yaml", root):
        raise ConfigError("dvc.yaml is not the one the stage table generates for params.yaml (its domain lists "
                          "or the code's imports changed): run `pgraft pipeline dvc` (or `make repro`)")


if __name__ == "__main__":
    raise SystemExit(main())
