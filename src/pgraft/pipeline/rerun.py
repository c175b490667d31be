"""Which stage instances an edit reruns, predicted from the stage table alone (both engines must agree)."""

from __future__ import annotations

from pathlib import Path

from pgraft.pipeline import stamps
from pgraft.pipeline.code_deps import stage_files
from pgraft.pipeline.table import STAGES, Stage, instance_name, instances, params_keys, stamp_path, stamped


def _overlap(a: str, b: str) -> bool:
    """Two dotted params keys overlap when one is the other or lies inside it."""
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def _jobs(raw: dict):
    for stage in STAGES:
        for point in instances(stage, raw):
            yield stage, point


def _inputs(stage: Stage, point: dict) -> list[str]:
    return [p.pattern.format(**point) for p in stage.inputs]


def _outputs(stage: Stage, point: dict) -> list[str]:
    return [p.pattern.format(**point) for p in stage.outputs]


def downstream(raw: dict, names: set[str]) -> set[str]:
    """`names` and every instance that reads, directly or not, an output of one of them (the validate stamp is
    an order-only input: rewriting it with the same content reruns nothing)."""
    jobs = [(instance_name(s, p), _inputs(s, p), _outputs(s, p)) for s, p in _jobs(raw)]
    out = set(names)
    grew = True
    while grew:
        grew = False
        made = [o for name, _, outs in jobs if name in out for o in outs]
        for name, ins, _ in jobs:
            if name in out:
                continue
            if any(i == o or o.startswith(i + "/") for i in ins for o in made):
                out.add(name)
                grew = True
    return out


def directly_changed(raw: dict, keys: list[str] = (), files: list[str] = (), root: Path = Path(".")) -> set[str]:
    """Instances whose own stamp a behaviour edit changes: a params key they read, a source module they run (an
    edit that changes the module's syntax tree; comments and docstrings change no stamp); validate reads every
    params edit and writes every stamp."""
    out = set()
    full = stamps.resolved(raw)
    for stage, point in _jobs(raw):
        domain = point.get("domain")
        if stage.name == "validate":
            if keys or any(set(files) & set(_files(s, d, root, full)) for s, d in stamped(raw)):
                out.add(instance_name(stage, point))
        elif keys and any(_overlap(k, p) for k in keys for p in params_keys(stage, domain, raw)):
            out.add(instance_name(stage, point))
        elif files and set(files) & set(_files(stage, domain, root, full)):
            out.add(instance_name(stage, point))
    return out


def _files(stage: Stage, domain: str | None, root: Path, full: dict) -> list[str]:
    return stage_files(stage.module, domain, root, stamps.rules_of(domain, full))


def stale_instances(raw: dict, root: Path, stamps_dir: Path) -> set[str]:
    """The instances whose stamp under `stamps_dir` differs from the one these params and this code give, and
    everything downstream of them: what the next run does."""
    changed = {Path(p).name for p in stamps.stale(raw, root, stamps_dir)}
    names = {instance_name(s, pt) for s in STAGES if s.name != "validate" for pt in instances(s, raw)
             if Path(stamp_path(s, pt.get("domain"))).name in changed}
    return downstream(raw, names)


def affected(raw: dict, keys: list[str] = (), files: list[str] = (), root: Path = Path(".")) -> set[str]:
    """Every instance a behaviour edit of params `keys` or source `files` reruns."""
    return downstream(raw, directly_changed(raw, keys, files, root))
