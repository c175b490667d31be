"""Benchmarks measured in one run: shared-sampling sweep cost ratio, sampler throughput ratio, no-op repro.

Run from the repository root after `make repro`: `python benchmarks/run.py` (or `make bench`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def sweep_cost_ratio(params) -> dict:
    """Shared sampling (one sample/reward/filter run feeds every k) vs one per truncation point."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "PGRAFT_STATE_DIR": tempfile.mkdtemp()}
    d, s = params.domains[0], params.seeds[0]
    tmp = Path(tempfile.mkdtemp())
    base = f"results/{d}/base"
    py = [sys.executable, "-m"]
    t_sample = _timed(py + ["pgraft.stages.sample", "--domain", d, "--seed", str(s), "--model", base,
                            "--out", f"{tmp}/s.npz", "--reference", f"{tmp}/r.npz", "--metrics", f"{tmp}/m.json"], env)
    t_reward = _timed(py + ["pgraft.stages.reward", "--domain", d, "--seed", str(s), "--samples", f"{tmp}/s.npz",
                            "--reference", f"{tmp}/r.npz", "--out", f"{tmp}/rw.parquet"], env)
    t_filter = _timed(py + ["pgraft.stages.filter", "--domain", d, "--seed", str(s), "--samples", f"{tmp}/s.npz",
                            "--rewards", f"{tmp}/rw.parquet", "--out", f"{tmp}/sel.parquet",
                            "--acceptance", f"{tmp}/a.csv", "--metrics", f"{tmp}/f.json"], env)
    k = params.truncation_grid[len(params.truncation_grid) // 2]
    t_ft = _timed(py + ["pgraft.stages.finetune", "--domain", d, "--seed", str(s), "--k", str(k), "--model", base,
                        "--samples", f"{tmp}/s.npz", "--selection", f"{tmp}/sel.parquet", "--out", f"{tmp}/ft"], env)
    g = len(params.truncation_grid)
    front = t_sample + t_reward + t_filter
    shared, per_k = front + g * t_ft, g * (front + t_ft)
    return {"sample_s": t_sample, "reward_s": t_reward, "filter_s": t_filter, "finetune_s": t_ft,
            "grid_points": g, "sweep_shared_s": shared, "sweep_per_k_s": per_k, "per_k_over_shared": per_k / shared}


def sampler_throughput_ratio(params, repeats: int = 5) -> dict:
    """The sample stage's rollout (scheduler steps, kept states) vs a bare loop of the same forwards."""
    from pgraft import domains
    from pgraft.samplers.rollout import sample_in_batches
    from pgraft.samplers.schedule import build_schedule
    from pgraft.stages.common import load_model

    d = params.domains[0]
    domain = domains.build(d, params)
    model = load_model(ROOT / f"results/{d}/base", domain)
    schedule = build_schedule(params.sampler)
    n = params.sample.num_groups * params.group_size()
    bs = params.sample.batch_size

    def stage():
        sample_in_batches(lambda i: model, schedule, n, domain.shape, torch.Generator().manual_seed(0), bs,
                          keep=params.truncation_grid)

    @torch.no_grad()
    def bare():
        g = torch.Generator().manual_seed(0)
        for start in range(0, n, bs):
            x = torch.randn((min(bs, n - start), *domain.shape), generator=g)
            for t in schedule.timesteps:
                x = model(x, t.expand(x.shape[0]))

    def best(fn):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_stage, t_bare = best(stage), best(bare)
    return {"samples": n, "stage_samples_per_s": n / t_stage, "bare_samples_per_s": n / t_bare,
            "throughput_ratio": t_bare / t_stage}


def noop_repro() -> dict:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    status = subprocess.run([str(BIN / "dvc"), "status"], cwd=ROOT, env=env, capture_output=True, text=True)
    up_to_date = "up to date" in status.stdout
    t = _timed([str(BIN / "dvc"), "repro"], env) if up_to_date else float("nan")
    return {"pipeline_up_to_date": up_to_date, "noop_repro_s": t}


def main() -> int:
    from pgraft.config import load_params

    params = load_params(ROOT / "params.yaml")
    if not (ROOT / f"results/{params.domains[0]}/base/model.safetensors").exists():
        print("run `make repro` first: the benchmarks use the pretrained base model", file=sys.stderr)
        return 2
    out = {"noop_repro": noop_repro(), "sampler_throughput": sampler_throughput_ratio(params),
           "sweep_cost": sweep_cost_ratio(params)}
    print(json.dumps(out, indent=2))
    print(f"\nper-k sampling / shared sampling sweep cost: {out['sweep_cost']['per_k_over_shared']:.2f}x")
    print(f"sample-stage throughput / bare forward loop:  {out['sampler_throughput']['throughput_ratio']:.3f} "
          "(target >= 0.95)")
    print(f"no-op dvc repro: {out['noop_repro']['noop_repro_s']:.2f} s (target <= 3 s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
