"""The regime map (issue 14, items 3 and 4): where P-GRAFT at its best k beats GRAFT, and how well the best k is
predicted before any fine-tuning. Runs the real stage commands (pgraft.pipeline.table) and writes
results/studies/regime_map/{cells.csv, runs.csv, times.csv, regime_map.md, <domain>_regime_map.png, predictor.md}.

    pgraft warm python scripts/regime_map.py --jobs 2          # the grid of params.yaml's regime_map section
    pgraft warm python scripts/regime_map.py --smoke           # a plumbing check at tiny sizes (minutes)

Cells: domain x hardness setting x sample.num_groups (accepted samples = num_groups x the filter's K) x fine-tuning
budget x finetune.target (P-GRAFT's x0 | intermediate). Per (domain, hardness, num_groups, target) P-GRAFT runs at
every k of regime_map.ks on the selection seeds; per budget the k of the best mean metric there is the cell's best
k (measured). GRAFT (k = N, the same for both targets) and P-GRAFT at each chosen k then run on the evaluation
seeds, and P-GRAFT(best k) − GRAFT is reported paired by seed with its 95 % t interval: win (interval above 0),
tie (it contains 0) or loss. One finetune run saves every budget, so the budget axis costs evaluations only.

The predictor (pgraft.report.best_k, docs/METHOD.md §2) reads the variance stage's output and the learning-error
probe (pgraft.stages.probe) on the selection seeds, before any fine-tuning of the study; predictor.md sets its k̂
against the measured best k of every cell.

Sharing: one base model per (domain, hardness setting) in <work>/<domain>/<run>/base; a hardness setting whose
`set` equals another's (e.g. digits_t2i's composition setting: the same runs, another metric) shares its runs;
each (num_groups, seed)'s samples, rewards and selection are made once (<run>/g<G>/pool) and linked into the
training directories (<run>/g<G>/<x0|intermediate|graft>, each with its own params.yaml). Resumable: a stage whose
outputs exist is skipped; a directory whose params changed is emptied first.

Time. Run it under `pgraft warm` (as `make study-regime` does): each stage then forks from a server that imported
torch once, ~2 s a stage instead of ~7 s (times.csv: CPU seconds count only without a warm server). Measured on
this 2-core machine while other work kept its load average at ~5: the smoke run (--smoke) takes 186 s (gaussian)
+ 238 s (digits_t2i), each stage ~2-4 s of fixed cost; a full-size calibration of digits_t2i (the smoke's tiny
base, every other size the default's: num_groups 256, budgets 100/500, evaluate 2000 samples) measured per job
(wall): sample 10.2 s, reward 3.3, filter 2.0, variance 4.3, probe 9.2, finetune (500 steps) 39.7, evaluate 18.7.
One thread, CPU: a denoiser training step at batch 256 costs 4.5 ms (gaussian) / 43.5 ms (digits_t2i), a forward
pass per sample and sampler step 5 µs / 28 µs, digits_t2i's judges and feature network (3500 steps) ~47 s, its
pretraining ~122 s. The default grid (params.yaml regime_map: gaussian's 2 hardness settings = 2 bases, digits_t2i's
2 settings share 1 base; num_groups 16/64/256; budgets 100/500; targets x0/intermediate; ks 5/10/15; 1 selection
seed, 3 evaluation seeds) runs 3 pretrains, 36 pools (sample, reward, filter), 9 variance + 9 probe runs, 54
selection and ~117 evaluation fine-tune + evaluate pairs (63 of them digits_t2i). From the CPU costs: ~3950 s of
one core, ~33 min with --jobs 2 on 2 free cores; from the per-job walls measured under load: ~5300 s, ~45 min.
Each added evaluation seed adds ~6-9 min."""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pgraft.pipeline.studies import command, run
from pgraft.pipeline.table import BY_NAME

VERDICT_COLOURS = {"win": "#4daf4a", "tie": "#bdbdbd", "loss": "#e41a1c", "n/a": "#ffffff"}
PROBE = "pgraft.stages.probe"
SMOKE = {  # --smoke: every size tiny, one evaluation seed pair (a plumbing check, not a result)
    "regime_map": {"num_groups": [4, 8], "budgets": [5, 10], "ks": [5, 15], "evaluation_seeds": [0, 1],
                   "selection_seeds": [100], "probe": {"steps": 5, "heldout_fraction": 0.25, "noise_draws": 1}},
    "gaussian": {"pretrain": {"steps": 50}},
    "digits_t2i": {"pretrain": {"steps": 50}, "judges": {"steps": 20}, "features": {"steps": 20}},
    "sample": {"reference_size": 200},
    "evaluate": {"num_samples": 50},
    "variance": {"states": 8, "branches": 2, "ceiling_branches": 1, "bootstrap": 100},
    "finetune": {"batch_size": 32, "checkpoint_every": 0},
}


