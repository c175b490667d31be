"""README.md and docs/: a short README whose Layout section matches the tree, and relative links that resolve."""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
MAX_LINES = 200
GENERATED = {"results/figures/REPORT.md"}  # written by the figures stage, so it may be absent from a fresh checkout
LINK = re.compile(r"\]\(([^)\s]+)\)")
MODULES_LINE = "src/pgraft/*.py"


@lru_cache(maxsize=1)
def tracked() -> frozenset[str]:
    """The paths git tracks in the repository (skips the test outside a git checkout)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return frozenset(p for p in out.decode().split("\0") if p)


def section(text: str, title: str) -> str:
    """The body of the `## title` section of a markdown text (empty when there is none)."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    return m.group(1) if m else ""


def layout_lines() -> list[str]:
    """The lines of the code block in README's Layout section."""
    body = section(README.read_text(), "Layout")
    m = re.search(r"^```\n(.*?)^```", body, flags=re.S | re.M)
    return m.group(1).splitlines() if m else []


def layout_folders() -> set[str]:
    """The folders the Layout section names: each line's first word where it ends in "/" (without it)."""
    words = [line.split()[0] for line in layout_lines() if line.strip()]
    return {w.rstrip("/") for w in words if w.endswith("/")}


def layout_modules() -> set[str]:
    """The module names on the Layout line of src/pgraft/*.py."""
    for line in layout_lines():
        if line.startswith(MODULES_LINE):
            text = line[len(MODULES_LINE):].split("(")[0]
            return {w.strip() for w in text.split(",") if w.strip()}
    return set()


def test_readme_is_at_most_200_lines():
    n = len(README.read_text().splitlines())
    assert n <= MAX_LINES, f"README.md has {n} lines; move detail into docs/"


def test_every_top_level_folder_is_in_the_layout():
    folders = {p.split("/")[0] for p in tracked() if "/" in p and not p.startswith(".")}
    named = {f.split("/")[0] for f in layout_folders()}  # src/pgraft/ names src
    missing = sorted(folders - named)
    assert not missing, f"README.md's Layout section does not name the folders {missing}"


def test_every_package_of_src_pgraft_is_in_the_layout():
    packages = {f"src/pgraft/{p.parent.name}" for p in (ROOT / "src" / "pgraft").glob("*/__init__.py")}
    missing = sorted(packages - layout_folders())
    assert not missing, f"README.md's Layout section does not name the packages {missing}"


def test_every_folder_the_layout_names_exists():
    absent = sorted(f for f in layout_folders() if not (ROOT / f).is_dir())
    assert not absent, f"README.md's Layout section names folders that do not exist: {absent}"


def test_the_layout_names_exactly_the_top_level_modules():
    modules = {p.stem for p in (ROOT / "src" / "pgraft").glob("*.py") if p.stem != "__init__"}
    assert layout_modules() == modules, f"README.md's line {MODULES_LINE!r} should name {sorted(modules)}"


def link_targets(path: Path) -> list[str]:
    """The relative file links of a markdown file, without their #fragment (web and in-page links left out)."""
    targets = [t.split("#")[0] for t in LINK.findall(path.read_text())]
    return [t for t in targets if t and "://" not in t and not t.startswith("mailto:")]


def resolves(path: Path, target: str) -> bool:
    """Whether a link of `path` points at a file of the tree; results/ paths must be tracked or generated."""
    full = (path.parent / target).resolve()
    try:
        rel = full.relative_to(ROOT).as_posix()
    except ValueError:
        return False
    if rel.startswith("results/"):
        return rel in tracked() or rel in GENERATED or any(p.startswith(rel + "/") for p in tracked())
    return full.exists()


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(path):
    broken = [t for t in link_targets(path) if not resolves(path, t)]
    assert not broken, f"{path.name}: links to missing files {broken}"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_no_interval_or_p_value_is_typed_by_hand(path):
    text = path.read_text()
    intervals = re.findall(r"\d \[[−-]?\d+(?:\.\d+)?, [−-]?\d+(?:\.\d+)?\]", text)
    p_values = re.findall(r"\bp [=<] 0?\.\d+", text)
    assert not intervals + p_values, f"{path.name}: point to the generated file instead of {intervals + p_values}"
