"""Packaging: every import of src/pgraft is a declared dependency, the lock pins them all (and is what is
installed), and `pgraft --version` answers."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import pgraft

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCK = ROOT / "requirements.txt"

# imports that no installed distribution names: an optional extra that is not installed, a module shipped inside
# another distribution's data (RDKit's Contrib/SA_Score, put on sys.path by pgraft.rewards.molecules)
NOT_INSTALLED = {"t2v_metrics": "t2v-metrics", "sascorer": "rdkit"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports() -> dict[str, set[str]]:
    """Top-level module -> the files of src/pgraft that import it (module level and inside functions)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "src" / "pgraft").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top != "pgraft" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def _declared() -> dict[str, Requirement]:
    reqs = [Requirement(r) for r in PYPROJECT["dependencies"]]
    reqs += [Requirement(r) for extra in PYPROJECT["optional-dependencies"].values() for r in extra]
    return {_norm(r.name): r for r in reqs}


def _lock() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$", line)
        if m:
            pins[_norm(m[1])] = m[2]
    return pins


def test_every_third_party_import_is_declared():
    dists = importlib.metadata.packages_distributions()
    declared = _declared()
    missing = {}
    for module, files in _imports().items():
        names = dists.get(module) or [NOT_INSTALLED.get(module, module)]
        if not any(_norm(n) in declared for n in names):
            missing[module] = sorted(files)
    assert not missing, f"imported by src/pgraft but not in pyproject.toml dependencies or extras: {missing}"


def test_lock_pins_every_declared_dependency_within_its_range():
    pins = _lock()
    assert len(pins) > 100, "requirements.txt should be the full lock (`make lock`)"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"  # pinned together, from the local disk
    bad = {}
    for name, req in _declared().items():
        if name == "t2v-metrics":  # extra vqa: not part of the tested environment
            continue
        if name not in pins or not req.specifier.contains(pins[name], prereleases=True):
            bad[name] = (str(req.specifier), pins.get(name))
    assert not bad, f"requirements.txt disagrees with pyproject.toml (run `make lock`): {bad}"
    header = LOCK.read_text()[:600]
    assert "pip-compile" in header and "make lock" in header


def test_installed_environment_is_the_locked_one():
    """What `make setup` installed is the lock, version for version (a drifted venv gives other numbers)."""
    drift = {}
    for name, version in _lock().items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            drift[name] = (version, installed)
    assert not drift, f"installed versions differ from requirements.txt (run `make setup`): {drift}"


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_cli_prints_the_version(flag):
    exe = Path(sys.executable).parent / "pgraft"
    out = subprocess.run([str(exe), flag], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"pgraft {pgraft.__version__}"
    assert importlib.metadata.version("pgraft") == pgraft.__version__


def test_no_project_file_is_git_ignored():
    """A file the workflow or the package reads must reach a fresh clone: an ignore pattern meant for
    generated output (dvc_plots/) once hid the plot template under workflow/ from every checkout."""
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--",
                          "src", "workflow", "tests", "benchmarks", "docs"],
                         cwd=root, capture_output=True, text=True, check=True).stdout.split()
    hidden = [p for p in out if "__pycache__" not in p and ".egg-info" not in p and not p.endswith(".pyc")]
    assert not hidden, f"files the project needs are ignored by .gitignore: {hidden}"
