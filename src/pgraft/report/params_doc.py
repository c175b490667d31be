"""docs/PARAMETERS.md: a hand-written introduction, then every params key generated from the params schema."""

from __future__ import annotations

import argparse
import json
import re
import textwrap
import typing
from dataclasses import dataclass
from pathlib import Path

#: the line between the hand-written introduction (above, kept as it is) and the generated reference (below)
MARKER = "<!-- Generated below by `python -m pgraft.report.params_doc` from the params schema: do not edit. -->"
WIDTH = 120
LONG_DEFAULT = 60  # characters: a longer default is named, not printed
SCALARS = {"integer": "int", "number": "float", "string": "str", "boolean": "bool", "null": "null"}
KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][A-Za-z0-9_]*):(?P<rest>.*)$")
MISSING = object()


@dataclass(frozen=True)
class Key:
    """One documented params key."""

    path: str  # dotted, e.g. sampler.num_steps
    type: str
    default: str  # the markdown of the built-in default
    description: str
    section: bool = False  # a nested section (its keys follow)


def split_comment(rest: str) -> tuple[str, str]:
    """(value, comment) of the text after `key:`; a `#` inside quotes is part of the value."""
    quote = None
    for i, ch in enumerate(rest):
        if ch in "'\"" and quote in (None, ch):
            quote = None if quote else ch
        elif ch == "#" and quote is None and (i == 0 or rest[i - 1].isspace()):
            return rest[:i].strip(), rest[i + 1:].strip()
    return rest.strip(), ""


def key_line(line: str) -> tuple[int, str, str] | None:
    """(indent, key, comment) of a `key: value  # comment` line, also of a commented-out key (`# key: value  # c`)."""
    m = KEY.match(line)
    if m is None:
        out = re.match(r"^(?P<indent> *)# (?P<body>[A-Za-z_][A-Za-z0-9_]*:.*#.*)$", line)
        if out is None:
            return None
        m = KEY.match(out["indent"] + out["body"])
    return len(m["indent"]), m["key"], split_comment(m["rest"])[1]


def yaml_comments(text: str) -> dict[str, str]:
    """Dotted key path -> its comment in a params file: the comment on the key's line, else the full-line comments
    right above it."""
    comments, stack, above = {}, [], []
    for line in text.splitlines():
        parsed = key_line(line)
        if parsed is None:
            stripped = line.strip()
            above = above + [stripped.lstrip("#").strip()] if stripped.startswith("#") else []
            continue
        indent, key, comment = parsed
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key))
        note = comment or " ".join(above)
        if note:
            comments[".".join(k for _, k in stack)] = note
        above = []
    return comments


def resolve(schema: dict, node: dict) -> tuple[dict, bool]:
    """(the node a `$ref` or a nullable `anyOf` of one model points to, whether null is allowed)."""
    options = node.get("anyOf")
    if options:
        models = [o for o in options if o.get("type") != "null"]
        if len(models) == 1 and "$ref" in models[0]:
            return resolve(schema, models[0])[0], len(models) < len(options)
    if "$ref" in node:
        return schema["$defs"][node["$ref"].rsplit("/", 1)[-1]], False
    return node, False


def bounds(node: dict) -> str:
    """`≥ 1, ≤ 16`: the numeric and length bounds of a schema node ("" without)."""
    parts = [f"{sign} {node[key]}" for key, sign in (("minimum", "≥"), ("exclusiveMinimum", ">"),
                                                      ("maximum", "≤"), ("exclusiveMaximum", "<")) if key in node]
    for key, unit in (("minItems", "items"), ("minLength", "characters")):
        if key in node:
            parts.append("non-empty" if node[key] == 1 else f"≥ {node[key]} {unit}")
    return ", ".join(parts)


def type_text(schema: dict, node: dict) -> str:
    """A short type of a schema node: `int ≥ 1`, `list of int`, one of `a` / `b`, `X or null`, ..."""
    if "anyOf" in node:
        return " or ".join(type_text(schema, o) for o in node["anyOf"])
    if "$ref" in node:
        return node["$ref"].rsplit("/", 1)[-1]
    if "enum" in node:
        return "one of " + " / ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type")
    if kind == "array":
        text = "list of " + type_text(schema, node.get("items", {}))
    elif kind == "object":
        extra = node.get("additionalProperties")
        text = "mapping" + (f" to {type_text(schema, extra)}" if isinstance(extra, dict) else "")
    else:
        text = SCALARS.get(kind, kind or "any")
    limits = bounds(node)
    return f"{text}, {limits}" if limits else text


def models_by_title(model, found: dict | None = None) -> dict[str, type]:
    """Every pydantic model reachable from `model`'s fields, by class name (the schema's `title`)."""
    from pydantic import BaseModel

    found = {} if found is None else found
    found[model.__name__] = model
    for field in model.model_fields.values():
        pending = [field.annotation]
        while pending:
            t = pending.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                if t.__name__ not in found:
                    models_by_title(t, found)
            else:
                pending += list(typing.get_args(t))
    return found


def factory_default(models: dict, title: str | None, name: str):
    """A field's default from its pydantic model, default factories called (MISSING when it has none)."""
    field = models[title].model_fields.get(name) if title in models else None
    if field is None or field.is_required():
        return MISSING
    return field.get_default(call_default_factory=True)


