"""The source files a stage instance runs, from the import graph of its module (grimp): never a hand list."""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

PACKAGE = "pgraft"
REGISTRY_PACKAGE = "pgraft.domains"  # imports every built-in domain: a stage sees its own domain only


@lru_cache(maxsize=1)
def _graph():
    import grimp

    return grimp.build_graph(PACKAGE, cache_dir=None)


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


def closure(start: set[str], stop: set[str], skip: set[str]) -> set[str]:
    """Modules reachable from `start` through imports; `stop` modules are kept but not followed, `skip` dropped."""
    graph = _graph()
    seen: set[str] = set()
    todo = list(start)
    while todo:
        m = todo.pop()
        if m in seen or m in skip - start:
            continue
        seen.add(m)
        if m in stop - start or m not in graph.modules:
            continue
        todo += graph.find_modules_directly_imported_by(m)
    parents = {m.rsplit(".", i)[0] for m in seen for i in range(1, m.count(".") + 1)}
    return seen | parents


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


def stage_modules(module: str, domain: str | None) -> set[str]:
    """The modules a stage runs for one domain: its own closure stopped at the domain registry, plus its domain's
    module and what that imports (other domains' modules left out). Without a domain: the whole closure."""
    if domain is None:
        return closure({module}, set(), set())
    owners = domain_modules()
    own = owners[domain]
    start = {module, own}
    if own not in _graph().modules:  # a plugin domain: follow what it imports from the package
        start |= package_imports(own)
    return closure(start, {REGISTRY_PACKAGE}, set(owners.values()) - {own})


def checkout() -> Path:
    """The directory holding src/pgraft (stage files of the package are named relative to it)."""
    return _package_root().parent.parent


def stage_files(module: str, domain: str | None, root: Path) -> list[str]:
    """The source files of `stage_modules`, sorted: the package's relative to its checkout (src/pgraft/...),
    an out-of-tree module's relative to `root` where it lies under it."""
    out = set()
    for m in stage_modules(module, domain):
        f = module_file(m).resolve()
        for base in (checkout(), Path(root).resolve()):
            if f.is_relative_to(base):
                out.add(f.relative_to(base).as_posix())
                break
        else:
            out.add(f.as_posix())
    return sorted(out)
