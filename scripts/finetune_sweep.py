"""The documented sweep behind the fine-tuning defaults (docs/RESULTS.md "Fine-tuning defaults"): learning rate × warm-up
× P-GRAFT target convention, the same grid for every truncation point, on a selection seed that no reported
result uses. Runs the real stage commands (pgraft.pipeline.table) and writes a tidy CSV and a markdown table.

    python scripts/finetune_sweep.py --out results/studies/finetune_sweep --domains gaussian digits_t2i

Each setting gets its own directory with a params.yaml (the repository's, with the setting applied); the base
model and the selection seed's samples are made once and linked into every setting."""

from __future__ import annotations

import argparse
import copy
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

from pgraft.pipeline.studies import command, link_inputs, run, write_params
from pgraft.pipeline.table import BY_NAME

LEARNING_RATES = (1e-3, 3e-4)
WARMUPS = (0, 50)
TARGETS = ("intermediate", "x0")
TRUNCATION = (0.5, 0.75, 1.0)  # the k swept, as fractions of N (GRAFT at 1.0: its target convention does not apply)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/studies/finetune_sweep"))
    p.add_argument("--domains", nargs="+", default=["gaussian", "digits_t2i"])
    p.add_argument("--seed", type=int, default=100, help="selection seed (not among params.yaml's seeds)")
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()
    raw = yaml.safe_load(Path("params.yaml").read_text())
    if args.seed in raw["seeds"]:
        raise SystemExit(f"--seed {args.seed} is one of params.yaml's seeds {raw['seeds']}: pick a selection seed")
    raw.update(domains=args.domains, seeds=[args.seed])
    raw["tracking"]["enabled"] = False
    n = raw["sampler"]["num_steps"]
    prep = (args.out / "prep").resolve()
    write_params(prep / "params.yaml", raw)
    for d in args.domains:  # the base model and the selection seed's samples, once
        point = {"domain": d, "seed": args.seed}
        for stage in ("pretrain", "sample", "reward", "filter"):
            if not all((prep / o.pattern.format(**point)).exists() for o in BY_NAME[stage].outputs):
                run(command(stage, raw, **point), prep, "sweep.log")
    ks = sorted({round(f * n) for f in TRUNCATION})
    settings = [(lr, w, t, k) for lr, w in itertools.product(LEARNING_RATES, WARMUPS)
                for t in TARGETS for k in ks if not (t == "x0" and k == n)]
    jobs = []
    for d, (lr, w, t, k) in itertools.product(args.domains, settings):
        name = f"lr{lr:g}_w{w}_{t}"
        work = args.out.resolve() / name
        cfg = copy.deepcopy(raw)
        cfg["finetune"].update(learning_rate=lr, warmup_steps=w, target=t)
        cfg.get(d, {}).pop("finetune", None)  # the setting applies to every domain alike
        write_params(work / "params.yaml", cfg)
        link_inputs(work, prep, d, args.seed)
        jobs.append((d, lr, w, t, k, work, cfg))

    def one(job):
        d, lr, w, t, k, work, cfg = job
        point = {"domain": d, "seed": args.seed, "k": k}
        out = work / BY_NAME["evaluate"].output("out").pattern.format(**point)
        if not out.exists():
            run(command("finetune", cfg, **point), work, "sweep.log")
            run(command("evaluate", cfg, **point), work, "sweep.log")
        ev = json.loads(out.read_text())
        return [{"domain": d, "learning_rate": lr, "warmup_steps": w, "target": t, "k": k, "budget": int(b[1:]),
                 "reward_mean": row["reward_mean"], "dist_target": row["dist_target"],
                 "base_reward_mean": ev["base_reward_mean"], "target_reward_mean": ev["target_reward_mean"]}
                for b, row in ev.items() if b[1:].isdigit() and b[0] == "b"]

    with ThreadPoolExecutor(args.jobs) as pool:
        rows = [r for result in pool.map(one, jobs) for r in result]
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "sweep.csv", index=False)
    (args.out / "sweep.md").write_text(report(table, args.seed))
    print(report(table, args.seed))
    return 0


def report(table: pd.DataFrame, seed: int) -> str:
    """Reward per (domain, setting, k, budget), and each setting's mean rank over every (domain, k, budget) cell
    (1 = best), for the intermediate target and separately the x0 target."""
    lines = [f"# Fine-tuning defaults sweep (selection seed {seed})", "",
             "Mean reward of the stitched sampler per budget; the base model's reward in the first column.", ""]
    for (d, t), g in table.groupby(["domain", "target"]):
        wide = g.pivot_table(index=["learning_rate", "warmup_steps"], columns=["k", "budget"], values="reward_mean")
        base = g["base_reward_mean"].iloc[0]
        lines += [f"## {d}, target {t} (base {base:.4g})", "", wide.round(4).to_markdown(), ""]
    closed = (table["reward_mean"] - table["base_reward_mean"]) / (table["target_reward_mean"] - table["base_reward_mean"])
    table = table.assign(closed=closed)
    n = table["k"].max()
    lines += ["## The choice: mean share of the base-to-target reward gap closed", "",
              "(reward − base) / (exact target − base), averaged over every (domain, k, budget) cell; the learning "
              "rate and warm-up are chosen for all methods alike over every cell (P-GRAFT with the current target "
              f"and GRAFT, k = {n}), then the target at that setting over the P-GRAFT cells (k < {n}).", "",
              table[table["target"] == "intermediate"].groupby(
                  ["learning_rate", "warmup_steps"])["closed"].mean().round(4).to_frame().to_markdown(), "",
              table[table["k"] < n].groupby(["learning_rate", "warmup_steps", "target"])["closed"].mean().round(4)
              .to_frame().to_markdown(), ""]
    lr_w = table.groupby(["domain", "target", "k", "budget"])["reward_mean"].rank(ascending=False)
    ranks = table.assign(rank=lr_w).groupby(["target", "learning_rate", "warmup_steps"])["rank"].mean()
    lines += ["## Mean rank over (domain, k, budget) cells, 1 = best", "", ranks.round(2).to_frame().to_markdown(), ""]
    shock = table[table["budget"] == table["budget"].min()]
    below = shock.assign(below=shock["reward_mean"] < shock["base_reward_mean"]).groupby(
        ["target", "learning_rate", "warmup_steps"])["below"].mean()
    lines += ["## Share of smallest-budget cells below the base model (the shock of the first steps)", "",
              below.round(2).to_frame().to_markdown(), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
