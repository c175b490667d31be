"""The INC study: base step counts n in {5, 10, 20, 40}, each with its own inversion and corrector, and the ablation
coupling × corrector size × training-step cap × inverted-set size × the corrector sampler's Euler steps, on a
selection seed that no reported result uses.
Runs the real stage commands (pgraft.pipeline.table: pretrain_flow, invert, correct, evaluate_flow) and writes a
tidy CSV and a markdown table of FID and KID, base vs base + corrector on the same noise, per setting and n.

    python scripts/inc_study.py --out results/studies/inc_study            # the full grid (hours on CPUs)
    python scripts/inc_study.py --out /tmp/inc_smoke --smoke               # one tiny setting, a check of the plumbing

Each (n, inverted-set size) gets one inversion, shared by every corrector setting (linked); each setting gets its
own directory with a params.yaml (the repository's, with the setting applied). The base model is trained once in
prep/ (or linked from --base)."""

from __future__ import annotations

import argparse
import copy
import fcntl
import itertools
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import yaml

from pgraft.pipeline.studies import command, run, write_params
from pgraft.pipeline.table import BY_NAME

DOMAIN = "digits_flow"
STEPS_N = (5, 10, 20, 40)
COUPLINGS = ("ot", "independent")
SIZES = ("128x2", "256x3", "512x4", "unet16-32")  # corrector MLP HIDDENxLAYERS, or a UNet's block widths
STEP_CAPS = (2000, 6000)  # inc.corrector.steps; early stopping may end sooner


CELL_KEYS = ["n", "num_inverted", "coupling", "corrector", "step_cap", "corrector_steps"]  # a row of study.csv


def size_label(setting: dict) -> str:
    if setting["architecture"] == "unet":
        return "unet" + "-".join(map(str, setting["unet_channels"]))
    return f"mlp{setting['hidden']}x{setting['layers']}"


def corrector_setting(size: str) -> dict:
    """inc.corrector keys of one --sizes entry: HIDDENxLAYERS (an MLP) or unetW1-W2-... (a UNet's block widths)."""
    if size.startswith("unet"):
        return {"architecture": "unet", "unet_channels": [int(w) for w in size.removeprefix("unet").split("-")]}
    hidden, layers = (int(v) for v in size.split("x"))
    return {"architecture": "mlp", "hidden": hidden, "layers": layers}


