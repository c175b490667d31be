"""Stamps change only when behaviour can: what each edit does to the stamps (both engines rerun on a changed stamp)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from pgraft.pipeline import rerun, stamps
from pgraft.pipeline.table import instance_name, instances, stamp_path, stamped

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted((ROOT / "src" / "pgraft").rglob("*.py"))


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="module")
def stamped_now(raw) -> dict[str, dict]:
    return {p: json.loads(t) for p, t in stamps.contents(raw, ROOT).items()}


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {p for p in after if before.get(p) != after[p]}


SOURCE = '''"""A module."""
import os


def f(x, y):
    """Add."""
    return x + y + len(os.sep)  # why


LABEL = "reward"
'''


def test_digest_ignores_comments_docstrings_and_wrapping():
    d = stamps.source_digest(SOURCE)
    assert stamps.source_digest(SOURCE.replace("  # why", "  # another reason") + "# a comment\n") == d
    assert stamps.source_digest(SOURCE.replace('"""Add."""', '"""Add two numbers,\n    wrapped."""')) == d
    assert stamps.source_digest(SOURCE.replace('"""A module."""\n', "")) == d
    assert stamps.source_digest(SOURCE.replace("return x + y + len(os.sep)", "return (x\n            + y + len(\n"
                                                                             "        os.sep))")) == d


def test_digest_sees_code_and_the_strings_code_reads():
    d = stamps.source_digest(SOURCE)
    assert stamps.source_digest(SOURCE.replace("x + y", "x - y")) != d
    assert stamps.source_digest(SOURCE.replace('LABEL = "reward"', 'LABEL = "rewards"')) != d


@pytest.mark.parametrize("path", MODULES, ids=[p.relative_to(ROOT / "src").as_posix() for p in MODULES])
def test_a_comment_or_docstring_in_any_module_changes_no_digest(path):
    text = path.read_text()
    edited = "# a comment at the top\n" + text.replace("\n\n\n", "\n\n\n# a comment between definitions\n", 1)
    assert stamps.source_digest(edited) == stamps.source_digest(text)


def test_infrastructure_is_in_no_stamp_and_the_thread_policy_in_every_one(stamped_now):
    for path, stamp in stamped_now.items():
        code = set(stamp["code"])
        assert not any(f.startswith(("src/pgraft/tracking/", "src/pgraft/runtime/warm.py", "src/pgraft/cli.py",
                                     "src/pgraft/config.py")) for f in code), path
        assert "src/pgraft/runtime/threads.py" in code, path


def test_only_the_configured_rules_module_is_stamped(raw, stamped_now):
    full = stamps.resolved(raw)
    rules = {"best_of_n", "top_k", "threshold", "rejection", "top_k_dedup"}
    for path, stamp in stamped_now.items():
        present = {r for r in rules if f"src/pgraft/filters/{r}.py" in stamp["code"]}
        if stamp["domain"] is None:
            continue  # the report stages check every rule's acceptance law
        assert present <= set(stamps.rules_of(stamp["domain"], full)), (path, present)
    assert "src/pgraft/filters/top_k_dedup.py" in stamped_now["results/stamps/filter-qm9_dedup.json"]["code"]
    assert "src/pgraft/filters/top_k_dedup.py" not in stamped_now["results/stamps/filter-qm9.json"]["code"]


def test_a_rule_edit_reruns_only_the_domains_that_use_it(raw):
    hit = rerun.affected(raw, files=["src/pgraft/filters/top_k_dedup.py"], root=ROOT)
    domains = {n.split("@")[0].split("-", 1)[1] for n in hit if "-" in n.split("@")[0]}
    assert domains == {"qm9_dedup"}, sorted(hit)[:5]


@pytest.mark.parametrize("section,key", [("inc", "tolerance"), ("finetune", "budgets"), ("sampler", "eta")])
def test_a_default_reaches_the_stamps_of_exactly_the_stages_that_read_it(raw, section, key):
    """The stamps hold resolved values: a key left to its default changes the stamps of exactly the stages that
    read it when the default differs from the value written (what changing a params model's default does), and
    none when they agree."""
    before = stamps.contents(raw, ROOT)
    left_out = copy.deepcopy(raw)
    del left_out[section][key]
    changed = _changed(before, stamps.contents(left_out, ROOT))
    if stamps.resolved(left_out)[section][key] == raw[section][key]:
        assert changed == set()
        return
    readers = rerun.directly_changed(raw, keys=[f"{section}.{key}"], root=ROOT) - {"validate"}
    assert changed == {stamp_path(s, p.get("domain")) for s, p in _points(raw) if instance_name(s, p) in readers}
    assert changed


def _points(raw):
    for stage, domain in stamped(raw):
        for point in instances(stage, raw):
            if point.get("domain") == domain:
                yield stage, point


def test_a_library_upgrade_reruns_every_stage_that_imports_it(raw, monkeypatch):
    before = stamps.contents(raw, ROOT)
    real = stamps.library_version
    monkeypatch.setattr(stamps, "library_version", lambda name: "999" if name == "rdkit" else real(name))
    changed = _changed(before, stamps.contents(raw, ROOT))
    importing = {p for p, t in before.items() if "rdkit" in json.loads(t)["libraries"]}
    assert changed == importing
    assert "results/stamps/reward-qm9.json" in changed and "results/stamps/reward-gaussian.json" not in changed


def test_every_stamp_records_python_and_torch(stamped_now):
    import platform

    for path, stamp in stamped_now.items():
        assert stamp["python"] == platform.python_version(), path
    assert "torch" in stamped_now["results/stamps/finetune-gaussian.json"]["libraries"]


def test_the_committed_stamps_are_the_ones_this_code_gives(raw):
    """results/stamps (and so dvc.lock) describe the code as committed: a behaviour edit needs `pgraft pipeline
    dvc` and a rerun of what it changed."""
    assert stamps.stale(raw, ROOT, ROOT / "results" / "stamps") == []