@dataclass(frozen=True)
class Run:
    """One training directory's runs: P-GRAFT (a target) or GRAFT on one (domain, hardness run, num_groups)."""

    domain: str
    hardness: str  # the name of the hardness setting whose runs these are (settings of equal `set` share them)
    groups: int
    target: str  # x0 | intermediate | graft

    def dir(self, work: Path) -> Path:
        return work / self.domain / self.hardness / f"g{self.groups}" / self.target


# ---- running the stages ------------------------------------------------------------------------------------------

def probe_command(domain: str, seed: int) -> list[str]:
    return [sys.executable, "-m", PROBE, "--domain", domain, "--seed", str(seed), "--model", f"results/{domain}/base",
            "--samples", f"results/{domain}/seed{seed}/samples.npz",
            "--selection", f"results/{domain}/seed{seed}/selection.parquet", "--out", probe_path(domain, seed)]


def probe_path(domain: str, seed: int) -> str:
    return f"results/metrics/{domain}/seed{seed}/probe.json"


def set_key(raw: dict, key: str, value) -> None:
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def merge(raw: dict, over: dict) -> None:
    """Nested update of `raw` by `over` (the --smoke sizes)."""
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            merge(raw[key], value)
        else:
            raw[key] = copy.deepcopy(value)


_PARAMS_LOCK = threading.Lock()  # parallel jobs of one directory (the pool's seeds) write the same params.yaml


def write_params(path: Path, raw: dict) -> None:
    """Write a directory's params.yaml; a directory made under other params is emptied first."""
    text = yaml.safe_dump(raw, sort_keys=False)
    with _PARAMS_LOCK:  # else one job may read the file half-written by another and empty the directory under it
        if path.exists() and path.read_text() != text:
            print(f"{path}: params changed, its outputs are made again", flush=True)
            shutil.rmtree(path.parent)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            path.write_text(text)


def outputs_exist(stage: str, cwd: Path, point: dict) -> bool:
    return all((cwd / o.pattern.format(**point)).exists() for o in BY_NAME[stage].outputs)


def link(work: Path, source: Path, rels) -> None:
    for rel in rels:
        dst = work / rel
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                dst.symlink_to(source / rel)
            except FileExistsError:  # a parallel job of the same run directory linked it first
                pass


class Times:
    """Per-stage wall-clock and CPU seconds, appended to <out>/times.csv (a skipped stage adds none)."""

    def __init__(self, path: Path):
        self.path, self.lock = path, threading.Lock()

    def add(self, where: str, stage: str, seconds: tuple[float, float], **point) -> str:
        row = {"where": where, "stage": stage, **{a: point.get(a, "") for a in ("domain", "seed", "k")},
               "wall_s": round(seconds[0], 2), "cpu_s": round(seconds[1], 2)}
        with self.lock:
            new = not self.path.exists()
            pd.DataFrame([row]).to_csv(self.path, mode="a", header=new, index=False)
        return f"{stage} {seconds[0]:.0f} s ({seconds[1]:.0f} s CPU)"


# ---- the study's configuration ----------------------------------------------------------------------------------

def study_params(raw: dict) -> dict:
    """The repository's params for every study directory: no tracking, the study's seeds, budgets and grid."""
    from pgraft.config import parse_params

    rm = parse_params(raw).regime_map
    cfg = copy.deepcopy(raw)
    n = cfg["sampler"]["num_steps"]
    cfg["tracking"]["enabled"] = False
    cfg["seeds"] = sorted({*rm.selection_seeds, *rm.evaluation_seeds})
    cfg["truncation_grid"] = sorted({0, n, *rm.ks})
    cfg["finetune"]["budgets"] = list(rm.budgets)
    cfg["ddpo"].pop("domains", None)
    cfg["inc"].pop("domains", None)
    return cfg


def hardness_runs(rm) -> dict[str, dict[str, str]]:
    """domain -> {setting name: the name of the setting whose runs it uses} (the first of equal `set`)."""
    out = {}
    for d in rm.domains:
        first: dict[str, str] = {}
        out[d] = {}
        for s in rm.hardness[d]:
            key = json.dumps(s.set, sort_keys=True)
            out[d][s.name] = first.setdefault(key, s.name)
    return out