def link(src: Path, dst: Path) -> None:
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            dst.symlink_to(src.resolve())
        except FileExistsError:  # another invocation linked it first
            pass


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/studies/inc_study"))
    p.add_argument("--seed", type=int, default=100, help="selection seed (not among params.yaml's seeds)")
    p.add_argument("--base", type=Path,
                   help="the results/ directory of a run of this params.yaml: its digits_flow base and features are "
                        "linked instead of trained, and its inversions of every image (--inverted all) reused")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--smoke", action="store_true",
                   help="one tiny setting at n = 5 (few inverted images, steps and samples): checks the plumbing")
    p.add_argument("--steps-n", type=int, nargs="+", default=list(STEPS_N), metavar="N",
                   help=f"base step counts, each with its own inversion (default {' '.join(map(str, STEPS_N))})")
    p.add_argument("--couplings", nargs="+", default=list(COUPLINGS), choices=COUPLINGS)
    p.add_argument("--sizes", nargs="+", default=list(SIZES), metavar="SIZE",
                   help="correctors: an MLP as HIDDENxLAYERS or a UNet as unetW1-W2-... (block widths; unet16-32 is "
                        "about a quarter of the base's parameters); default " + " ".join(SIZES))
    p.add_argument("--step-caps", type=int, nargs="+", default=list(STEP_CAPS), metavar="STEPS",
                   help="corrector training steps (inc.corrector.steps)")
    p.add_argument("--inverted", nargs="+", default=["500", "all"], metavar="M",
                   help="training images inverted per n (inc.num_inverted; all: every one)")
    p.add_argument("--corrector-steps", type=int, nargs="+", metavar="E",
                   help="Euler steps of the corrector's own sampler (inc.corrector_steps); one trained corrector is "
                        "evaluated at each (default: params.yaml's)")
    args = p.parse_args()
    raw = yaml.safe_load(Path("params.yaml").read_text())
    if args.seed in raw["seeds"]:
        raise SystemExit(f"--seed {args.seed} is one of params.yaml's seeds {raw['seeds']}: pick a selection seed")
    raw.update(domains=[DOMAIN], seeds=[args.seed])
    raw["tracking"]["enabled"] = False
    try:
        sizes = tuple(corrector_setting(size) for size in args.sizes)
        inverted = tuple(None if m == "all" else int(m) for m in args.inverted)
    except ValueError:
        raise SystemExit(f"--sizes {args.sizes} / --inverted {args.inverted}: expected HIDDENxLAYERS (e.g. 256x3) "
                         "or unetW1-W2 (e.g. unet16-32), and an image count or `all`") from None
    steps_n, couplings, caps = tuple(args.steps_n), tuple(args.couplings), tuple(args.step_caps)
    if args.smoke:
        steps_n, couplings, caps, inverted = (5,), ("ot",), (60,), (40,)
        sizes = (corrector_setting("32x1"),)
        raw["inc"].update(num_samples=200, iterations=10, max_residual=1.0, roundtrip_threshold=1.0)
        raw["inc"]["corrector"].update(eval_every=20, patience=2, batch_size=16)
        raw[DOMAIN].setdefault("pretrain", {})["steps"] = 20
    out = (args.out / "smoke" if args.smoke else args.out).resolve()  # a smoke run never merges into the study
    prep = out / "prep"
    write_params(prep / "params.yaml", raw)
    point = {"domain": DOMAIN}
    if args.base:
        for name in ("base", "features"):
            link(args.base / DOMAIN / name, prep / "results" / DOMAIN / name)
    elif not all((prep / o.pattern.format(**point)).exists() for o in BY_NAME["pretrain_flow"].outputs):
        run(command("pretrain_flow", raw, **point), prep)

    inversions = []
    for n, m in itertools.product(steps_n, inverted):
        work = out / f"inverted_n{n}_m{m or 'all'}"
        cfg = copy.deepcopy(raw)
        cfg["inc"].update(base_steps=[n], corrected_steps=[n], num_inverted=m)
        write_params(work / "params.yaml", cfg)
        for name in ("base", "features"):
            link(prep / "results" / DOMAIN / name, work / "results" / DOMAIN / name)
        if args.base and m is None:  # every image inverted with params.yaml's settings: the default run's inversion
            for stage_out in ("out", "metrics"):
                rel = BY_NAME["invert"].output(stage_out).pattern.format(domain=DOMAIN, n=n)
                if (args.base.parent / rel).exists():
                    link(args.base.parent / rel, work / rel)
        inversions.append((n, m, work, cfg))

    def invert(job):
        n, m, work, cfg = job
        if not (work / BY_NAME["invert"].output("out").pattern.format(domain=DOMAIN, n=n)).exists():
            run(command("invert", cfg, domain=DOMAIN, n=n), work)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(invert, inversions))

    def setup(cell: Path, cfg: dict, n: int, inv_dir: Path) -> None:
        """A run directory: its params.yaml, the base and features, and the inversion of its n."""
        write_params(cell / "params.yaml", cfg)
        for name in ("base", "features"):
            link(prep / "results" / DOMAIN / name, cell / "results" / DOMAIN / name)
        rel = BY_NAME["invert"].output("out").pattern.format(domain=DOMAIN, n=n)
        link(inv_dir / rel, cell / rel)

    default_e = raw["inc"]["corrector_steps"]
    euler = tuple(args.corrector_steps or (default_e,))
    jobs = []
    for (n, m, inv_dir, inv_cfg), c, size, cap in itertools.product(inversions, couplings, sizes, caps):
        label = size_label(size)
        work = out / f"n{n}_m{m or 'all'}_{c}_{label}_s{cap}"  # the corrector is trained here, once
        cfg = copy.deepcopy(inv_cfg)
        cfg["inc"]["corrector"].update(coupling=c, steps=cap, **size)
        setup(work, cfg, n, inv_dir)
        cells = []
        for e in euler:  # each corrector sampler step count evaluates the same trained corrector
            if e == default_e:
                cells.append((e, work, cfg))
                continue
            cell, cell_cfg = work.with_name(f"{work.name}_e{e}"), copy.deepcopy(cfg)
            cell_cfg["inc"]["corrector_steps"] = e
            setup(cell, cell_cfg, n, inv_dir)
            cells.append((e, cell, cell_cfg))
        jobs.append((n, m, c, label, cap, work, cfg, inv_dir, cells))

    def one(job) -> list[dict]:
        n, m, c, label, cap, work, cfg, inv_dir, cells = job
        pt = {"domain": DOMAIN, "seed": args.seed, "n": n}
        trained = work / BY_NAME["correct"].output("out").pattern.format(**pt)
        if not trained.exists():
            run(command("correct", cfg, **pt), work)
        inv = json.loads((inv_dir / BY_NAME["invert"].output("metrics").pattern.format(**pt)).read_text())
        rows = []
        for e, cell, cell_cfg in cells:
            link(trained, cell / BY_NAME["correct"].output("out").pattern.format(**pt))
            ev = cell / BY_NAME["evaluate_flow"].output("out").pattern.format(**pt)
            if not ev.exists():
                run(command("evaluate_flow", cell_cfg, domain=DOMAIN, seed=args.seed), cell)
            res = json.loads(ev.read_text())
            b, i = res[f"base_n{n}"], res[f"inc_n{n}"]
            rows.append({"n": n, "num_inverted": m or "all", "kept": inv["num_inverted"], "coupling": c,
                         "corrector": label, "step_cap": cap, "corrector_steps": e,
                         "steps_run": i.get("corrector_steps_run"), "best_step": i.get("corrector_best_step"),
                         "nn_ratio": i.get("corrector_nn_ratio"), "base_fid": b["fid"], "inc_fid": i["fid"],
                         "base_kid": b["kid"], "inc_kid": i["kid"],
                         "fid_change_pct": 100 * (i["fid"] - b["fid"]) / b["fid"],
                         "kid_minus_base": i["kid_minus_base"], "floor_fid": res["floor"]["fid"],
                         "floor_kid": res["floor"]["kid"], "flops_per_image": i.get("flops_per_image")})
        return rows

    with ThreadPoolExecutor(args.jobs) as pool:
        table = pd.DataFrame([row for rows in pool.map(one, jobs) for row in rows])
    with open(out / ".lock", "w") as lock:  # invocations over other axes may finish at the same time
        fcntl.flock(lock, fcntl.LOCK_EX)
        table = merged(table, out / "study.csv")
        table.to_csv(out / "study.csv", index=False)
        text = report(table, args.seed, seed_spread(Path("results/metrics") / DOMAIN),
                      evaluation(out, Path("results/metrics") / DOMAIN))
        (out / "study.md").write_text(text)
    print(text)
    return 0


