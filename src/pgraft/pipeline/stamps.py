"""Stamps: one small file per (stage, domain) holding what can change that stage's outputs, and nothing else.

A stamp records the resolved values of the params keys the stage reads (defaults filled in), a digest of each
source module it runs taken over the module's syntax tree without docstrings (comments, line wrapping and
docstrings cost nothing; string constants that code reads stay hashed), the versions of the libraries those
modules import, and the Python version. Infrastructure that cannot change a number (MLflow tracking, the fork
server, the CLI) is in no stamp (pgraft.pipeline.code_deps.NOT_STAMPED). Both engines rerun a stage instance
exactly when its stamp's content changes: DVC through the stamp file each stage depends on, Snakemake through
the stamp's digest among the rule's params (docs/PIPELINE.md "Stamps").
"""

from __future__ import annotations

import ast
import hashlib
import json
import platform
from functools import lru_cache
from pathlib import Path

from pgraft.io import atomic_path
from pgraft.pipeline.code_deps import checkout, libraries, stage_files, stage_modules
from pgraft.pipeline.table import DOMAIN_PARAMS, Stage, lookup, run_domains, stamp_path, stamped

FORMAT = 2  # the stamp layout; a new layout reruns everything once


def source_digest(text: str) -> str:
    """sha256 of a module's syntax tree with docstrings (and other bare string statements) removed."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            node.body = [s for s in body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant)
                                                 and isinstance(s.value.value, str))]
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


@lru_cache(maxsize=None)
def _file_digest(path: Path, mtime_ns: int, size: int) -> str:
    return source_digest(path.read_text())


def file_digest(path: Path) -> str:
    """`source_digest` of a file (cached per path, modification time and size)."""
    st = path.stat()
    return _file_digest(path, st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=1)
def _distributions() -> dict[str, list[str]]:
    import importlib.metadata

    return importlib.metadata.packages_distributions()


def library_version(name: str) -> str | None:
    """The installed version of the distribution that provides import package `name` (None: not installed)."""
    import importlib.metadata

    dists = _distributions().get(name)
    if not dists:
        return None
    return importlib.metadata.version(dists[0])


def resolved(raw: dict) -> dict:
    """The validated params with every default filled in, as plain JSON values."""
    from pgraft.config import parse_params

    return parse_params(raw).model_dump(mode="json")


def params_values(stage: Stage, domain: str | None, raw: dict, full: dict) -> dict:
    """The resolved values of the params keys a stage instance reads: `{domain}` is the domain's section, `*`
    every domain section of the run (report stages)."""
    out = {}
    for key in stage.params:
        if key == DOMAIN_PARAMS:
            out[domain] = full.get(domain)
        elif key == "*":
            out.update({d: full.get(d) for d in run_domains(raw) if d not in out})
        else:
            out[key] = lookup(full, key)
    return out


def rules_of(domain: str | None, full: dict) -> tuple[str, ...] | None:
    """The GRS rule a domain is filtered with (its section's `filter:` or the top-level one); None (every rule)
    for the report stages, which check every registered rule's acceptance law."""
    if domain is None:
        return None
    own = (full.get(domain) or {}).get("filter")
    return ((own or full["filter"])["name"],)


def content(stage: Stage, domain: str | None, raw: dict, root: Path, full: dict | None = None) -> str:
    """The stamp text of one (stage, domain)."""
    full = resolved(raw) if full is None else full
    rules = rules_of(domain, full)
    code = {f: file_digest(_locate(f, root)) for f in stage_files(stage.module, domain, root, rules)}
    libs = {name: library_version(name) for name in libraries(stage_modules(stage.module, domain, rules))}
    return json.dumps({"format": FORMAT, "stage": stage.name, "domain": domain,
                       "params": params_values(stage, domain, raw, full), "code": code,
                       "libraries": {k: v for k, v in libs.items() if v is not None},
                       "python": platform.python_version()},
                      indent=1, sort_keys=True, default=str) + "\n"


def contents(raw: dict, root: Path) -> dict[str, str]:
    """Every stamp's path (results/stamps/...) and text under these params and this code."""
    full = resolved(raw)
    return {stamp_path(s, d): content(s, d, raw, root, full) for s, d in stamped(raw)}


def digest(text: str) -> str:
    """A stamp's digest: what Snakemake records among a job's params."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def digest_all(texts: dict[str, str]) -> str:
    """The digest of every stamp (by path): the validate job's params under Snakemake, and its digest file."""
    return digest("".join(texts[k] for k in sorted(texts)))


def write(raw: dict, root: Path, out_dir: Path, touch: bool = False, digest_file: Path | None = None) -> list[str]:
    """Write every stamp whose content changed (others keep their file, and their mtime unless `touch`); remove
    stamps of (stage, domain) pairs no longer run. Returns the paths rewritten. The validate stage touches: its
    outputs are then newer than params.yaml, so Snakemake's mtime check does not plan it again (no job reads a
    stamp's mtime: DVC hashes stamps, Snakemake compares their digests)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    keep, changed = set(), []
    texts = contents(raw, root)
    for name, text in texts.items():
        path = out_dir / Path(name).name
        keep.add(path.name)
        if not path.exists() or path.read_text() != text:
            with atomic_path(path) as tmp:
                tmp.write_text(text)
            changed.append(str(path))
        elif touch:
            path.touch()
    for old in out_dir.glob("*.json"):
        if old.name not in keep:
            old.unlink()
    if digest_file is not None:
        with atomic_path(Path(digest_file)) as tmp:
            tmp.write_text(digest_all(texts) + "\n")
    return changed


def stale(raw: dict, root: Path, out_dir: Path) -> list[str]:
    """The stamps under `out_dir` that differ from what these params and this code give (missing ones too)."""
    out_dir = Path(out_dir)
    return [n for n, text in contents(raw, root).items()
            if not (out_dir / Path(n).name).exists() or (out_dir / Path(n).name).read_text() != text]


def _locate(f: str, root: Path) -> Path:
    """A stage file as stage_files names it: relative to the package's checkout or to `root`, else absolute."""
    for base in (checkout(), Path(root)):
        if (base / f).is_file():
            return base / f
    return Path(f)
