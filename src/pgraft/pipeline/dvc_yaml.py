"""dvc.yaml written from the stage table: one matrix stage per (stage, domain), exact params and code deps."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from pgraft.pipeline.table import (AXIS_SOURCE, STAGES, STAMPS_DIGEST, Stage, domain_list, instance_name, instances,
                                   stamp_path, stamped)

HEADER = """\
# GENERATED from the stage table in src/pgraft/pipeline/table.py by `pgraft pipeline dvc` (make repro runs it):
# do not edit by hand. One stage per (stage, domain); each depends on its stamp in results/stamps/: the resolved
# params values the stage reads, syntax-tree digests of the modules it runs for that domain, and the versions of
# the libraries they import (an unchanged stamp reruns nothing). The validate stage rewrites the stamps after a
# params edit; after a code edit `pgraft pipeline dvc` does (make repro runs it). Seeds, truncation points and n
# stay matrices over params.yaml. Regenerate after changing `domains`, `ddpo.domains`, `inc.domains` or
# `plugins` (the validate stage refuses a stale dvc.yaml). The same table drives workflow/Snakefile.
"""

PLOT_TEMPLATE = "workflow/dvc_plots/seed_band.json"  # mean over seeds with a ±1 sd band, one line per budget


def _plots(raw: dict) -> list[dict]:
    """`dvc plots show`: per reward domain, reward, distance and diversity vs k (every budget, spread over seeds)
    and the reward-distance trade-off (one point per seed), with named axes and units."""
    from pgraft.config import parse_params
    from pgraft.report.labels import words

    params = parse_params(raw)
    plots = []
    for domain in params.reward_domains:
        w = words(params, domain)
        for metric, label in (("reward_mean", w.reward_axis), ("dist_target", w.target_axis),
                              ("diversity", w.diversity_axis)):
            plots.append({f"{domain}: {metric} vs k": {
                "template": PLOT_TEMPLATE, "x": "k", "y": {f"results/plots/vs_k/{domain}_{metric}.csv": metric},
                "x_label": "truncation point k (fine-tuned sampler steps)", "y_label": label,
                "title": f"{domain}: {label} vs k (mean ± sd over seeds)"}})
        plots.append({f"{domain}: trade-off": {
            "template": "scatter", "x": "dist_target", "y": {f"results/plots/tradeoff/{domain}.csv": "reward_mean"},
            "x_label": w.target_axis, "y_label": w.reward_axis,
            "title": f"{domain}: reward vs distance to the tilted target (one point per seed, k and budget)"}})
    return plots


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


def _outs(stage: Stage, domain: str | None, raw: dict) -> tuple[list, list]:
    outs, metrics = [], []
    for p in stage.outputs:
        path = _pattern(p.pattern, domain)
        if p.kind == "metric":
            metrics.append({path: {"cache": False}})
        elif p.kind == "plain":
            outs.append({path: {"cache": False}})
        elif p.kind == "stamps":
            outs += [{stamp_path(s, d): {"cache": False, "persist": True}} for s, d in stamped(raw)]
            outs.append({STAMPS_DIGEST: {"cache": False, "persist": True}})
        else:
            outs.append(path)
    return outs, metrics


def _entry(stage: Stage, domain: str | None, raw: dict, root: Path) -> dict:
    entry: dict = {}
    matrix = {a: "${%s}" % AXIS_SOURCE[a] for a in stage.axes if a != "domain"}
    if matrix:
        entry["matrix"] = matrix
    entry["cmd"] = stage.command(_dvc_fmt(domain))
    if stage.name == "validate":  # reads every params key; tracks params.yaml whole (exp show). Code edits reach
        # the stamps through `pgraft pipeline dvc` (make repro runs it) or Snakemake's validate rule
        entry["deps"] = [p.pattern for p in stage.inputs]
        entry["params"] = [{"params.yaml": None}]
    else:
        entry["deps"] = [stamp_path(stage, domain), *(_pattern(p.pattern, domain) for p in stage.inputs)]
    outs, metrics = _outs(stage, domain, raw)
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
    body = yaml.safe_dump({"stages": stages, "plots": _plots(raw)}, sort_keys=False, width=120, allow_unicode=True)
    return HEADER + body


def stage_names(raw: dict) -> set[str]:
    """The names DVC gives the stages of the dvc.yaml `render` writes (one per matrix point)."""
    return {instance_name(stage, point) for stage in STAGES for point in instances(stage, raw)}


_LOCK_ENTRY = re.compile(r"^  ([^\s#][^:]*):\s*$", re.M)  # a stage's line in dvc.lock (two-space indent)


def stale_lock_entries(raw: dict, lock: Path) -> list[str]:
    """The dvc.lock entries of stages that dvc.yaml no longer has (renamed stages, dropped domains, seeds or
    truncation points): DVC keeps them forever, and every `dvc status` / `dvc repro` parses them again.
    `pgraft pipeline dvc` drops them."""
    if not lock.exists():
        return []
    return sorted(set(_LOCK_ENTRY.findall(lock.read_text())) - stage_names(raw))


def stale(raw: dict, dvc_yaml: Path, root: Path = Path(".")) -> bool:
    """True when dvc.yaml differs from what the stage table generates for these params."""
    return not dvc_yaml.exists() or dvc_yaml.read_text() != render(raw, root)

