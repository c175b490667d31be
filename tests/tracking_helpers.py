"""Realistic synthetic stage records: every job of the stage table's matrix spooled as its stage would spool it."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from pgraft.pipeline.table import STAGES, instances, lookup
from pgraft.tracking import spool as tracking


def fake_metrics(stage: str, point: dict, raw: dict, out: Path) -> dict:
    """What each stage's body returns (the shapes of the real ones), with values that depend on the point."""
    k, seed = point.get("k", 0), point.get("seed", 0)
    budgets = raw["finetune"]["budgets"]
    if stage == "pretrain":
        return {"final_loss": 0.5, "steps": 50, "_artifacts": [out / "pretrain.json"]}
    if stage == "sample":
        return {"num_samples": 128, "group_size": 8}
    if stage == "reward":
        return {"reward_mean": 0.1 * seed, "reward_std": 1.0}
    if stage == "filter":
        return {"acceptance_rate": 0.25, "accepted": 32}
    if stage == "finetune":
        return {"accepted": 32, **{f"loss_b{b}": 1.0 / b for b in budgets},
                "_curves": {"train_loss": [[s, 1.0 / s] for s in range(1, budgets[-1] + 1)]}}
    if stage == "evaluate":
        steps = raw["ddpo"]["checkpoints"] if point.get("ddpo") else budgets
        return {**{f"b{b}": {"reward_mean": k + seed + b / 100, "dist_target": 1.0 / (1 + k), "diversity": 2.0}
                   for b in steps}, "target_reward_mean": 4.0, "base_reward_mean": 0.4}
    if stage == "ddpo":
        return {"iterations": 2, "reward_first": 0.1, "reward_last": 0.5}
    if stage == "invert":
        return {"n": point["n"], "converged": True, "roundtrip_max_abs_error": 0.01}
    if stage == "correct":
        return {"final_loss": 0.3, "parameters": 100}
    if stage == "evaluate_flow":
        return {f"{m}_n{n}": {"fid": 30.0 / n, "flops_per_image": 1e6 * n, "n": n}
                for m, steps in (("base", raw["inc"]["base_steps"]), ("inc", raw["inc"]["corrected_steps"]))
                for n in steps}
    if stage == "aggregate":
        return {"rows": 3, "_artifacts": [out / "summary.csv"]}
    return {"figures": 1}


def fake_options(stage, point: dict, out: Path) -> dict:
    """The stage's options (its matrix point and the paths it reads and writes), with small files behind them."""
    opts = {"params": "params.yaml", **{a: v for a, v in point.items() if a != "ddpo"}}
    d, s = point.get("domain"), point.get("seed")
    if stage == "pretrain":
        base = out / d / "base"
        base.mkdir(parents=True, exist_ok=True)
        (base / "config.json").write_text(json.dumps({"domain": d, "model": {}}))
        (out / "pretrain.json").write_text("{}")
        opts["out"] = str(base)
    if stage in ("finetune", "evaluate"):
        samples = out / d / f"seed{s}" / "samples.npz"
        samples.parent.mkdir(parents=True, exist_ok=True)
        samples.write_bytes(b"samples of %s seed %d" % (d.encode(), s))
        opts.update(samples=str(samples), reference=str(samples))
        finetuned = out / d / f"seed{s}" / ("ddpo" if point.get("ddpo") else f"k{point['k']}")
        finetuned.mkdir(parents=True, exist_ok=True)
        (finetuned / "config.json").write_text(json.dumps({"method": "ddpo"} if point.get("ddpo") else {}))
        opts["finetuned"] = str(finetuned)
    if stage == "aggregate":
        (out / "summary.csv").write_text(
            "kind,domain,rule,seed,k,budget,metric,x,value\n"
            "evaluate,gaussian,top_k,0,2,5,reward_mean,,1.0\nevaluate,gaussian,top_k,1,2,5,reward_mean,,2.0\n"
            "evaluate,gaussian,top_k,0,2,10,reward_mean,,3.0\nevaluate,gaussian,top_k,1,2,10,reward_mean,,5.0\n")
        (out / "plots").mkdir(exist_ok=True)
        (out / "plots" / "gaussian.csv").write_text("k,value\n0,1\n")
        opts.update(out=str(out / "summary.csv"), plots_dir=str(out / "plots"), metrics_dir=str(out))
    if stage == "figures":
        (out / "figures").mkdir(exist_ok=True)
        (out / "figures" / "gaussian_reward_vs_k.png").write_bytes(b"\x89PNG fake")
        (out / "figures" / "gaussian_table.md").write_text("| k | reward |\n")
        opts["out"] = str(out / "figures")
    return opts


def spool_pipeline(params, raw: dict, out: Path, only=None, fail=None) -> int:
    """Spool one record per job of the matrix, in table order; `only(stage, point)` picks the jobs that run,
    `fail(stage, point)` those that fail. Returns the number of records spooled."""
    n = 0
    for st in STAGES:
        stage = st.module.rsplit(".", 1)[1]
        if st.name == "validate":
            continue
        for point in instances(st, raw):
            point = {**point, **{a: lookup(raw, key) for a, key in st.fixed.items()}}
            if st.name == "evaluate_ddpo":
                point["ddpo"] = True
            if only is not None and not only(st.name, point):
                continue
            metrics = fake_metrics(stage, point, raw, out)
            options = fake_options(stage, point, out)
            error = RuntimeError("out of memory") if fail is not None and fail(st.name, point) else None
            assert tracking.record(params, "params.yaml", stage=stage, options=options,
                                   metrics={} if error else metrics, wall_s=0.5, error=error) is not None
            n += 1
    return n


def write_params_file(raw: dict, path: str = "params.yaml") -> str:
    """The params as a file (in the working directory) for the real stage commands."""
    Path(path).write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