def default_text(value, required: bool) -> str:
    """The markdown of a default: `20`, `null`, "required", "none fixed" or a pointer for a long one."""
    if required:
        return "required"
    if value is MISSING:
        return "none fixed"
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    text = json.dumps(value, ensure_ascii=False)
    return f"`{text}`" if len(text) <= LONG_DEFAULT else "long (`pgraft validate` prints it)"


def describe(node: dict, comment: str) -> str:
    """The schema's description of a key (its model's, for a section), else the params file's comment."""
    text = node.get("description") or comment or ""
    return " ".join(text.split()).replace("<", "\\<")


@dataclass(frozen=True)
class Sources:
    """What `walk` reads besides the schema node: the whole schema, the pydantic models by title, the comments and
    the top-level section of each model title (for a domain's own override of such a section)."""

    schema: dict
    models: dict
    comments: dict
    tops: dict


def fallback(src: Sources, path: str, twin: str | None) -> str:
    """The params file's comment on a key, else (a domain's own override section) a pointer to its top-level twin."""
    if path in src.comments or twin is None:
        return src.comments.get(path, "")
    return f"as `{twin}`, for this domain only"


def walk(src: Sources, node: dict, prefix: str, inherited: dict, twin: str | None = None) -> list[Key]:
    """Every key below `node` (a model), depth first. A default comes from the schema, else from the parent's
    default, else from the pydantic field (its factory called)."""
    keys = []
    for name, prop in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        target, nullable = resolve(src.schema, prop)
        default = prop.get("default", inherited.get(name, factory_default(src.models, node.get("title"), name)))
        required = name in node.get("required", ())
        sub = f"{twin}.{name}" if twin else None
        if "properties" in target:
            top = src.tops.get(target.get("title"))
            sub = top if prefix and top and top != path else sub
            desc = describe(prop if "description" in prop else target, fallback(src, path, sub))
            shown = default_text(default, required) if default is None else "its keys' defaults"
            keys.append(Key(path, "section, optional" if nullable else "section", shown, desc, section=True))
            keys += walk(src, target, path, default if isinstance(default, dict) else {}, sub)
        else:
            keys.append(Key(path, type_text(src.schema, prop), default_text(default, required),
                            describe(prop, fallback(src, path, sub))))
    return keys


def sources(schema: dict, comments: dict) -> Sources:
    """The Sources of the params schema, with the models of pgraft.config."""
    from pgraft.config import params_model

    tops = {}
    for name, prop in schema["properties"].items():
        title = resolve(schema, prop)[0].get("title")
        tops.setdefault(title, name)
    return Sources(schema, models_by_title(params_model()), comments, tops)


def entry(key: Key) -> str:
    """One key as a wrapped markdown list item."""
    text = f"- `{key.path}` ({key.type}; default {key.default})" + (f": {key.description}" if key.description else "")
    return textwrap.fill(text, WIDTH, subsequent_indent="  ", break_on_hyphens=False, break_long_words=False)


def markdown(schema: dict | None = None, comments: dict | None = None) -> str:
    """The generated reference: every params key with its type, built-in default and description, one heading per
    top-level section (the top-level lists and scalars first)."""
    from pgraft.config import json_schema

    schema = json_schema() if schema is None else schema
    keys = walk(sources(schema, comments or {}), schema, "", {})
    top = [k for k in keys if "." not in k.path and not k.section]
    intro = ("Type, built-in default (what a key left out of the params file takes; `params.yaml` may set another "
             "value) and meaning. A section marked optional may be left out; a domain's section is needed when the "
             "domain is listed in `domains`.")
    lines = ["## Every key", "", textwrap.fill(intro, WIDTH), "", "### Top level", ""]
    lines += [entry(k) for k in top]
    for head in (k for k in keys if "." not in k.path and k.section):
        lines += ["", f"### `{head.path}`", ""]
        if head.description:
            lines += [textwrap.fill(head.description, WIDTH, break_on_hyphens=False), ""]
        lines += [entry(k) for k in keys if k.path.startswith(head.path + ".")]
    return "\n".join(lines) + "\n"


def intro_of(text: str) -> str:
    """The hand-written part of a PARAMETERS.md: everything above the marker line."""
    if MARKER not in text:
        raise ValueError(f"no marker line {MARKER!r}: the generated part cannot be placed")
    return text.split(MARKER, 1)[0].rstrip("\n") + "\n"


def document(intro: str, params_text: str) -> str:
    """The whole PARAMETERS.md: the hand-written intro, the marker, then `markdown` with the params file's
    comments as the descriptions the schema lacks."""
    return f"{intro.rstrip()}\n\n{MARKER}\n\n{markdown(comments=yaml_comments(params_text))}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pgraft.report.params_doc",
                                description="Rewrite the generated part of docs/PARAMETERS.md (below its marker line).")
    p.add_argument("--out", default="docs/PARAMETERS.md", help="the file to rewrite (its introduction is kept)")
    p.add_argument("--params", default="params.yaml", help="params file whose comments describe the keys")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.write_text(document(intro_of(out.read_text()), Path(args.params).read_text()))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
