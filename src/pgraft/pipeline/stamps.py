"""Stamps: one small file per (stage, domain) holding the params values and source digests that stage runs with.

Under DVC every stage instance depends on its stamp instead of listing its params keys and source files itself:
the `validate` stage rewrites the stamps (only those whose content changed), and DVC reruns an instance when its
stamp's content changed. One file to check per instance keeps DVC's per-stage work and dvc.lock small (no
params.yaml parse and no list of source files per instance), and the rerun set is the same as if the instance
declared its params keys and files: the stamp holds exactly those.
"""

from __future__ import annotations

import json
from pathlib import Path

from pgraft.io import atomic_path, file_digest
from pgraft.pipeline.code_deps import checkout, stage_files
from pgraft.pipeline.table import BY_NAME, Stage, lookup, params_keys, stamp_path, stamped


def content(stage: Stage, domain: str | None, raw: dict, root: Path) -> str:
    """The stamp text of one (stage, domain): its params keys' raw values and its source files' sha256."""
    params = {key: lookup(raw, key) for key in params_keys(stage, domain, raw)}
    code = {f: file_digest(_locate(f, root)) for f in stage_files(stage.module, domain, root)}
    return json.dumps({"stage": stage.name, "domain": domain, "params": params, "code": code},
                      indent=1, sort_keys=True, default=str) + "\n"


def code_files(raw: dict, root: Path) -> list[str]:
    """Every source file some stamp covers (what the validate stage depends on), sorted."""
    files = set(stage_files(BY_NAME["validate"].module, None, root))
    for stage, domain in stamped(raw):
        files |= set(stage_files(stage.module, domain, root))
    return sorted(files)


def write(raw: dict, root: Path, out_dir: Path) -> list[str]:
    """Write every stamp whose content changed (others keep their file and mtime); remove stamps of (stage,
    domain) pairs no longer run. Returns the paths rewritten."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keep, changed = set(), []
    for stage, domain in stamped(raw):
        path = out_dir / Path(stamp_path(stage, domain)).name
        keep.add(path.name)
        text = content(stage, domain, raw, root)
        if not path.exists() or path.read_text() != text:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
            changed.append(str(path))
    for old in out_dir.glob("*.json"):
        if old.name not in keep:
            old.unlink()
    return changed


def _locate(f: str, root: Path) -> Path:
    """A stage file as stage_files names it: relative to the package's checkout or to `root`, else absolute."""
    for base in (checkout(), Path(root)):
        if (base / f).is_file():
            return base / f
    return Path(f)
