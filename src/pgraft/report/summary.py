"""The tidy summary table (kind, domain, rule, seed, k, budget, metric, x, value) from every stage's metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from pgraft.errors import StageError
from pgraft.filters.law_check import registry_acceptance
from pgraft.io import read_json, read_npz, read_table
from pgraft.metrics.records import Evaluation

COLUMNS = ["kind", "domain", "rule", "seed", "k", "budget", "metric", "x", "value"]
PLOTTED = ("reward_mean", "dist_target", "diversity")  # the metrics with a `dvc plots` plot vs k per domain

#: at(stage, option, **point) -> the path of one stage output (the stage table's, under the metrics dir)
Locator = Callable[..., Path]


def summary_table(at: Locator, params) -> pd.DataFrame:
    """Every (domain, seed, k, budget) of the params: the reward domains' rows, INC's rows, the fine-tuning loss
    histories, then the Monte Carlo acceptance-law check of every registered GRS rule, in COLUMNS."""
    rows: list[dict] = []
    losses: list[dict] = []  # the fine-tuning loss histories, appended after the other rows
    for domain in params.reward_domains:
        domain_rows, domain_losses = _reward_rows(at, params, domain)
        rows += domain_rows
        losses += domain_losses
    for domain in params.inc.domains:
        rows += _inc_rows(at, params, domain)
    rows += losses
    rows += _acceptance_monte_carlo()
    return pd.DataFrame(rows, columns=COLUMNS)


def _reward_rows(at: Locator, params, domain: str) -> tuple[list[dict], list[dict]]:
    """A reward domain's rows (pretrain, filter, acceptance, variance, evaluate, reference, DDPO) and its loss rows."""
    rows: list[dict] = []
    losses: list[dict] = []
    pre = read_json(at("pretrain", "metrics", domain=domain))
    rows += [_row("pretrain", domain, metric=m, value=v) for m, v in pre.items()]
    for seed in params.seeds:
        for m, v in read_json(at("filter", "metrics", domain=domain, seed=seed)).items():
            rows.append(_row("filter", domain, seed=seed, metric=m, value=v, rule=params.filter_for(domain).name))
        acc = read_table(at("filter", "acceptance", domain=domain, seed=seed),
                         columns=("u_center", "empirical", "closed_form"))
        for rec in acc.to_dict("records"):
            for m in ("empirical", "closed_form"):
                rows.append(_row("acceptance", domain, seed=seed, rule=rec["rule"], metric=m,
                                 x=rec["u_center"], value=rec[m]))
        rows += _variance_rows(domain, seed, read_json(at("variance", "out", domain=domain, seed=seed)))
        for k in params.truncation_grid:
            path = at("evaluate", "out", domain=domain, seed=seed, k=k)
            ev = read_json(path)
            losses += _loss_rows(domain, seed, k, ev)
            result = Evaluation.from_json(ev)
            for b in params.finetune_for(domain).budgets:
                for m, v in result.at(b, path).items():
                    rows.append(_row("evaluate", domain, seed=seed, k=k, budget=b, metric=m, value=v))
            for m in ("target_reward_mean", "base_reward_mean"):
                rows.append(_row("reference", domain, seed=seed, k=k, metric=m, value=ev[m]))
        if domain in params.ddpo.domains:  # the policy-gradient baseline; budget = reward evaluations
            rows += _ddpo_rows(at, params, domain, seed)
    return rows, losses


def _ddpo_rows(at: Locator, params, domain: str, seed: int) -> list[dict]:
    """DDPO's training log (kind "ddpo_train") and its evaluated checkpoints (kind "ddpo") of one seed."""
    rows = []
    for rec in read_json(at("ddpo", "metrics", domain=domain, seed=seed))["log"]:
        rows.append(_row("ddpo_train", domain, seed=seed, budget=rec["reward_evaluations"],
                         metric="reward_mean", value=rec["reward_mean"], rule="ddpo"))
    path = at("evaluate_ddpo", "out", domain=domain, seed=seed)
    result = Evaluation.from_json(read_json(path))
    for b in params.ddpo.checkpoints:
        for m, v in result.at(b, path, "checkpoint", "evaluate_ddpo").items():
            rows.append(_row("ddpo", domain, seed=seed, k=params.sampler.num_steps, budget=b,
                             metric=m, value=v, rule="ddpo"))
    return rows