def cell_params(cfg: dict, domain: str, setting, groups: int | None = None, target: str | None = None) -> dict:
    """One directory's params: the study's, one domain, the hardness setting applied, num_groups and target."""
    out = copy.deepcopy(cfg)
    out["domains"] = [domain]
    out.get(domain, {}).pop("finetune", None)  # the study's fine-tuning settings apply to every domain alike
    for key, value in setting.set.items():
        set_key(out, key, value)
    if groups is not None:
        out["sample"]["num_groups"] = groups
    if target in ("x0", "intermediate"):
        out["finetune"]["target"] = target
    return out


# ---- the report (pure functions of the runs table) ---------------------------------------------------------------

def verdict(lo: float, hi: float) -> str:
    """win: the 95 % interval of P-GRAFT − GRAFT lies above 0; loss: below 0; tie: it contains 0; n/a: no interval."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "n/a"
    return "win" if lo > 0 else "loss" if hi < 0 else "tie"


CELL = ["domain", "hardness", "groups", "target", "budget"]


def choose_k(runs: pd.DataFrame) -> pd.DataFrame:
    """Each cell's best k: the P-GRAFT k of the largest mean `value` over the selection seeds (the smaller k on a
    tie). One row per cell: best_k and its selection score, and every k's score as score_k<k>."""
    sel = runs[(runs["role"] == "selection") & (runs["target"] != "graft")]
    score = sel.groupby([*CELL, "k"])["value"].mean().rename("score").reset_index()
    score = score.sort_values([*CELL, "k"])
    best = score.loc[score.groupby(CELL)["score"].idxmax()].rename(columns={"k": "best_k"})
    wide = score.pivot_table(index=CELL, columns="k", values="score")
    wide.columns = [f"score_k{k}" for k in wide.columns]
    return best.merge(wide.reset_index(), on=CELL).reset_index(drop=True)


