"""Throughput of pgraft's stitched SD2 sampler against diffusers' own StableDiffusionPipeline (same components).

Random weights, no download: SD2's real widths at 512x512 on a GPU (fp16), the tiny test model on a CPU.
Prints images/s of each and the ratio ours / diffusers (target >= 0.95), and writes a JSON record.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from pgraft.config import SamplerParams  # noqa: E402
from pgraft.models.sd_lora import Sd2LoraModel, Sd2Parts, stitched_sample  # noqa: E402
from pgraft.models.sd_random import random_components  # noqa: E402
from pgraft.samplers.rollout import sample_in_batches  # noqa: E402
from pgraft.samplers.schedule import build_schedule  # noqa: E402


def timed(fn, repeats: int, device: torch.device) -> float:
    """Best wall time of `repeats` calls (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def random_parts(size: str, resolution: int, device: torch.device, dtype: torch.dtype) -> Sd2Parts:
    """Random-weight SD2 components (pgraft.models.sd_random) built directly on the device, as the stages hold them."""
    with torch.device(device):  # random init directly on the device
        comp = random_components(size, resolution)
    scheduler_config = {**dict(comp.pop("scheduler").config), "steps_offset": 1, "clip_sample": False}
    return Sd2Parts(**comp, scheduler_config=scheduler_config, device=device, dtype=dtype)


def measure(batch: int | None = None, steps: int | None = None, repeats: int = 3) -> dict:
    """images/s of diffusers' pipeline and of our sampling paths (one run), and their ratios to diffusers."""
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    size, resolution = ("sd2", 512) if cuda else ("tiny", 64)
    batch, steps = batch or (8 if cuda else 4), steps or (20 if cuda else 4)
    dtype = torch.float16 if cuda else torch.float32
    t0 = time.perf_counter()
    parts = random_parts(size, resolution, device, dtype)
    build_s = time.perf_counter() - t0
    cfg = {"pretrained": "random", "precision": "fp16", "device": str(device), "guidance_scale": 7.5,
           "lora_rank": 4, "lora_alpha": 4.0, "lora": False}
    base = Sd2LoraModel(parts, cfg)
    ft = copy.deepcopy(base)  # a LoRA model: its adapter is on the same UNet
    schedule = build_schedule(SamplerParams(name="ddim", num_steps=steps, eta=0.0), config=parts.scheduler_config)
    prompts = [f"a photo of object number {i} on a table" for i in range(batch)]
    tokens = torch.as_tensor(parts.tokens(prompts))
    shape = (batch, 4, resolution // 8, resolution // 8)

    from diffusers import DDIMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(unet=parts.unet, vae=parts.vae, text_encoder=parts.text_encoder,
                                   tokenizer=parts.tokenizer, scheduler=DDIMScheduler.from_config(parts.scheduler_config),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)

    def diffusers_call():
        parts.activate(None)
        g = torch.Generator(device).manual_seed(0)
        latents = torch.randn(shape, generator=g, device=device, dtype=dtype)
        pipe(prompts, num_inference_steps=steps, guidance_scale=7.5, latents=latents, output_type="latent")
        parts.active = object()  # the pipeline does not go through our adapter bookkeeping

    def ours(k, on_device):
        def call():
            g = torch.Generator(device if on_device else "cpu").manual_seed(0)
            x = torch.randn(shape, generator=g, device=device if on_device else "cpu")
            stitched_sample(ft, base, k, schedule, x, tokens, g)
        return call

    def stage_path(k):  # exactly what the sample / evaluate stages run: CPU generator, batch kept on the device
        def call():
            sample_in_batches(lambda i: ft if i < k else base, schedule, batch, shape[1:],
                              torch.Generator().manual_seed(0), batch, cond=tokens, device=device)
        return call

    runs = {"diffusers_pipeline": diffusers_call, "ours_k0_stage_path": stage_path(0),
            f"ours_k{steps // 2}_stage_path": stage_path(steps // 2), "ours_k0_on_device": ours(0, True),
            "ours_k0_latents_on_cpu": ours(0, False)}
    seconds = {name: timed(fn, repeats, device) for name, fn in runs.items()}
    ips = {name: batch / s for name, s in seconds.items()}
    ref = ips["diffusers_pipeline"]
    return {"device": torch.cuda.get_device_name() if cuda else "cpu", "size": size, "resolution": resolution,
            "batch": batch, "steps": steps, "lora_k": steps // 2, "dtype": str(dtype), "build_s": round(build_s, 2),
            "images_per_s": {k: round(v, 4) for k, v in ips.items()},
            "ratio_to_diffusers": {k: round(v / ref, 4) for k, v in ips.items() if k != "diffusers_pipeline"}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--batch", type=int, default=None, help="images per call (default: 8 on GPU, 4 on CPU)")
    p.add_argument("--steps", type=int, default=None, help="DDIM steps (default: 20 on GPU, 4 on CPU)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=os.environ.get("OUT", "."), help="directory of sd2_throughput.json")
    args = p.parse_args(argv)
    record = measure(args.batch, args.steps, args.repeats)
    ips, ref = record["images_per_s"], record["images_per_s"]["diffusers_pipeline"]
    for name in ips:
        ratio = "" if name == "diffusers_pipeline" else f"  ratio {ips[name] / ref:.3f}"
        print(f"{name:28s} {ips[name]:9.3f} images/s{ratio}")
    ok = record["ratio_to_diffusers"]["ours_k0_stage_path"] >= 0.95
    print(f"stitched sampler (stage path, k=0) / diffusers = {record['ratio_to_diffusers']['ours_k0_stage_path']:.3f} "
          f"(target >= 0.95: {'met' if ok else 'NOT met'}) on {record['device']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sd2_throughput.json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
