"""The source files and libraries a stage instance runs, from the import graph of its module (grimp).

What cannot change a number is left out of every stage's set (NOT_STAMPED: the MLflow spool, mirror and sync, the
fork server, the CLI, and config.py, whose effect the stamp records as resolved params values). Registries are
followed to the one entry a stage uses: its own domain's module, and the GRS rule configured for it.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import lru_cache
from pathlib import Path

PACKAGE = "pgraft"
REGISTRY_PACKAGE = "pgraft.domains"  # imports every built-in domain: a stage sees its own domain only
RULES_PACKAGE = "pgraft.filters"  # imports every GRS rule: a stage sees the rules it is configured with
#: modules (and packages: everything under them) in no stage's stamp: they cannot change a stage's outputs. The
#: stage table shapes commands, paths and parsers only, which the engines see in each command itself.
NOT_STAMPED = ("pgraft.tracking", "pgraft.runtime.warm", "pgraft.cli", "pgraft.config", "pgraft.pipeline.table")
#: libraries imported for bookkeeping only (progress bars, params parsing, the import graph): not stamped
NOT_NUMERICAL = frozenset({"tqdm", "grimp", "pydantic", "yaml"})


@lru_cache(maxsize=1)
def _graph():
    import grimp

    return grimp.build_graph(PACKAGE, include_external_packages=True, cache_dir=None)


def _ours(module: str) -> bool:
    return module == PACKAGE or module.startswith(PACKAGE + ".")


def _not_stamped(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in NOT_STAMPED)


def _package_root() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    return Path(spec.origin).parent


def module_file(module: str, root: Path | None = None) -> Path:
    """The source file of a module of the package (a package's __init__.py) or of an out-of-tree module."""
    if module == PACKAGE or module.startswith(PACKAGE + "."):
        base = _package_root().joinpath(*module.split(".")[1:])
        return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin:
        raise ModuleNotFoundError(f"module {module!r} not found")
    return Path(spec.origin)


def domain_modules() -> dict[str, str]:
    """Each registered domain's name and the module that defines it (built-in and plugin domains)."""
    from pgraft.domains import REGISTRY

    return {name: REGISTRY.get(name).__module__ for name in REGISTRY.names()}


def rule_modules() -> dict[str, str]:
    """Each registered GRS rule's name and the module that defines it."""
    from pgraft.filters import REGISTRY

    return {name: cls.__module__ for name, cls in REGISTRY.items()}


def closure(start: set[str], stop: set[str], skip: set[str]) -> set[str]:
    """Modules reachable from `start` through imports; `stop` modules are kept but not followed, `skip` dropped
    (and NOT_STAMPED ones). Libraries (third-party top-level packages) are kept but not followed."""
    graph = _graph()
    seen: set[str] = set()
    todo = list(start)
    while todo:
        m = todo.pop()
        if m in seen or (m not in start and (m in skip or _not_stamped(m))):
            continue
        seen.add(m)
        if m in stop - start or m not in graph.modules or not _ours(m):
            continue
        todo += graph.find_modules_directly_imported_by(m)
    ours = {m for m in seen if _ours(m) or m in start}
    parents = {m.rsplit(".", i)[0] for m in ours for i in range(1, m.count(".") + 1)}
    return seen | parents


def libraries(modules: set[str]) -> list[str]:
    """The third-party top-level packages among `modules` (the standard library and our own left out)."""
    return sorted(m for m in modules if "." not in m and not _ours(m) and m not in sys.stdlib_module_names
                  and m not in NOT_NUMERICAL and m in _graph().modules)


def package_imports(module: str) -> set[str]:
    """The modules of the package that an out-of-tree module (a plugin domain) imports, read from its source."""
    import ast

    tree = ast.parse(module_file(module).read_text())
    found = set()
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
        found |= {n for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")}
    return {n for n in found if n in _graph().modules}


def stage_modules(module: str, domain: str | None, rules: tuple[str, ...] | None = None) -> set[str]:
    """The modules (and libraries) a stage runs for one domain: its own closure stopped at the domain registry,
    plus its domain's module and what that imports (other domains' modules left out); the GRS rules package
    followed to the modules of `rules` only (None: every rule). Without a domain: every domain."""
    owners, by_rule = domain_modules(), rule_modules()
    skip = set() if rules is None else set(by_rule.values()) - {by_rule[r] for r in rules}
    if domain is None:
        return closure({module}, set(), skip)
    own = owners[domain]
    start = {module, own}
    if own not in _graph().modules:  # a plugin domain: follow what it imports from the package
        start |= package_imports(own)
    if rules is not None and RULES_PACKAGE in closure(start, {REGISTRY_PACKAGE, RULES_PACKAGE}, skip):
        start |= {by_rule[r] for r in rules}  # the rules package builds them by name: no import edge to follow
    return closure(start, {REGISTRY_PACKAGE, RULES_PACKAGE} if rules is not None else {REGISTRY_PACKAGE},
                   skip | set(owners.values()) - {own})


def checkout() -> Path:
    """The directory holding src/pgraft (stage files of the package are named relative to it)."""
    return _package_root().parent.parent


def stage_files(module: str, domain: str | None, root: Path, rules: tuple[str, ...] | None = None) -> list[str]:
    """The source files of `stage_modules`, sorted: the package's relative to its checkout (src/pgraft/...),
    an out-of-tree module's relative to `root` where it lies under it."""
    out = set()
    for m in stage_modules(module, domain, rules):
        if m in _graph().modules and not _ours(m):
            continue  # a library: stamped by its version (pgraft.pipeline.stamps)
        f = module_file(m).resolve()
        for base in (checkout(), Path(root).resolve()):
            if f.is_relative_to(base):
                out.add(f.relative_to(base).as_posix())
                break
        else:
            out.add(f.as_posix())
    return sorted(out)