def contrasts(runs: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """Per cell: P-GRAFT at its best k − GRAFT on the evaluation seeds, paired by seed: mean, 95 % t interval, n,
    p and the verdict; with both methods' means."""
    from pgraft.report.intervals import paired

    ev = runs[runs["role"] == "evaluation"]
    graft = ev[ev["target"] == "graft"]
    out = []
    for _, c in chosen.iterrows():
        at = (ev["domain"] == c["domain"]) & (ev["hardness"] == c["hardness"]) & (ev["groups"] == c["groups"]) \
            & (ev["budget"] == c["budget"])
        p = ev[at & (ev["target"] == c["target"]) & (ev["k"] == c["best_k"])].set_index("seed")["value"]
        g = graft[(graft["domain"] == c["domain"]) & (graft["hardness"] == c["hardness"])
                  & (graft["groups"] == c["groups"]) & (graft["budget"] == c["budget"])].set_index("seed")["value"]
        diff, lo, hi, n, pv = paired(p, g)
        out.append({**{k: c[k] for k in CELL}, "best_k": int(c["best_k"]), "selection_score": c["score"],
                    "pgraft": float(p.mean()) if len(p) else float("nan"),
                    "graft": float(g.mean()) if len(g) else float("nan"),
                    "diff": diff, "lo": lo, "hi": hi, "n": n, "p": pv, "verdict": verdict(lo, hi)})
    return pd.DataFrame(out)


def agreement(cells: pd.DataFrame) -> dict:
    """How well the predicted k matches the measured best k: exact share, mean |k̂ − k|, and the share of cells
    whose predicted sign of P-GRAFT − GRAFT matches the verdict (win: +, loss: −; ties left out)."""
    exact = float((cells["predicted_k"] == cells["best_k"]).mean()) if len(cells) else float("nan")
    err = float((cells["predicted_k"] - cells["best_k"]).abs().mean()) if len(cells) else float("nan")
    decided = cells[cells["verdict"].isin(["win", "loss"])]
    sign = float(((decided["predicted_margin"] > 0) == (decided["verdict"] == "win")).mean()) \
        if len(decided) else float("nan")
    return {"cells": len(cells), "exact": exact, "mean_abs_error": err, "decided": len(decided), "sign": sign}


def report(cells: pd.DataFrame, rm, n: int) -> str:
    from pgraft.report.intervals import diff_cell

    lines = ["# The regime map: where P-GRAFT(best k) beats GRAFT", "",
             f"Best k among {list(rm.ks)} (N = {n}) chosen per cell on the selection seeds {list(rm.selection_seeds)}"
             f" by the cell's metric; P-GRAFT(best k) − GRAFT on the evaluation seeds {list(rm.evaluation_seeds)}, "
             "paired by seed, mean [95 % t interval], paired t test's p. win: interval above 0, loss: below, tie: "
             "it contains 0. Accepted = num_groups x the filter's K.", ""]
    counts = cells.groupby(["domain", "verdict"]).size().unstack(fill_value=0)
    lines += ["## Verdicts per domain", "", counts.to_markdown(), ""]
    for d in sorted(cells["domain"].unique()):
        lines += [f"## {d}", "", "| hardness | accepted | budget | target | best k | P-GRAFT | GRAFT | "
                  "P-GRAFT − GRAFT | verdict |", "|---|---|---|---|---|---|---|---|---|"]
        for _, c in cells[cells["domain"] == d].sort_values(["hardness", "groups", "budget", "target"]).iterrows():
            lines.append(f"| {c['hardness']} | {int(c['accepted'])} | {int(c['budget'])} | {c['target']} | "
                         f"{int(c['best_k'])} | {c['pgraft']:.4g} | {c['graft']:.4g} | "
                         f"{diff_cell(c['diff'], c['lo'], c['hi'], c['p'])} | {c['verdict']} |")
        lines.append("")
    return "\n".join(lines)


def predictor_report(cells: pd.DataFrame) -> str:
    a = agreement(cells)
    lines = ["# Predicted vs measured best k", "",
             "k̂ = argmax_k c(k) − ρ·s(k)·(c(N) − c(0)) (pgraft.report.best_k; docs/METHOD.md §2): the ceilings "
             "c(k) and V(k) of the variance stage and the learning-error probe, on the selection seeds, before any "
             "fine-tuning of the study. Measured: the best k on the selection seeds. The predictor does not see the "
             "budget, the target or the hardness metric (digits_t2i's composition setting uses the all-prompt "
             "ceilings).", "",
             f"Cells: {a['cells']}; k̂ = measured best k in {a['exact']:.0%}; mean |k̂ − k| = "
             f"{a['mean_abs_error']:.2f}; of the {a['decided']} cells with a decided verdict, the predicted sign of "
             f"P-GRAFT − GRAFT is right in {a['sign']:.0%}." if a["cells"] else "No cells.", "",
             "| domain | hardness | accepted | budget | target | measured k | predicted k̂ | ρ | predicted margin | "
             "verdict |", "|---|---|---|---|---|---|---|---|---|---|"]
    for _, c in cells.sort_values(["domain", "hardness", "groups", "budget", "target"]).iterrows():
        lines.append(f"| {c['domain']} | {c['hardness']} | {int(c['accepted'])} | {int(c['budget'])} | {c['target']}"
                     f" | {int(c['best_k'])} | {int(c['predicted_k'])} | {c['rho']:.3f} | "
                     f"{c['predicted_margin']:+.4g} | {c['verdict']} |")
    return "\n".join(lines) + "\n"


def heatmap(cells: pd.DataFrame, domain: str, path: Path) -> None:
    """Rows: (hardness, target); columns: (accepted, budget); colour: win / tie / loss; text: best k and the
    difference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

    c = cells[cells["domain"] == domain]
    rows = sorted({(h, t) for h, t in zip(c["hardness"], c["target"])})
    cols = sorted({(int(a), int(b)) for a, b in zip(c["accepted"], c["budget"])})
    img = np.ones((len(rows), len(cols), 3))
    fig, ax = plt.subplots(figsize=(1.3 * len(cols) + 2.5, 0.8 * len(rows) + 1.6))
    for _, r in c.iterrows():
        i, j = rows.index((r["hardness"], r["target"])), cols.index((int(r["accepted"]), int(r["budget"])))
        img[i, j] = to_rgb(VERDICT_COLOURS[r["verdict"]])
        ax.text(j, i, f"k={int(r['best_k'])}\n{r['diff']:+.3g}", ha="center", va="center", fontsize=7)
    ax.imshow(img, aspect="auto")
    ax.set_xticks(range(len(cols)), [f"n={a}\nb={b}" for a, b in cols], fontsize=7)
    ax.set_yticks(range(len(rows)), [f"{h}\n{t}" for h, t in rows], fontsize=7)
    ax.set_xlabel("accepted training samples n, fine-tuning budget b (steps)")
    ax.set_title(f"{domain}: P-GRAFT(best k) − GRAFT")
    ax.legend(handles=[Patch(color=VERDICT_COLOURS[v], label=v) for v in ("win", "tie", "loss")], fontsize=7,
              loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- main ---------------------------------------------------------------------------------------------------------

def main() -> int:
    from pgraft.config import parse_params
    from pgraft.report import best_k

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="report directory (default results/studies/regime_map)")
    p.add_argument("--work", type=Path, default=Path(".pgraft/studies/regime_map"),
                   help="where the runs live (models, samples, logs; git-ignored)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, a plumbing check: runs in <work>/smoke and "
                   "reports into <work>/smoke/report unless --out is given")
    p.add_argument("--domains", nargs="+", help="a subset of regime_map.domains")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a params key for the whole study (YAML value, after --smoke's sizes), e.g. "
                        "regime_map.num_groups=[64]")
    args = p.parse_args()
    raw = yaml.safe_load(Path("params.yaml").read_text())
    if args.smoke:
        merge(raw, SMOKE)
        args.work = args.work / "smoke"
        args.out = args.out or args.work / "report"
    args.out = args.out or Path("results/studies/regime_map")
    for item in args.set:  # validated with the rest below
        key, _, value = item.partition("=")
        set_key(raw, key, yaml.safe_load(value))
    if args.domains:
        raw["regime_map"]["domains"] = args.domains
    params = parse_params(raw, "params.yaml (regime_map)")
    params.check_regime_map("params.yaml (regime_map)")
    rm, n = params.regime_map, params.sampler.num_steps
    cfg = study_params(raw)
    work, out = args.work.resolve(), args.out
    out.mkdir(parents=True, exist_ok=True)
    times = Times(out / "times.csv")
    shared = hardness_runs(rm)
    settings = {d: {s.name: s for s in rm.hardness[d]} for d in rm.domains}
    bases = [(d, h) for d in rm.domains for h in dict.fromkeys(shared[d].values())]
    seeds = [*rm.selection_seeds, *rm.evaluation_seeds]
    t0 = time.perf_counter()

    def parallel(fn, items, label):
        items = list(items)
        done = 0
        lock = threading.Lock()

        def one(item):
            nonlocal done
            result = fn(item)
            with lock:
                done += 1
                print(f"[{label} {done}/{len(items)}] {time.perf_counter() - t0:.0f} s", flush=True)
            return result

        with ThreadPoolExecutor(args.jobs) as pool:
            return list(pool.map(one, items))

    def stage(where: Path, stage_name: str, c: dict, **point):
        if not outputs_exist(stage_name, where, point):
            said = times.add(str(where.relative_to(work)), stage_name, run(command(stage_name, c, **point), where),
                             **point)
            print(f"  {where.relative_to(work)} {point}: {said}", flush=True)

    # 1. one base per (domain, hardness run)
    def pretrain(item):
        d, h = item
        where = work / d / h / "base"
        c = cell_params(cfg, d, settings[d][h])
        write_params(where / "params.yaml", c)
        stage(where, "pretrain", c, domain=d)

    parallel(pretrain, bases, "pretrain")

    # 2. each (num_groups, seed)'s pool; the variance stage and the probe on the selection seeds
    def pool(item):
        d, h, g, s = item
        where = work / d / h / f"g{g}" / "pool"
        c = cell_params(cfg, d, settings[d][h], g)
        write_params(where / "params.yaml", c)
        link(where, work / d / h / "base", [f"results/{d}/base", f"results/metrics/{d}/pretrain.json"])
        for name in ("sample", "reward", "filter"):
            stage(where, name, c, domain=d, seed=s)
        if s in rm.selection_seeds:
            stage(where, "variance", c, domain=d, seed=s)
            if not (where / probe_path(d, s)).exists():
                said = times.add(str(where.relative_to(work)), "probe", run(probe_command(d, s), where), domain=d,
                                 seed=s)
                print(f"  {where.relative_to(work)} seed {s}: {said}", flush=True)

    parallel(pool, [(d, h, g, s) for d, h in bases for g in rm.num_groups for s in seeds], "pool")

    # 3. training directories; P-GRAFT at every k on the selection seeds, then the chosen k and GRAFT on the others
    inputs = ("samples.npz", "reference.npz", "rewards.parquet", "selection.parquet")

    def train(item) -> list[dict]:
        r, k, s, role = item
        where = r.dir(work)
        c = cell_params(cfg, r.domain, settings[r.domain][r.hardness], r.groups, r.target)
        write_params(where / "params.yaml", c)
        pool_dir = work / r.domain / r.hardness / f"g{r.groups}" / "pool"
        link(where, pool_dir, [f"results/{r.domain}/base", *(f"results/{r.domain}/seed{s}/{f}" for f in inputs)])
        point = {"domain": r.domain, "seed": s, "k": k}
        for name in ("finetune", "evaluate"):
            stage(where, name, c, **point)
        ev = json.loads((where / BY_NAME["evaluate"].output("out").pattern.format(**point)).read_text())
        accepted = json.loads((pool_dir / f"results/metrics/{r.domain}/seed{s}/filter.json").read_text())["accepted"]
        rows = []
        for name, setting in settings[r.domain].items():
            if shared[r.domain][name] != r.hardness:
                continue
            for b in rm.budgets:
                row = ev[f"b{b}"]
                rows.append({"domain": r.domain, "hardness": name, "groups": r.groups, "accepted": accepted,
                             "target": r.target, "k": k, "seed": s, "role": role, "budget": b,
                             "metric": setting.metric, "value": row.get(setting.metric, float("nan")),
                             "reward_mean": row.get("reward_mean", float("nan")),
                             "base_reward_mean": ev.get("base_reward_mean", float("nan")),
                             "target_reward_mean": ev.get("target_reward_mean", float("nan"))})
        return rows

    runs = [Run(d, h, g, t) for d, h in bases for g in rm.num_groups for t in rm.targets]
    selection = [(r, k, s, "selection") for r in runs for k in rm.ks for s in rm.selection_seeds]
    table = pd.DataFrame([row for rows in parallel(train, selection, "selection") for row in rows])
    chosen = choose_k(table)
    picks = sorted({(d, shared[d][h], g, t, int(k)) for d, h, g, t, k in
                    zip(chosen["domain"], chosen["hardness"], chosen["groups"], chosen["target"], chosen["best_k"])})
    evaluation = [(Run(d, h, g, t), k, s, "evaluation") for d, h, g, t, k in picks for s in rm.evaluation_seeds]
    evaluation += [(Run(d, h, g, "graft"), n, s, "evaluation") for d, h in bases for g in rm.num_groups
                   for s in rm.evaluation_seeds]
    table = pd.concat([table, pd.DataFrame([row for rows in parallel(train, evaluation, "evaluation")
                                            for row in rows])], ignore_index=True)
    table.to_csv(out / "runs.csv", index=False)

    # 4. the cells, the predictor, the report
    cells = contrasts(table, chosen)
    acc = table.groupby(["domain", "hardness", "groups"])["accepted"].median().round().astype(int).reset_index()
    cells = cells.merge(acc, on=["domain", "hardness", "groups"])
    preds = []
    for d, h in bases:
        for g in rm.num_groups:
            pool_dir = work / d / h / f"g{g}" / "pool"
            var = best_k.average([json.loads((pool_dir / f"results/metrics/{d}/seed{s}/variance.json").read_text())
                                  for s in rm.selection_seeds])
            prb = best_k.average([json.loads((pool_dir / probe_path(d, s)).read_text()) for s in rm.selection_seeds])
            pr = best_k.predict(var, prb, rm.ks)
            for name in settings[d]:
                if shared[d][name] == h:
                    preds.append({"domain": d, "hardness": name, "groups": g, "predicted_k": pr["k"],
                                  "predicted_margin": pr["margin"], "rho": pr["rho"],
                                  **{f"ceiling_k{k}": v for k, v in pr["ceiling"].items()},
                                  **{f"share_k{k}": v for k, v in pr["share"].items()}})
    cells = cells.merge(pd.DataFrame(preds), on=["domain", "hardness", "groups"], how="left")
    cells = cells.sort_values(["domain", "hardness", "groups", "budget", "target"]).reset_index(drop=True)
    cells.to_csv(out / "cells.csv", index=False)
    text = report(cells, rm, n)
    (out / "regime_map.md").write_text(text + "\n")
    (out / "predictor.md").write_text(predictor_report(cells))
    for d in sorted(cells["domain"].unique()):
        heatmap(cells, d, out / f"{d}_regime_map.png")
    print(text)
    print(predictor_report(cells))
    print(f"regime map: {time.perf_counter() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
