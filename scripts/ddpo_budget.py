"""DDPO at its own budget against multi-round GRAFT / P-GRAFT, at equal reward evaluations (docs/RESULTS.md "DDPO at its
real budget"). Runs the real stage commands (pgraft.pipeline.table) and writes a tidy CSV, a markdown table per
budget and a figure to results/studies/ddpo_budget/.

    python scripts/ddpo_budget.py                       # digits_t2i, E = 4096 x {1, 2, 4, 8}, --jobs 2
    python scripts/ddpo_budget.py --domains digits_t2i gaussian --jobs 1

Budgets are reward evaluations E. DDPO: one run per (setting, seed) with ddpo.checkpoints = the E values, each
checkpoint evaluated by the real evaluate_ddpo stage. GRAFT (k = N) and P-GRAFT (k = --k): R rounds, each sampling
and scoring one pool (sample.num_groups x group size, 4096 by default), filtering and training --steps-per-round
steps, so E = pool x R. One finetune run of max(R) rounds with finetune.round_checkpoints saves the model at the
end of each round R of --rounds (one run of 8 rounds costs 8 rounds where separate 1-, 2-, 4- and 8-round runs
cost 15; the checkpoint after round R is what an R-round run would give: fresh Adam each round, warm-up in the
first only, only the random stream differs). gaussian has no prompts: it gets GRAFT / P-GRAFT only.

Tuning: a 2 x 2 grid per method (DDPO learning rate x PPO clip range, GRAFT / P-GRAFT learning rate x warm-up),
each method's setting chosen on a selection seed that no reported result uses (--seed, 100) by the training-prompt
reward at the largest E (--select last; or the mean over E, --select mean), then rerun on the evaluation seeds
(params.yaml's). Each setting has its own directory with a params.yaml; the base model and every seed's samples,
rewards and selection are made once (in <work>/prep, params.yaml's values: the default run's base) and linked.
Resumable: a job whose evaluation exists is skipped."""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from pgraft.pipeline import studies
from pgraft.pipeline.studies import command, link_inputs, run
from pgraft.pipeline.table import BY_NAME

ROUNDS = (1, 2, 4, 8)
STEPS_PER_ROUND = 250
GRIDS = {  # method -> the params keys of its 2 x 2 grid and their values
    "ddpo": {"ddpo.learning_rate": (1e-4, 3e-4), "ddpo.clip_range": (1e-4, 1e-3)},
    "graft": {"finetune.learning_rate": (3e-4, 1e-3), "finetune.warmup_steps": (0, 50)},
    "pgraft": {"finetune.learning_rate": (3e-4, 1e-3), "finetune.warmup_steps": (0, 50)},
}
LABELS = {"ddpo": "DDPO", "graft": "GRAFT", "pgraft": "P-GRAFT"}
CONTRASTS = (("graft", "ddpo"), ("pgraft", "ddpo"), ("pgraft", "graft"))
#: the evaluation metrics kept (those a domain's evaluate writes), with their table labels
METRICS = (("reward_mean", "reward"), ("judge_score", "independent judge"),
           ("reward_mean_heldout", "reward (held-out prompts)"), ("judge_score_heldout", "judge (held-out)"),
           ("fid", "FID ↓"), ("fid_heldout", "FID held-out ↓"), ("diversity", "diversity"),
           ("diversity_within_prompt", "within-prompt diversity"), ("reward_hacking_gap", "reward − judge"),
           ("dist_target", "distance to target ↓"))
SHOWN = ("reward_mean", "judge_score", "reward_mean_heldout", "fid", "diversity_within_prompt", "dist_target")


@dataclass(frozen=True)
class Job:
    """One training run and its evaluation: a method's setting on one seed of one domain."""

    domain: str
    method: str  # ddpo | graft | pgraft
    setting: str  # e.g. "learning_rate=0.0001 clip_range=0.001"
    values: tuple  # ((params key, value), ...)
    seed: int

    @property
    def name(self) -> str:
        return f"{self.domain} {LABELS[self.method]} {self.setting} seed {self.seed}"


# ---- running the stages ------------------------------------------------------------------------------------------

