"""The INC study: base step counts n in {5, 10, 20, 40}, each with its own inversion and corrector, and the ablation
coupling × corrector size × training-step cap × inverted-set size, on a selection seed that no reported result uses.
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
SIZES = ((128, 2), (256, 3), (512, 4))  # corrector (hidden, layers)
STEP_CAPS = (2000, 6000)  # inc.corrector.steps; early stopping may end sooner
INVERTED = (500, None)  # inc.num_inverted (None: every training image)


def link(src: Path, dst: Path) -> None:
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src.resolve())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("results/studies/inc_study"))
    p.add_argument("--seed", type=int, default=100, help="selection seed (not among params.yaml's seeds)")
    p.add_argument("--base", type=Path, help="an existing results/ directory holding digits_flow/{base,features}")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--smoke", action="store_true",
                   help="one tiny setting at n = 5 (few inverted images, steps and samples): checks the plumbing")
    args = p.parse_args()
    raw = yaml.safe_load(Path("params.yaml").read_text())
    if args.seed in raw["seeds"]:
        raise SystemExit(f"--seed {args.seed} is one of params.yaml's seeds {raw['seeds']}: pick a selection seed")
    raw.update(domains=[DOMAIN], seeds=[args.seed])
    raw["tracking"]["enabled"] = False
    steps_n, couplings, sizes, caps, inverted = STEPS_N, COUPLINGS, SIZES, STEP_CAPS, INVERTED
    if args.smoke:
        steps_n, couplings, sizes, caps, inverted = (5,), ("ot",), ((32, 1),), (60,), (40,)
        raw["inc"].update(num_samples=200, iterations=10, max_residual=1.0, roundtrip_threshold=1.0)
        raw["inc"]["corrector"].update(eval_every=20, patience=2, batch_size=16)
        raw[DOMAIN].setdefault("pretrain", {})["steps"] = 20
    out = args.out.resolve()
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
        inversions.append((n, m, work, cfg))

    def invert(job):
        n, m, work, cfg = job
        if not (work / BY_NAME["invert"].output("out").pattern.format(domain=DOMAIN, n=n)).exists():
            run(command("invert", cfg, domain=DOMAIN, n=n), work)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(invert, inversions))

    jobs = []
    for (n, m, inv_dir, inv_cfg), c, (h, layers), cap in itertools.product(inversions, couplings, sizes, caps):
        work = out / f"n{n}_m{m or 'all'}_{c}_h{h}x{layers}_s{cap}"
        cfg = copy.deepcopy(inv_cfg)
        cfg["inc"]["corrector"].update(coupling=c, hidden=h, layers=layers, steps=cap)
        write_params(work / "params.yaml", cfg)
        for name in ("base", "features"):
            link(prep / "results" / DOMAIN / name, work / "results" / DOMAIN / name)
        rel = BY_NAME["invert"].output("out").pattern.format(domain=DOMAIN, n=n)
        link(inv_dir / rel, work / rel)
        jobs.append((n, m, c, h, layers, cap, work, cfg, inv_dir))

    def one(job):
        n, m, c, h, layers, cap, work, cfg, inv_dir = job
        pt = {"domain": DOMAIN, "seed": args.seed, "n": n}
        ev = work / BY_NAME["evaluate_flow"].output("out").pattern.format(**pt)
        if not ev.exists():
            run(command("correct", cfg, **pt), work)
            run(command("evaluate_flow", cfg, domain=DOMAIN, seed=args.seed), work)
        res = json.loads(ev.read_text())
        inv = json.loads((inv_dir / BY_NAME["invert"].output("metrics").pattern.format(**pt)).read_text())
        b, i = res[f"base_n{n}"], res[f"inc_n{n}"]
        return {"n": n, "num_inverted": m or "all", "kept": inv["num_inverted"], "coupling": c, "hidden": h,
                "layers": layers, "step_cap": cap, "steps_run": i.get("corrector_steps_run"),
                "best_step": i.get("corrector_best_step"), "nn_ratio": i.get("corrector_nn_ratio"),
                "base_fid": b["fid"], "inc_fid": i["fid"], "base_kid": b["kid"], "inc_kid": i["kid"],
                "fid_change_pct": 100 * (i["fid"] - b["fid"]) / b["fid"], "kid_minus_base": i["kid_minus_base"],
                "floor_fid": res["floor"]["fid"], "floor_kid": res["floor"]["kid"]}

    with ThreadPoolExecutor(args.jobs) as pool:
        table = pd.DataFrame(list(pool.map(one, jobs)))
    table.to_csv(out / "study.csv", index=False)
    (out / "study.md").write_text(report(table, args.seed))
    print(report(table, args.seed))
    return 0


def report(table: pd.DataFrame, seed: int) -> str:
    """FID / KID of base and base + corrector per setting and n, and the mean FID change per ablation factor."""
    lines = [f"# INC study (selection seed {seed})", "",
             "Base and base + corrector from the same noise; the floor is real training vs real held-out images.", "",
             table.round(4).to_markdown(index=False), ""]
    for factor in ("coupling", "hidden", "step_cap", "num_inverted"):
        lines += [f"## Mean FID change (%) by {factor} and n", "",
                  table.pivot_table(index=factor, columns="n", values="fid_change_pct").round(2).to_markdown(), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