def _inc_rows(at: Locator, params, domain: str) -> list[dict]:
    """A flow domain's rows: pretrain, invert per n, and per seed INC's FID/KID/FLOPs and the sampling floor."""
    pre = read_json(at("pretrain_flow", "metrics", domain=domain))
    rows = [_row("pretrain", domain, metric=m, value=v) for m, v in pre.items()]
    for n in params.inc.corrected_steps:
        inv = read_json(at("invert", "metrics", domain=domain, n=n))
        rows += [_row("invert", domain, metric=m, value=v, x=n) for m, v in inv.items() if m != "n"]
    for seed in params.seeds:
        path = at("evaluate_flow", "out", domain=domain, seed=seed)
        res = read_json(path)
        for method, steps in (("base", params.inc.base_steps), ("inc", params.inc.corrected_steps)):
            for n in steps:
                if f"{method}_n{n}" not in res:
                    raise StageError(f"{path} has no {method}_n{n}; rerun evaluate_flow")
                for m in ("fid", "kid", "flops_per_image"):
                    if m in res[f"{method}_n{n}"]:  # KID: evaluate_flow outputs from before it was measured lack it
                        rows.append(_row("inc", domain, seed=seed, rule=method, metric=m, x=n,
                                         value=res[f"{method}_n{n}"][m]))
        for m, v in res.get("floor", {}).items():  # real training vs real held-out images: the sampling floor
            if m in ("fid", "kid"):
                rows.append(_row("inc_floor", domain, seed=seed, metric=m, value=v))
    return rows


def gallery_arrays(at: Locator, params) -> dict[str, np.ndarray]:
    """The first seed's gallery samples of every (domain, k) and of DDPO, keyed <domain>__<method>__x (and
    __prompt), for one npz of the figures stage."""
    arrays = {}
    seed = params.seeds[0]
    for domain in params.reward_domains:
        methods = [(f"k{k}", at("evaluate", "gallery", domain=domain, seed=seed, k=k)) for k in params.truncation_grid]
        if domain in params.ddpo.domains:
            methods.append(("ddpo", at("evaluate_ddpo", "gallery", domain=domain, seed=seed)))
        for name, path in methods:
            g = read_npz(path, required=("x",))
            if len(g["x"]) == 0:
                continue
            arrays[f"{domain}__{name}__x"] = g["x"]
            if "prompt" in g:
                arrays[f"{domain}__{name}__prompt"] = g["prompt"]
    return arrays


def _loss_rows(domain: str, seed: int, k: int, ev: dict) -> list[dict]:
    """Rows kind "train_loss" (x: fine-tuning step, value: mean training loss) from the loss history that
    evaluate copies into its output; none for runs made before the history was recorded."""
    history = ev.get("loss_history", {})
    return [_row("train_loss", domain, seed=seed, k=k, metric="train_loss", x=step, value=loss)
            for step, loss in history.get("train_loss", [])]


def _variance_rows(domain: str, seed: int, var: dict) -> list[dict]:
    """Rows kind "variance" (E[Var(r|X_tk)] and Var(E[r|X_tk]) as fractions of E[Var(r|c)], with their 95 %
    bootstrap bounds) and kind "ceiling" (the reward of the exact target at k, with bounds), per k."""
    total = var["reward_variance"]
    rows = []
    for k, v in var["k"].items():
        for term in ("within", "between"):
            for suffix in ("", "_lo", "_hi"):
                rows.append(_row("variance", domain, seed=seed, k=int(k), metric=f"v_{term}{suffix}",
                                 value=v[term + suffix] / total if total > 0 else float("nan")))
        for suffix in ("", "_lo", "_hi"):
            rows.append(_row("ceiling", domain, seed=seed, k=int(k), metric=f"ceiling{suffix}",
                             value=v["ceiling" + suffix]))
    return rows