def merged(table: pd.DataFrame, csv: Path) -> pd.DataFrame:
    """This invocation's cells with those of earlier ones in `csv` (other axes); a cell run again is replaced."""
    table = table.astype({"num_inverted": str})
    if not csv.exists():
        return table
    earlier = pd.read_csv(csv, dtype={"num_inverted": str})
    if "corrector_steps" not in earlier:  # cells run before the axis existed: params.yaml's value then (20)
        earlier["corrector_steps"] = 20
    fresh = pd.MultiIndex.from_frame(table[CELL_KEYS])
    keep = earlier[~pd.MultiIndex.from_frame(earlier[CELL_KEYS]).isin(fresh)]
    return pd.concat([keep, table], ignore_index=True).sort_values(CELL_KEYS, ignore_index=True)


def seed_spread(metrics: Path) -> dict[int, float]:
    """Per n: the standard deviation over the default run's seeds of the paired FID difference (base + INC − base),
    the noise a single-seed cell carries (a corrector seed and a noise seed); empty without those results."""
    runs = [json.loads(f.read_text()) for f in sorted(metrics.glob("seed*/inc.json"))]
    out = {}
    for key in {k for r in runs for k in r if k.startswith("inc_n")}:
        diffs = [r[key]["fid_minus_base"] for r in runs if key in r]
        if len(diffs) >= 2:
            out[int(key.removeprefix("inc_n"))] = float(pd.Series(diffs).std())
    return out