def set_key(raw: dict, key: str, value) -> None:
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def write_params(path: Path, raw: dict) -> None:
    """Write a run directory's params.yaml. A directory made under other params is emptied first, so a resumed
    study reuses only outputs of the same params (`seeds` aside: each stage takes its seed on the command line)."""
    text = yaml.safe_dump(raw, sort_keys=False)
    if path.exists() and path.read_text() != text:
        old = yaml.safe_load(path.read_text())
        if {**old, "seeds": None} != {**raw, "seeds": None}:
            print(f"{path}: params changed, its outputs are made again", flush=True)
            shutil.rmtree(path.parent)
    studies.write_params(path, raw)


def outputs_exist(stage: str, cwd: Path, point: dict) -> bool:
    return all((cwd / o.pattern.format(**point)).exists() for o in BY_NAME[stage].outputs)


class Times:
    """Per-stage wall-clock and CPU seconds of this invocation, appended to <out>/times.csv (a resumed job adds
    none)."""

    def __init__(self, path: Path):
        self.path, self.lock = path, threading.Lock()

    def add(self, job: Job | None, stage: str, seconds: tuple[float, float], what: str = "") -> str:
        row = {"domain": job.domain if job else what, "method": job.method if job else "prep",
               "setting": job.setting if job else "", "seed": job.seed if job else "", "stage": stage,
               "wall_s": round(seconds[0], 1), "cpu_s": round(seconds[1], 1)}
        with self.lock:
            new = not self.path.exists()
            pd.DataFrame([row]).to_csv(self.path, mode="a", header=new, index=False)
        return f"{stage} {seconds[0]:.0f} s ({seconds[1]:.0f} s CPU)"


# ---- the study's configuration ---------------------------------------------------------------------------------

def settings(method: str) -> list[tuple[str, tuple]]:
    """(name, ((key, value), ...)) of each point of the method's grid."""
    grid = GRIDS[method]
    out = []
    for combo in itertools.product(*grid.values()):
        values = tuple(zip(grid, combo))
        out.append((" ".join(f"{k.split('.')[-1]}={v:g}" for k, v in values), values))
    return out


def pool_size(raw: dict, domain: str) -> int:
    """Samples drawn and scored per round (and by the sample stage): sample.num_groups x the rule's group size."""
    from pgraft.config import parse_params

    params = parse_params(raw)
    return params.sample.num_groups * params.group_size(domain)


def configure(raw: dict, job: Job, k: int, rounds, steps_per_round: int, pool: int) -> dict:
    """The params.yaml of one job's directory: the study's base params with the job's setting applied."""
    cfg = copy.deepcopy(raw)
    cfg.get(job.domain, {}).pop("finetune", None)  # the setting applies to the top-level section, for every domain
    if job.method == "ddpo":
        cfg["ddpo"].update(checkpoints=[pool * r for r in rounds], domains=[job.domain])
    else:
        cfg["finetune"].update(budgets=[steps_per_round * r for r in rounds], rounds=max(rounds),
                               round_checkpoints=True)
    for key, value in job.values:
        set_key(cfg, key, value)
    return cfg


def study_params(raw: dict, domains: list[str], k: int) -> dict:
    """The repository's params for the study: its domains, no tracking, k in the truncation grid, DDPO on every
    prompt-conditioned domain among them."""
    cfg = copy.deepcopy(raw)
    cfg["domains"] = domains
    cfg["tracking"]["enabled"] = False
    cfg["truncation_grid"] = sorted(set(cfg["truncation_grid"]) | {k})
    cfg["ddpo"].pop("domains", None)
    return cfg


def ddpo_domains(raw: dict) -> list[str]:
    """The domains DDPO runs on (the prompt-conditioned ones): it needs prompts to normalise rewards by."""
    from pgraft.config import parse_params

    return list(parse_params(raw).ddpo.domains)


