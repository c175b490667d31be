"""The GPU check (benchmarks/gpu_check.sh; docs/CLUSTER.md "GPUs"): every number below comes from one run.

1. The tiny random-weight Stable Diffusion 2 sweep through the real stages (pretrain -> sample -> reward ->
   filter -> finetune -> evaluate -> aggregate -> figures) with `device: auto`.
2. Stitched-sampler throughput against diffusers' own StableDiffusionPipeline on the same random weights (SD2's
   real widths at 512x512 in fp16 on a GPU): k = 0 (target >= 0.95) and the LoRA on for the first k = N/2
   steps (target >= 0.85), from benchmarks/sd2_throughput.py.
3. Fine-tuning step time of the one training loop with and without bf16: the SD2 LoRA (frozen weights fp32
   vs bf16, as sd2.model.precision) and the digits_t2i UNet (`precision: fp32` vs bf16 autocast).
4. The digits_t2i stages (pretrain, sample, reward, filter, finetune, evaluate, ddpo) with `device: cuda` and
   with `device: cpu`: the GPU/CPU wall-time ratio.

Without CUDA everything runs on the CPU with small sizes and the GPU-only numbers read n/a.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "benchmarks")]
# every core for each stage here (set before pgraft.stages sets the thread pools): the CPU side of the ratio
os.environ.setdefault("PGRAFT_THREADS", str(len(os.sched_getaffinity(0))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import torch  # noqa: E402
import yaml  # noqa: E402

NETWORK_STAGES = ("validate", "pretrain", "sample", "reward", "filter", "finetune", "evaluate", "ddpo")


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def run_stages(params: dict, work: Path, only: tuple[str, ...] | None = None) -> dict[str, float]:
    """Run the pipeline's stage commands for `params` in `work`, in process and in table order (stage output
    goes to work/stages.log); wall seconds per stage module."""
    from pipeline_helpers import stage_commands, write_params

    work.mkdir(parents=True, exist_ok=True)
    write_params(work / "params.yaml", params)
    here, times = os.getcwd(), {}
    os.chdir(work)
    os.environ["PGRAFT_STATE_DIR"] = str(work / ".pgraft")
    try:
        with open(work / "stages.log", "a") as log, contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
            for mod, args in stage_commands(params):
                name = mod.__name__.rsplit(".", 1)[-1]
                if only and name not in only:
                    continue
                t0 = time.perf_counter()
                code = mod.main(args)
                _sync()
                if code:
                    raise SystemExit(f"{mod.__name__} {' '.join(args)} exited {code} (see {work}/stages.log)")
                times[name] = times.get(name, 0.0) + time.perf_counter() - t0
    finally:
        os.chdir(here)
    return times


def sd_sweep(small: dict, work: Path) -> dict:
    """The tiny random SD2 through every stage with device auto (test_sd2's sizes)."""
    from pgraft.models.sd_random import save_random_sd2

    p = copy.deepcopy(small)
    p.update(domains=["sd2"], seeds=[0], truncation_grid=[0, 2, 4], device="auto")
    p["sampler"]["num_steps"] = 4
    p["inc"]["domains"], p["ddpo"]["domains"] = [], []
    p["sample"].update(num_groups=4, reference_size=100)
    p["finetune"].update(budgets=[2, 4], batch_size=4)
    p["evaluate"]["num_samples"] = 10
    p["sd2"]["model"].update(pretrained=str(save_random_sd2(work / "tiny_sd2")), device=None)
    t0 = time.perf_counter()
    times = run_stages(p, work / "sd2")
    return {"seconds": round(time.perf_counter() - t0, 2), "stages": sorted(times)}


def _step_time(model, objective, batch: int, steps: int) -> float:
    """Seconds per optimizer step of finetune.loop.train (after two warm-up steps)."""
    from pgraft.finetune import train

    gen = torch.Generator().manual_seed(0)
    train(model, objective, 2, 1e-4, batch, gen)
    _sync()
    t0 = time.perf_counter()
    train(model, objective, steps, 1e-4, batch, gen)
    _sync()
    return (time.perf_counter() - t0) / steps


def step_times(real: dict, cuda: bool) -> dict:
    """ms per fine-tuning step with fp32 and with bf16 (GPU only): SD2 LoRA and the digits_t2i UNet."""
    from sd2_throughput import random_parts

    from pgraft import domains
    from pgraft.config import parse_params
    from pgraft.finetune import DenoisingObjective
    from pgraft.models.sd_lora import Sd2LoraModel
    from pgraft.samplers.schedule import build_schedule

    device = torch.device("cuda" if cuda else "cpu")
    out: dict = {}
    size, resolution, batch, steps = ("sd2", 512, 4, 10) if cuda else ("tiny", 64, 2, 3)
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        if not cuda and precision == "bf16":  # a CPU computes in fp32
            out[f"sd2_lora_{precision}_ms"] = None
            continue
        parts = random_parts(size, resolution, device, dtype)
        cfg = {"pretrained": "random", "precision": precision, "device": str(device), "guidance_scale": 7.5,
               "lora_rank": 4, "lora_alpha": 4.0, "lora": True}
        model = Sd2LoraModel(parts, cfg)
        prompts = [f"a photo of object number {i}" for i in range(16)]
        data = torch.randn((16, 4, resolution // 8, resolution // 8), generator=torch.Generator().manual_seed(1))
        objective = DenoisingObjective(data, parts.alphas_cumprod, cond=torch.as_tensor(parts.tokens(prompts)))
        out[f"sd2_lora_{precision}_ms"] = round(1000 * _step_time(model, objective, batch, steps), 2)
        del parts, model
        if cuda:
            torch.cuda.empty_cache()
    batch, steps = (256, 30) if cuda else (32, 3)
    for precision in ("fp32", "bf16"):
        if not cuda and precision == "bf16":
            out[f"digits_unet_{precision}_ms"] = None
            continue
        raw = {**copy.deepcopy(real), "domains": ["digits_t2i"], "device": "auto", "precision": precision}
        raw["digits_t2i"]["model"]["architecture"] = "unet"
        params = parse_params(raw)
        domain = domains.build("digits_t2i", params)
        x, prompts = domain.sample_data(4 * batch, torch.Generator().manual_seed(2))
        objective = DenoisingObjective(x, build_schedule(params.sampler).alphas_cumprod,
                                       cond=torch.as_tensor(domain.tokens(prompts)))
        torch.manual_seed(0)
        model = domain.place(domain.build_model())
        out[f"digits_unet_{precision}_ms"] = round(1000 * _step_time(model, objective, batch, steps), 2)
    return out


def digits_params(real: dict, small: dict, cuda: bool) -> dict:
    """digits_t2i alone, one seed: moderate sizes on a GPU machine, the test sizes otherwise."""
    if not cuda:
        p = copy.deepcopy(small)
        p.update(domains=["digits_t2i"], seeds=[0])
        p["inc"]["domains"] = []
        return p
    p = copy.deepcopy(real)
    p.update(domains=["digits_t2i"], seeds=[0], truncation_grid=[0, 10, 20])
    p["inc"]["domains"] = []
    p["tracking"]["enabled"] = False
    p["sample"].update(num_groups=64, reference_size=1000)
    p["finetune"].update(budgets=[100, 300])
    p["evaluate"]["num_samples"] = 500
    p["ddpo"].update(checkpoints=[256])
    p["digits_t2i"]["pretrain"]["steps"] = 500
    p["digits_t2i"]["judges"]["steps"] = 300
    p["digits_t2i"]["features"]["steps"] = 200
    return p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per sampler (best of)")
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="directory of gpu_check.json")
    args = ap.parse_args(argv)
    from pipeline_helpers import shrink
    from sd2_throughput import measure

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.set_verbosity_error()  # random weights cast on purpose: no dtype advice
    transformers_logging.set_verbosity_error()
    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name() if cuda else "CPU (no CUDA: small sizes, GPU numbers n/a)"
    print(f"GPU check on {name}; torch {torch.__version__}; {os.environ['PGRAFT_THREADS']} CPU threads per stage",
          flush=True)
    real = yaml.safe_load((ROOT / "params.yaml").read_text())
    small = shrink(real)
    record: dict = {"device": name, "cpu_threads": int(os.environ["PGRAFT_THREADS"])}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pgraft-gpu-check-") as tmp:
        work = Path(tmp)
        record["sd2_sweep"] = sweep = sd_sweep(small, work)
        print(f"1. tiny SD2 sweep through {len(sweep['stages'])} stages (device auto): {sweep['seconds']:.1f} s",
              flush=True)

        tp = record["sd2_throughput"] = measure(repeats=args.repeats)
        r0 = tp["ratio_to_diffusers"]["ours_k0_stage_path"]
        rk = tp["ratio_to_diffusers"][f"ours_k{tp['lora_k']}_stage_path"]
        met = {True: "met", False: "NOT met"}
        print(f"2. stitched sampler / diffusers pipeline ({tp['size']} {tp['resolution']}px, batch {tp['batch']}, "
              f"{tp['steps']} steps, {tp['dtype']}): k=0 {r0:.3f} (target >= 0.95: {met[r0 >= 0.95]}); "
              f"LoRA on for the first {tp['lora_k']} steps {rk:.3f} (target >= 0.85: {met[rk >= 0.85]})", flush=True)

        st = record["finetune_step"] = step_times(real, cuda)

        def pair(key: str) -> str:
            fp32, bf16 = st[f"{key}_fp32_ms"], st[f"{key}_bf16_ms"]
            return (f"fp32 {fp32:.1f} ms, bf16 " + ("n/a" if bf16 is None else f"{bf16:.1f} ms (x{fp32 / bf16:.2f})"))
        print(f"3. fine-tuning step: SD2 LoRA {pair('sd2_lora')}; digits_t2i UNet {pair('digits_unet')}", flush=True)

        dp = digits_params(real, small, cuda)
        on_cpu = run_stages({**dp, "device": "cpu"}, work / "digits_cpu", NETWORK_STAGES)
        on_gpu = run_stages({**dp, "device": "cuda"}, work / "digits_gpu", NETWORK_STAGES) if cuda else None
        t_cpu = sum(on_cpu.values())
        record["digits_t2i"] = {"cpu_s": {k: round(v, 2) for k, v in on_cpu.items()},
                                "gpu_s": on_gpu and {k: round(v, 2) for k, v in on_gpu.items()}}
        if on_gpu:
            t_gpu = sum(on_gpu.values())
            record["digits_t2i"]["gpu_over_cpu"] = round(t_gpu / t_cpu, 3)
            per = ", ".join(f"{k} {on_gpu[k] / on_cpu[k]:.2f}" for k in on_cpu if k != "validate")
            print(f"4. digits_t2i stages GPU/CPU time: {t_gpu / t_cpu:.3f} (GPU {t_gpu:.1f} s, CPU {t_cpu:.1f} s; "
                  f"per stage: {per})", flush=True)
        else:
            print(f"4. digits_t2i stages on the CPU: {t_cpu:.1f} s; GPU/CPU time: n/a (no CUDA)", flush=True)
    record["total_s"] = round(time.perf_counter() - t_all, 1)
    print(f"total {record['total_s']:.0f} s", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