def evaluation(out: Path, default: Path) -> str:
    """The fresh-seed check of a chosen cell: <out>/evaluation/<cell>/seed<s>/inc.json (the default chain's
    evaluate_flow output on the reported seeds, run with that cell's corrector), per n: base and base + INC FID and
    the paired difference with its 95 % t interval, beside the same for the default run's own corrector
    (`default`: its results/metrics/digits_flow)."""
    from pgraft.report.intervals import diff_cell, paired

    def rows(label: str, files: list[Path]) -> list[str]:
        runs = {int(f.parent.name.removeprefix("seed")): json.loads(f.read_text()) for f in files}
        lines = []
        for key in sorted({k for r in runs.values() for k in r if k.startswith("inc_n")}, key=lambda k: int(k[5:])):
            n = int(key[5:])
            base = pd.Series({s: r[f"base_n{n}"]["fid"] for s, r in runs.items() if key in r})
            inc = pd.Series({s: r[key]["fid"] for s, r in runs.items() if key in r})
            kid = paired(pd.Series({s: r[key]["kid"] for s, r in runs.items() if key in r}),
                         pd.Series({s: r[f"base_n{n}"]["kid"] for s, r in runs.items() if key in r}))
            mean, lo, hi, count, pv = paired(inc, base)
            lines.append(f"| {label} | {n} | {sorted(runs)} | {base.mean():.2f} | {inc.mean():.2f} | "
                         f"{diff_cell(mean, lo, hi, pv)} | {100 * mean / base.mean():+.0f} % | "
                         f"{diff_cell(kid[0], kid[1], kid[2], kid[4])} |")
        return lines

    cells = sorted(d for d in (out / "evaluation").glob("*") if d.is_dir())
    if not cells:
        return ""
    lines = ["## The chosen cell on the reported seeds", "",
             "Each cell below was run through the default pipeline's INC chain (params.yaml with the cell's corrector) "
             "on the seeds the default reports, not the selection seed; FID mean over seeds, paired difference "
             "base + INC − base with its 95 % t interval and p, and the same for KID (x 1e6).", "",
             "| corrector | n | seeds | base FID | base + INC FID | INC − base FID | change | INC − base KID |",
             "|---|---|---|---|---|---|---|---|"]
    for cell in cells:
        lines += rows(cell.name, sorted(cell.glob("seed*/inc.json")))
    lines += rows("the default's (params.yaml)", sorted(default.glob("seed*/inc.json")))
    return "\n".join(lines + [""])


def report(table: pd.DataFrame, seed: int, spread: dict[int, float] | None = None, fresh: str = "") -> str:
    """FID / KID of base and base + corrector per setting and n, the seed-to-seed spread that one cell's difference
    carries, and the mean FID change per ablation factor."""
    lines = [f"# INC study (selection seed {seed})", "",
             "Base and base + corrector from the same noise; the floor is real training vs real held-out images.", ""]
    if spread:
        lines += ["Each cell is one corrector seed and one noise draw. Across the default run's seeds the paired FID "
                  "difference (base + INC − base) of one setting has a standard deviation of "
                  + ", ".join(f"{v:.2f} at n = {n}" for n, v in sorted(spread.items()))
                  + ": cells closer than about twice that are not told apart by this screen.", ""]
    table = table.assign(fid_minus_base=table.inc_fid - table.base_fid)
    lines += [table.round(4).to_markdown(index=False), "", fresh]
    for factor in [f for f in ("coupling", "corrector", "step_cap", "num_inverted", "corrector_steps") if f in table]:
        lines += [f"## Mean FID change (%) by {factor} and n", "",
                  table.pivot_table(index=factor, columns="n", values="fid_change_pct").round(2).to_markdown(), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