def prepare(prep: Path, raw: dict, domain: str, seeds: list[int], times: Times, jobs: int) -> None:
    """The base model (once) and each seed's samples, rewards and selection, in prep/."""
    write_params(prep / "params.yaml", raw)
    point = {"domain": domain}
    if not outputs_exist("pretrain", prep, point):
        print(f"prep {domain}: {times.add(None, 'pretrain', run(command('pretrain', raw, **point), prep), domain)}",
              flush=True)

    def one(seed):
        for stage in ("sample", "reward", "filter"):
            at = {"domain": domain, "seed": seed}
            if not outputs_exist(stage, prep, at):
                said = times.add(None, stage, run(command(stage, raw, **at), prep), domain)
                print(f"prep {domain} seed {seed}: {said}", flush=True)

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, seeds))


# ---- one job: train, evaluate, tidy rows ---------------------------------------------------------------------------

def evaluation_path(job: Job, k: int) -> str:
    stage = "evaluate_ddpo" if job.method == "ddpo" else "evaluate"
    return BY_NAME[stage].output("out").pattern.format(domain=job.domain, seed=job.seed, k=k)


def run_job(job: Job, work: Path, cfg: dict, k: int, times: Times) -> dict:
    """Train and evaluate one job unless its evaluation exists; return the evaluation."""
    n = cfg["sampler"]["num_steps"]
    kk = n if job.method in ("ddpo", "graft") else k
    point = {"domain": job.domain, "seed": job.seed, "k": kk}
    out = work / evaluation_path(job, kk)
    if not out.exists():
        stages = ("ddpo", "evaluate_ddpo") if job.method == "ddpo" else ("finetune", "evaluate")
        for stage in stages:
            print(f"  {job.name}: {times.add(job, stage, run(command(stage, cfg, **point), work))}", flush=True)
    return json.loads(out.read_text())


def policy_steps(raw: dict) -> int:
    """Steps of the stochastic DDIM sampler with a policy (σ > 0): all but a last step into ᾱ_final = 1."""
    from pgraft.config import parse_params
    from pgraft.samplers.schedule import build_schedule

    schedule = build_schedule(parse_params(raw).sampler)
    return len(schedule.timesteps) - int(float(schedule.scheduler.final_alpha_cumprod) == 1.0)


def rows(job: Job, ev: dict, cfg: dict, forward: float, pool: int, steps_per_round: int, role: str) -> list[dict]:
    """One tidy row per budget: E, optimizer steps, training FLOPs and the evaluation's metrics."""
    from pgraft.metrics.flops import ddpo_training_flops, graft_training_flops

    n = cfg["sampler"]["num_steps"]
    replayed = policy_steps(cfg) if job.method == "ddpo" else 0
    out = []
    for key, row in ev.items():
        if not (key[0] == "b" and key[1:].isdigit()):
            continue
        budget = int(key[1:])
        if job.method == "ddpo":
            d = cfg["ddpo"]
            batch = d["prompts_per_batch"] * d["samples_per_prompt"]
            evaluations = budget
            steps = budget // batch * d["inner_epochs"] * math.ceil(batch / d["minibatch_size"])
            flops = ddpo_training_flops(forward, evaluations=budget, num_steps=n, policy_steps=replayed,
                                        inner_epochs=d["inner_epochs"])
        else:
            rounds = budget // steps_per_round
            evaluations, steps = pool * rounds, budget
            flops = graft_training_flops(forward, rounds=rounds, samples_per_round=pool, num_steps=n,
                                         optimizer_steps=steps, batch_size=cfg["finetune"]["batch_size"])
        if "reward_evaluations" in row and int(row["reward_evaluations"]) != evaluations:
            raise SystemExit(f"{job.name}: b{budget} records {row['reward_evaluations']} reward evaluations, "
                             f"the study counts {evaluations}")
        out.append({"domain": job.domain, "method": job.method, "setting": job.setting, "seed": job.seed,
                    "role": role, "E": evaluations, "optimizer_steps": steps, "training_flops": flops,
                    "base_reward_mean": ev["base_reward_mean"],
                    **{m: row.get(m, float("nan")) for m, _ in METRICS}})
    return out


# ---- the report (pure functions of the tidy table) ------------------------------------------------------------------

