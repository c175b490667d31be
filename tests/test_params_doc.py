"""docs/PARAMETERS.md is what its generator writes from the params schema and params.yaml's comments."""

from __future__ import annotations

from pathlib import Path

from pgraft.config import json_schema
from pgraft.report import params_doc

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "PARAMETERS.md"
PARAMS = ROOT / "params.yaml"


def test_the_committed_parameters_doc_is_what_the_generator_writes():
    text = DOC.read_text()
    expected = params_doc.document(params_doc.intro_of(text), PARAMS.read_text())
    assert text == expected, "docs/PARAMETERS.md is stale: run `python -m pgraft.report.params_doc`"


def test_every_key_of_the_schema_has_an_entry():
    text, schema = DOC.read_text(), json_schema()
    keys = params_doc.walk(params_doc.sources(schema, {}), schema, "", {})
    missing = [k.path for k in keys if k.section and "." not in k.path and f"### `{k.path}`" not in text]
    missing += [k.path for k in keys if not (k.section and "." not in k.path) and f"- `{k.path}` (" not in text]
    assert not missing, f"keys without an entry: {missing}"


def test_comments_come_from_the_key_line_the_lines_above_or_a_commented_out_key():
    text = ("# the file's header\n\na: 1  # the a\n# about b\nb:\n  c: 2   # the c\n  # d: [x]   # off by default\n"
            "  e: '#no' # the e\n  - 3\n")
    assert params_doc.yaml_comments(text) == {"a": "the a", "b": "about b", "b.c": "the c", "b.d": "off by default",
                                              "b.e": "the e"}


def test_an_entry_has_type_bounds_default_and_description():
    schema = {"title": "Tiny", "properties": {
        "n": {"type": "integer", "minimum": 1, "default": 3},
        "names": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "sec": {"anyOf": [{"$ref": "#/$defs/Sec"}, {"type": "null"}], "default": None}},
        "required": ["names"],
        "$defs": {"Sec": {"title": "Sec", "description": "A section.", "properties": {
            "mode": {"enum": ["a", "b"], "default": "a", "description": "the <mode>"}}}}}
    md = params_doc.markdown(schema, {"n": "the n", "names": "the names"}).splitlines()
    assert "- `n` (int, ≥ 1; default `3`): the n" in md
    assert "- `names` (list of str, non-empty; default required): the names" in md
    assert "### `sec`" in md and "A section." in md  # a section's heading and its model's description
    assert '- `sec.mode` (one of `a` / `b`; default `"a"`): the \\<mode>' in md  # the schema's description first


def test_the_intro_is_everything_above_the_marker():
    text = f"# Title\n\nhand-written\n\n{params_doc.MARKER}\n\ngenerated\n"
    assert params_doc.intro_of(text) == "# Title\n\nhand-written\n"
