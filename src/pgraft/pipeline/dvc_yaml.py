"""dvc.yaml written from the stage table: one matrix stage per (stage, domain), exact params and code deps."""

from __future__ import annotations

from pathlib import Path

import yaml

from pgraft.pipeline.code_deps import stage_files
from pgraft.pipeline.table import AXIS_SOURCE, STAGES, VALIDATED, Stage, domain_list, params_keys

HEADER = """\
# GENERATED from the stage table in src/pgraft/pipeline/table.py by `pgraft pipeline dvc` (make repro runs it):
# do not edit by hand. One stage per (stage, domain) so that each depends on exactly the params keys it reads
# and the source files its module imports for that domain; seeds, truncation points and n stay matrices over
# params.yaml. Regenerate after changing `domains`, `ddpo.domains`, `inc.domains`, `plugins` or the code's
# imports (the validate stage refuses a stale dvc.yaml). The same table drives workflow/Snakefile.
"""

PLOTS = [
    {"results/plots/vs_k": {"x": "k", "y": "value"}},
    {"results/plots/tradeoff": {"x": "dist_target", "y": "reward_mean"}},
]


def _dvc_fmt(domain: str | None):
    def fmt(kind: str, value) -> str:
        if kind == "axis":
            return domain if value == "domain" else "${item.%s}" % value
        if kind == "param":
            return "${%s}" % value
        return _pattern(value.pattern, domain)
    return fmt


def _pattern(pattern: str, domain: str | None) -> str:
    text = pattern.replace("{domain}", domain) if domain else pattern
    for axis in AXIS_SOURCE:
        text = text.replace("{%s}" % axis, "${item.%s}" % axis)
    return text


def _outs(stage: Stage, domain: str | None) -> tuple[list, list]:
    outs, metrics = [], []
    for p in stage.outputs:
        path = _pattern(p.pattern, domain)
        if p.kind == "metric":
            metrics.append({path: {"cache": False}})
        elif p.kind == "plain":
            outs.append({path: {"cache": False}})
        elif p.kind == "stamp":
            outs.append({path: {"cache": False, "persist": True}})
        else:
            outs.append(path)
    return outs, metrics


def _entry(stage: Stage, domain: str | None, raw: dict, root: Path) -> dict:
    entry: dict = {}
    matrix = {a: "${%s}" % AXIS_SOURCE[a] for a in stage.axes if a != "domain"}
    if matrix:
        entry["matrix"] = matrix
    entry["cmd"] = stage.command(_dvc_fmt(domain))
    code = stage_files(stage.module, domain, root)
    deps = [*code]
    if stage.name != "validate":
        deps.append(VALIDATED)
    deps += [_pattern(p.pattern, domain) for p in stage.inputs]
    entry["deps"] = deps
    keys = params_keys(stage, domain, raw)
    if keys:
        entry["params"] = keys
    outs, metrics = _outs(stage, domain)
    if outs:
        entry["outs"] = outs
    if metrics:
        entry["metrics"] = metrics
    return entry


def stage_key(stage: Stage, domain: str | None) -> str:
    return f"{stage.name}-{domain}" if domain else stage.name


def render(raw: dict, root: Path = Path(".")) -> str:
    """The text of dvc.yaml for the raw params (its domain lists) and the code as it is now."""
    stages: dict = {}
    for stage in STAGES:
        domains = domain_list(stage, raw) if stage.domains else [None]
        for domain in domains:
            stages[stage_key(stage, domain)] = _entry(stage, domain, raw, root)
    body = yaml.safe_dump({"stages": stages, "plots": PLOTS}, sort_keys=False, width=120)
    return HEADER + body


def stale(raw: dict, dvc_yaml: Path, root: Path = Path(".")) -> bool:
    """True when dvc.yaml differs from what the stage table generates for these params."""
    return not dvc_yaml.exists() or dvc_yaml.read_text() != render(raw, root)