def choose(table: pd.DataFrame, rule: str = "last") -> pd.DataFrame:
    """Each (domain, method)'s setting on the selection rows: the best training-prompt reward at the largest E
    (rule "last") or averaged over E (rule "mean"). One row per (domain, method): setting and its score."""
    sel = table[table["role"] == "selection"]
    if rule == "last":
        sel = sel[sel["E"] == sel.groupby(["domain", "method"])["E"].transform("max")]
    elif rule != "mean":
        raise ValueError(f"selection rule {rule!r}: last | mean")
    score = sel.groupby(["domain", "method", "setting"])["reward_mean"].mean().rename("score").reset_index()
    best = score.loc[score.groupby(["domain", "method"])["score"].idxmax()]
    return best.sort_values(["domain", "method"]).reset_index(drop=True)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Evaluation rows: mean [95 % t interval] over seeds per (domain, method, E) and metric (long format)."""
    from pgraft.report.intervals import t_interval

    ev = table[table["role"] == "evaluation"]
    out = []
    for (d, m, e), g in ev.groupby(["domain", "method", "E"]):
        for metric in ("optimizer_steps", "training_flops", *(x for x, _ in METRICS if x in g)):
            mean, lo, hi, n = t_interval(g[metric])
            if n:
                out.append({"domain": d, "method": m, "E": e, "metric": metric, "mean": mean, "lo": lo, "hi": hi,
                            "n": n})
    return pd.DataFrame(out, columns=["domain", "method", "E", "metric", "mean", "lo", "hi", "n"])


def differences(table: pd.DataFrame) -> pd.DataFrame:
    """Paired by seed (a seed's runs share its base, sample pool and evaluation noise): each contrast of
    CONTRASTS per (domain, E) and metric, mean difference, 95 % t interval and the paired t test's p."""
    from pgraft.report.intervals import paired

    ev = table[table["role"] == "evaluation"]
    out = []
    for (d, e), g in ev.groupby(["domain", "E"]):
        for a, b in CONTRASTS:
            ga, gb = g[g["method"] == a].set_index("seed"), g[g["method"] == b].set_index("seed")
            if ga.empty or gb.empty:
                continue
            for metric in (x for x, _ in METRICS if x in g):
                diff, lo, hi, n, p = paired(ga[metric], gb[metric])
                if n:
                    out.append({"domain": d, "E": e, "contrast": f"{LABELS[a]} − {LABELS[b]}", "metric": metric,
                                "diff": diff, "lo": lo, "hi": hi, "n": n, "p": p})
    return pd.DataFrame(out, columns=["domain", "E", "contrast", "metric", "diff", "lo", "hi", "n", "p"])


def report(table: pd.DataFrame, chosen: pd.DataFrame, *, seed: int, rule: str, k: int, steps_per_round: int) -> str:
    from pgraft.report.intervals import cell, diff_cell

    s, diffs = summary(table), differences(table)
    ev = table[table["role"] == "evaluation"]
    seeds = sorted(int(x) for x in ev["seed"].unique())
    crit = "the largest E" if rule == "last" else "the mean over E"
    lines = ["# DDPO at its real budget: DDPO, GRAFT and P-GRAFT at equal reward evaluations", "",
             f"Reward evaluations E; GRAFT (k = N) and P-GRAFT (k = {k}) sample and score one pool per round and "
             f"train {steps_per_round} steps a round (E = pool x rounds; the model at E is the checkpoint after that "
             "round of one run of the largest number of rounds, finetune.round_checkpoints), DDPO scores one batch "
             "per PPO iteration (its checkpoints after E evaluations of one run). "
             f"Mean over the evaluation seeds {seeds} [95 % t interval]; differences paired by seed (a seed's runs "
             "share the base model, the sample pool and the evaluation noise) with the paired t test's p. Training "
             "FLOPs: denoiser forward + backward (backward = 2 forwards), sampling included "
             "(pgraft.metrics.flops).", "",
             f"## Settings (chosen on selection seed {seed} by the training-prompt reward at {crit})", "",
             "| domain | method | chosen setting | selection score |", "|---|---|---|---|"]
    for _, r in chosen.iterrows():
        lines.append(f"| {r['domain']} | {LABELS[r['method']]} | {r['setting']} | {r['score']:.4f} |")
    sel = table[table["role"] == "selection"]
    if not sel.empty:
        lines += ["", "Every setting on the selection seed (training-prompt reward per E):", ""]
        wide = sel.pivot_table(index=["domain", "method", "setting"], columns="E", values="reward_mean")
        lines += [wide.round(4).to_markdown(), ""]
    for d in sorted(ev["domain"].unique()):
        sd, dd = s[s["domain"] == d], diffs[diffs["domain"] == d]
        metrics = [(m, label) for m, label in METRICS if m in SHOWN and m in set(sd["metric"])]
        base = ev[ev["domain"] == d]["base_reward_mean"].mean()
        lines += [f"## {d} (base model's reward {base:.4f}, its reference pools on the evaluation seeds)", ""]
        for e in sorted(sd["E"].unique()):
            se = sd[sd["E"] == e]
            lines += [f"### E = {int(e):,} reward evaluations", "",
                      "| method | optimizer steps | training FLOPs | " + " | ".join(lb for _, lb in metrics) + " |",
                      "|---|---|---|" + "---|" * len(metrics)]
            for method in ("ddpo", "graft", "pgraft"):
                sm = se[se["method"] == method].set_index("metric")
                if sm.empty:
                    continue
                cells = [cell(*sm.loc[m, ["mean", "lo", "hi"]]) if m in sm.index else "–" for m, _ in metrics]
                lines.append(f"| {LABELS[method]} | {sm.loc['optimizer_steps', 'mean']:.0f} | "
                             f"{sm.loc['training_flops', 'mean']:.3g} | " + " | ".join(cells) + " |")
            de = dd[dd["E"] == e]
            for contrast in de["contrast"].unique():
                dc = de[de["contrast"] == contrast].set_index("metric")
                cells = [diff_cell(*dc.loc[m, ["diff", "lo", "hi", "p"]]) if m in dc.index else "–"
                         for m, _ in metrics]
                lines.append(f"| {contrast} | | | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def reward_label(raw: dict, domain: str) -> str:
    """The y label of a domain's reward: what it measures, and for a prompt-conditioned domain, on which prompts."""
    from pgraft.config import parse_params
    from pgraft.domains import REGISTRY
    from pgraft.report.labels import words

    text = f"{domain}: " + words(parse_params(raw), domain).reward_axis
    return text + (", training prompts" if REGISTRY.get(domain).conditional else "")


def figure(table: pd.DataFrame, path: Path, labels: dict[str, str]) -> None:
    """Per domain: reward (training prompts where there are prompts) against reward evaluations (log2) and against
    training FLOPs, mean over the evaluation seeds with its 95 % t band per method; `labels`: domain -> y label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary(table)
    domains = sorted(s["domain"].unique())
    fig, axes = plt.subplots(len(domains), 2, figsize=(10, 3.6 * len(domains)), squeeze=False)
    for row, d in zip(axes, domains):
        sd = s[s["domain"] == d]
        for method in ("ddpo", "graft", "pgraft"):
            r = sd[(sd["method"] == method) & (sd["metric"] == "reward_mean")].sort_values("E")
            if r.empty:
                continue
            f = sd[(sd["method"] == method) & (sd["metric"] == "training_flops")].set_index("E").loc[r["E"], "mean"]
            for ax, x in ((row[0], r["E"].to_numpy()), (row[1], f.to_numpy())):
                ax.plot(x, r["mean"], marker="o", label=LABELS[method])
                ax.fill_between(x, r["lo"], r["hi"], alpha=0.2)
        base = table[(table["domain"] == d) & (table["role"] == "evaluation")]["base_reward_mean"].mean()
        for ax in row:
            ax.axhline(base, color="grey", ls=":", lw=1, label="base")
            ax.set_ylabel(labels[d], fontsize=8)
            ax.legend(fontsize=8)
        row[0].set_xscale("log", base=2)
        row[0].set_xlabel("reward evaluations")
        row[1].set_xscale("log")
        row[1].set_xlabel("training FLOPs (forward + backward)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- main ---------------------------------------------------------------------------------------------------------

def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/studies/ddpo_budget"))
    p.add_argument("--work", type=Path, default=Path(".pgraft/studies/ddpo_budget"),
                   help="where the runs live (models, samples, logs; git-ignored)")
    p.add_argument("--domains", nargs="+", default=["digits_t2i"])
    p.add_argument("--seed", type=int, default=100, help="selection seed (not among the evaluation seeds)")
    p.add_argument("--seeds", type=int, nargs="+", help="evaluation seeds (default: params.yaml's)")
    p.add_argument("--rounds", type=int, nargs="+", default=list(ROUNDS),
                   help="GRAFT rounds R of the budgets; E = pool x R (DDPO's checkpoints are the same E)")
    p.add_argument("--steps-per-round", type=int, default=STEPS_PER_ROUND)
    p.add_argument("--k", type=int, default=15, help="P-GRAFT's truncation point (the default run's best k = 15)")
    p.add_argument("--select", choices=("last", "mean"), default="last",
                   help="selection criterion: reward at the largest E, or the mean over E")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a params key for the whole study (YAML value), e.g. for a smoke run")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--prepare-only", action="store_true", help="make the base model and every seed's pool, then stop")
    args = p.parse_args()
    raw = yaml.safe_load(Path("params.yaml").read_text())
    seeds = args.seeds or raw["seeds"]
    if args.seed in seeds:
        raise SystemExit(f"--seed {args.seed} is an evaluation seed {seeds}: pick a selection seed")
    rounds = sorted(set(args.rounds))
    for item in args.set:  # validated with the rest when the stages load the params
        key, _, value = item.partition("=")
        set_key(raw, key, yaml.safe_load(value))
    raw = study_params(raw, args.domains, args.k)
    raw["seeds"] = sorted({*raw["seeds"], args.seed, *seeds})  # the stages accept only seeds of the params
    work, out = args.work.resolve(), args.out
    out.mkdir(parents=True, exist_ok=True)
    times = Times(out / "times.csv")
    prep = work / "prep"
    for d in args.domains:
        prepare(prep, raw, d, [args.seed, *seeds], times, args.jobs)
    if args.prepare_only:
        return 0
    conditional = set(ddpo_domains(raw))
    methods = {d: [m for m in GRIDS if m != "ddpo" or d in conditional] for d in args.domains}

    def execute(jobs: list[Job], role: str) -> list[dict]:
        done = []

        def one(item):
            i, job = item
            pool = pool_size(raw, job.domain)
            cfg = configure(raw, job, args.k, rounds, args.steps_per_round, pool)
            where = work / job.domain / job.method / job.setting.replace(" ", "_")
            write_params(where / "params.yaml", cfg)
            link_inputs(where, prep, job.domain, job.seed)
            start = time.perf_counter()
            ev = run_job(job, where, cfg, args.k, times)
            print(f"[{i}/{len(jobs)}] {role} {job.name}: {time.perf_counter() - start:.0f} s", flush=True)
            pre = json.loads((prep / f"results/metrics/{job.domain}/pretrain.json").read_text())
            forward = pre["flops_per_sample"] / cfg["sampler"]["num_steps"]
            return rows(job, ev, cfg, forward, pool, args.steps_per_round, role)

        with ThreadPoolExecutor(args.jobs) as pool:
            for result in pool.map(one, enumerate(jobs, 1)):
                done += result
        return done

    selection = [Job(d, m, name, values, args.seed) for d in args.domains for m in methods[d]
                 for name, values in settings(m)]
    table = pd.DataFrame(execute(selection, "selection"))
    chosen = choose(table, args.select)
    best = {(r["domain"], r["method"]): r["setting"] for _, r in chosen.iterrows()}
    grid = {(d, m, name): values for d in args.domains for m in methods[d] for name, values in settings(m)}
    evaluation = [Job(d, m, best[d, m], grid[d, m, best[d, m]], s) for (d, m) in best for s in seeds]
    table = pd.concat([table, pd.DataFrame(execute(evaluation, "evaluation"))], ignore_index=True)
    table = table.sort_values(["domain", "role", "method", "setting", "seed", "E"]).reset_index(drop=True)
    table.to_csv(out / "ddpo_budget.csv", index=False)
    text = report(table, chosen, seed=args.seed, rule=args.select, k=args.k, steps_per_round=args.steps_per_round)
    (out / "ddpo_budget.md").write_text(text + "\n")
    figure(table, out / "ddpo_budget.png", {d: reward_label(raw, d) for d in args.domains})
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
