"""Pipeline overhead, measured in one run: the same pipeline sequential (`dvc repro`) and parallel (Snakemake on
every core), each with stages started cold and warm, in four scratch copies of the project, plus a stage whose body
does nothing.

Prints: the overhead of an empty stage (process start, imports, params validation, tracking record); per-stage
overhead under DVC (median over stages of the time between two stage starts minus the first stage's body, i.e.
process start + imports + DVC's bookkeeping), with every stage started cold and with the warm stage server
(`pgraft warm`); total wall time of `dvc repro` (sequential) and Snakemake on every core, cold and warm (warm
Snakemake is `make repro`), and their ratios; the share of core time spent inside stage bodies; the no-op
`dvc repro` time; and whether all four runs wrote identical results.

    python benchmarks/pipeline.py            # a shrunk pipeline (one domain, 2 seeds): a few minutes
    python benchmarks/pipeline.py --full     # the default params.yaml: the whole default, four times (hours)
    python benchmarks/pipeline.py --analyze DIR   # read a finished Snakemake run (e.g. `make repro` in DIR)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DONE = re.compile(r"pgraft [\w-]+: done in ([0-9.]+) s")
START = re.compile(r"Running stage '([^']+)'")
EMPTY_STAGE = ("from pgraft.runtime.runner import base_parser, run_stage\n"
               "raise SystemExit(run_stage('empty', base_parser('empty', 'a stage whose body does nothing'), "
               "lambda args, params: {}, []))")


def shrunk(raw: dict) -> dict:
    """One domain, two seeds, three truncation points, small sample counts: minutes, every stage kind but INC."""
    p = json.loads(json.dumps(raw))
    p["domains"] = ["gaussian"]
    p["seeds"] = [0, 1]
    n = p["sampler"]["num_steps"]
    p["truncation_grid"] = [0, n // 2, n]
    p["sample"].update(num_groups=64, reference_size=1000)
    p["finetune"]["budgets"] = [20, 100]
    p["evaluate"]["num_samples"] = 500
    p.setdefault("tracking", {})["enabled"] = False
    return p


def project(dst: Path, raw: dict) -> Path:
    for name in ("src", "workflow"):
        shutil.copytree(ROOT / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    (dst / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    env = _env(dst)
    for cmd in ([str(BIN / "pgraft"), "pipeline", "dvc"], ["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"],
                [str(BIN / "dvc"), "config", "core.analytics", "false"]):
        subprocess.run(cmd, cwd=dst, env=env, check=True, capture_output=True)
    return dst


def _env(cwd: Path) -> dict:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PYTHONPATH": str(cwd / "src"),
           "PGRAFT_STATE_DIR": str(cwd / ".pgraft")}
    env.pop("PGRAFT_THREADS", None)  # the default thread policy
    return env


def timed_lines(cmd: list[str], cwd: Path) -> tuple[float, list[tuple[float, str]]]:
    """Run `cmd`, stamping each output line with its arrival time; returns (wall seconds, lines)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=_env(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            bufsize=1)
    lines = [(time.perf_counter() - t0, line.rstrip()) for line in proc.stdout]
    if proc.wait():
        sys.exit(f"{' '.join(cmd)} failed:\n" + "\n".join(text for _, text in lines[-30:]))
    return time.perf_counter() - t0, lines


def dvc_overheads(lines: list[tuple[float, str]]) -> tuple[list[float], list[float]]:
    """Per stage: (time to the next stage's start − own body), and every body time, from `dvc repro`'s output."""
    starts = [t for t, text in lines if START.search(text)]
    bodies = [float(DONE.search(text).group(1)) for _, text in lines if DONE.search(text)]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    return [g - body for g, body in zip(gaps, bodies)], bodies


def smk_bodies(repo: Path) -> list[float]:
    return [float(m.group(1)) for log in (repo / "logs").rglob("*.log") for m in DONE.finditer(log.read_text())]


STAMP = r"\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]\n"
SMK_START = re.compile(STAMP + r"(?:local)?rule (\w+):\n(?:    .*\n)*?    log: (\S+)\n(?:    .*\n)*?    jobid: (\d+)")
SMK_END = re.compile(STAMP + r"Finished jobid: (\d+)")


def snakemake_jobs(repo: Path) -> list[dict]:
    """Every job of a finished Snakemake run in `repo` (its newest log): rule, start and end (whole seconds, as
    Snakemake logs them), and the body time its stage log reports (`done in X s`)."""
    logs = sorted((repo / ".snakemake" / "log").glob("*.log"), key=lambda f: f.stat().st_mtime)
    log = next((t for t in map(Path.read_text, reversed(logs)) if "Finished jobid" in t), "")  # not a --touch run
    when = lambda text: time.mktime(time.strptime(text, "%a %b %d %H:%M:%S %Y"))  # noqa: E731
    ends = {int(m.group(2)): when(m.group(1)) for m in SMK_END.finditer(log)}
    jobs = []
    for m in SMK_START.finditer(log):
        stage_log = repo / m.group(3)
        done = DONE.search(stage_log.read_text()) if stage_log.exists() else None
        job = int(m.group(4))
        if job in ends and done:
            jobs.append({"rule": m.group(2), "start": when(m.group(1)), "end": ends[job],
                         "body": float(done.group(1))})
    return jobs