def _row(kind, domain, *, seed=None, k=None, budget=None, metric, value, rule=None, x=None) -> dict:
    return {"kind": kind, "domain": domain, "rule": rule, "seed": seed, "k": k, "budget": budget,
            "metric": metric, "x": x, "value": float(value)}


def _acceptance_monte_carlo() -> list[dict]:
    """Rows kind "acceptance_mc": empirical acceptance by bins of u vs the closed form, for every registered rule
    at its EXAMPLE params (pgraft.filters.law_check)."""
    rows = []
    for rec in registry_acceptance():
        for m in ("empirical", "closed_form"):
            rows.append(_row("acceptance_mc", "_", rule=rec["rule"], metric=m, x=rec["u_center"], value=rec[m]))
    return rows


def plot_tables(table: pd.DataFrame, params) -> dict[str, pd.DataFrame]:
    """The per-seed CSVs that dvc.yaml's `plots:` section renders, by path relative to the plots dir: every budget,
    one row per seed (the plots draw the mean over seeds with a ±1 sd band)."""
    out: dict[str, pd.DataFrame] = {}
    ev = table[table["kind"] == "evaluate"]
    for domain in params.reward_domains:
        d = ev[ev["domain"] == domain]
        wide = d.pivot_table(index=["k", "budget", "seed"], columns="metric", values="value").reset_index()
        for metric in PLOTTED:
            out[f"vs_k/{domain}_{metric}.csv"] = wide[["k", "budget", "seed", metric]]
        out[f"tradeoff/{domain}.csv"] = wide[["k", "budget", "seed", "dist_target", "reward_mean"]]
    return out


def seed_summary(table: pd.DataFrame, params) -> dict[str, dict]:
    """Per domain, the reward's mean and sd over seeds at every truncation point and budget (k = 0, the base, once;
    DDPO per checkpoint; INC's FID per n): the few numbers `dvc exp show` compares, declared as DVC metrics."""
    out: dict[str, dict] = {}
    for domain in params.reward_domains:
        ev = table[(table["kind"] == "evaluate") & (table["domain"] == domain) & (table["metric"] == "reward_mean")]
        budgets = params.finetune_for(domain).budgets
        entry: dict = {"base": _stats(ev[(ev["k"] == 0) & (ev["budget"] == budgets[0])]["value"], "reward")}
        for k in params.truncation_grid:
            if k:
                entry[f"k{k}"] = {f"b{b}": _stats(ev[(ev["k"] == k) & (ev["budget"] == b)]["value"], "reward")
                                  for b in budgets}
        dd = table[(table["kind"] == "ddpo") & (table["domain"] == domain) & (table["metric"] == "reward_mean")]
        if len(dd):
            entry["ddpo"] = {f"b{b}": _stats(dd[dd["budget"] == b]["value"], "reward") for b in params.ddpo.checkpoints}
        out[domain] = {domain: entry}
    for domain in params.inc.domains:
        inc = table[(table["kind"] == "inc") & (table["domain"] == domain) & (table["metric"] == "fid")]
        out[domain] = {domain: {method: {f"n{n}": _stats(inc[(inc["rule"] == method) & (inc["x"] == n)]["value"], "fid")
                                         for n in steps}
                                for method, steps in (("base", params.inc.base_steps),
                                                      ("inc", params.inc.corrected_steps))}}
    return out


def _stats(values, name: str) -> dict:
    """{name: {mean, sd}} over seeds (sd with ddof 1; 0 for a single seed), rounded for reading."""
    v = values.to_numpy(dtype=float)
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    return {name: {"mean": round(float(v.mean()), 6), "sd": round(sd, 6)}}