def analyze(repo: Path, cores: int) -> dict:
    """What a finished Snakemake run (for example `make repro` in a fresh clone) spent: wall time, the share of
    core time inside stage bodies, and per-job overhead (job wall − body: process start or fork, imports, params
    validation, Snakemake's bookkeeping), overall and per rule."""
    jobs = snakemake_jobs(repo)
    wall = max(j["end"] for j in jobs) - min(j["start"] for j in jobs)
    over = [j["end"] - j["start"] - j["body"] for j in jobs]
    by_rule: dict[str, list[float]] = {}
    for j, o in zip(jobs, over):
        by_rule.setdefault(j["rule"], []).append(o)
    return {"jobs": len(jobs), "wall_min": round(wall / 60, 1),
            "body_cpu_min": round(sum(j["body"] for j in jobs) / 60, 1),
            "share_in_bodies": round(sum(j["body"] for j in jobs) / (wall * cores), 3),
            "overhead_per_job_median_s": round(statistics.median(over), 2),
            "overhead_per_job_mean_s": round(statistics.mean(over), 2),
            "overhead_median_by_rule_s": {r: round(statistics.median(v), 2) for r, v in sorted(by_rule.items())},
            "body_min_by_rule": {r: round(sum(j["body"] for j in jobs if j["rule"] == r) / 60, 2)
                                 for r in sorted(by_rule)}}


def empty_stage(repo: Path, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", EMPTY_STAGE], cwd=repo, env=_env(repo), check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the default params.yaml instead of the shrunk pipeline")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copies (their paths are printed)")
    ap.add_argument("--analyze", type=Path, metavar="REPO",
                    help="only read a finished Snakemake run in REPO (e.g. `make repro` in a fresh clone): wall time, "
                         "share in stage bodies, per-job overhead")
    args = ap.parse_args(argv)
    if args.analyze:
        print(json.dumps(analyze(args.analyze, len(os.sched_getaffinity(0))), indent=2))
        return 0
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    if not args.full:
        raw = shrunk(raw)
    scratch = Path(tempfile.mkdtemp(prefix="pgraft-bench-"))
    cores = len(os.sched_getaffinity(0))
    warm = [str(BIN / "pgraft"), "warm"]
    dvc, smk = [str(BIN / "dvc"), "repro"], [str(BIN / "snakemake"), "--profile", "workflow/profiles/local"]
    runs = {"dvc_cold": dvc, "dvc_warm": warm + dvc, "snakemake_cold": smk, "snakemake_warm": warm + smk}
    repos = {name: project(scratch / name, raw) for name in runs}

    t_empty = empty_stage(repos["dvc_cold"])
    wall, overheads, bodies = {}, {}, {}
    for name, cmd in runs.items():
        wall[name], lines = timed_lines(cmd, repos[name])
        if name.startswith("dvc"):
            overheads[name], bodies[name] = dvc_overheads(lines)
        else:
            bodies[name] = smk_bodies(repos[name])
    t_noop, _ = timed_lines(dvc, repos["dvc_cold"])
    # engine bookkeeping files differ by design (DVC's .gitignore entries, Snakemake's directory timestamps)
    same = {name: subprocess.run(["diff", "-r", "-q", "-x", "*.log", "-x", ".gitignore", "-x", ".snakemake_timestamp",
                                  str(repos["dvc_cold"] / "results"), str(repos[name] / "results")],
                                 capture_output=True, text=True) for name in runs if name != "dvc_cold"}

    out = {
        "pipeline": "default" if args.full else "shrunk (gaussian, 2 seeds, k in {0, N/2, N})",
        "cores": cores, "stages": len(bodies["dvc_cold"]),
        "empty_stage_s": round(t_empty, 2),
        **{f"{name}_overhead_per_stage_median_s": round(statistics.median(v), 2) for name, v in overheads.items()},
        **{f"{name}_wall_s": round(t, 1) for name, t in wall.items()},
        "dvc_cold_over_snakemake_warm": round(wall["dvc_cold"] / wall["snakemake_warm"], 2),
        "snakemake_cold_over_warm": round(wall["snakemake_cold"] / wall["snakemake_warm"], 2),
        **{f"share_in_bodies_{name}": round(sum(bodies[name]) / (t * (1 if name.startswith("dvc") else cores)), 3)
           for name, t in wall.items()},
        "noop_dvc_repro_s": round(t_noop, 2),
        "outputs_identical": all(d.returncode == 0 for d in same.values()),
    }
    print(json.dumps(out, indent=2))
    for name, d in same.items():
        if d.returncode:
            print(f"{name} differs from dvc_cold:\n{d.stdout[:2000]}", file=sys.stderr)
    print(f"\nempty stage: {out['empty_stage_s']} s; per-stage overhead under dvc repro (median): cold "
          f"{out['dvc_cold_overhead_per_stage_median_s']} s, warm {out['dvc_warm_overhead_per_stage_median_s']} s "
          "(target <= 1.5 s)")
    print(f"dvc repro (cold, sequential) {wall['dvc_cold']:.0f} s; make repro (warm snakemake, {cores} cores) "
          f"{wall['snakemake_warm']:.0f} s: {out['dvc_cold_over_snakemake_warm']}x; snakemake cold/warm "
          f"{out['snakemake_cold_over_warm']}x; no-op dvc repro {t_noop:.1f} s (target <= 3 s)")
    if args.keep:
        print(f"scratch copies: {scratch}")
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if out["outputs_identical"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
