"""Stage evaluate_flow: FID and KID against held-out real images vs FLOPs per image, base at every n and base + INC."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("For one seed: draw inc.num_samples images from the base flow at every n of inc.base_steps and from "
       "noise -> corrector -> base at every n of inc.corrected_steps, all from the SAME noise; FID and KID against "
       "every held-out real image through the pipeline's own feature network registered in torch-fidelity, the "
       "corrected minus the base sampler at the same n (paired: same noise), and the floor: real training vs real "
       "held-out images; FLOPs per image counted with torch.utils.flop_counter.")


def body(args, params) -> dict:
    from pathlib import Path

    import torch

    from pgraft import domains
    from pgraft.io import read_json, write_json
    from pgraft.metrics.fid import fid_kid, to_uint8
    from pgraft.metrics.flops import flops_per_image
    from pgraft.models import corrector
    from pgraft.samplers.flow import batched, composed_sample, euler_sample
    from pgraft.seeds import seeded
    from pgraft.stages.common import load_model, set_threads

    set_threads()
    inc = params.inc
    domain = domains.build(args.domain, params)
    base = domain.place(load_model(args.model, domain))
    device = domain.device
    train, test = domain.split()
    real = to_uint8(torch.as_tensor(test))
    gen = seeded("inc_evaluate", args.seed)
    z = torch.randn((inc.num_samples, *domain.shape), generator=gen)  # the same noise for every method
    x1, t1 = z[:8].to(device), torch.full((8,), 0.5, device=device)
    base_flops = flops_per_image(base, x1, t1, 1)
    out: dict = {"real_images": len(real), "generated_images": inc.num_samples,
                 "floor": {**fid_kid(real, to_uint8(torch.as_tensor(train)), args.features),
                           "real_train_images": len(train)}}

    for n in inc.base_steps:
        x = batched(lambda zb: euler_sample(base, zb.to(device), n).cpu(), z, inc.batch_size)
        out[f"base_n{n}"] = {**fid_kid(real, to_uint8(x), args.features), "flops_per_image": n * base_flops, "n": n}
    for n in inc.corrected_steps:
        corr_dir = Path(args.correctors_dir) / f"n{n}" / "corrector"
        corr = domain.place(load_model(corr_dir, domain, build=corrector.from_config))
        c_flops = flops_per_image(corr, x1, t1, 1)
        x = batched(lambda zb: composed_sample(corr, base, zb.to(device), inc.corrector_steps, n).cpu(), z,
                    inc.batch_size)
        res = {**fid_kid(real, to_uint8(x), args.features), "n": n,
               "flops_per_image": n * base_flops + inc.corrector_steps * c_flops}
        b = out[f"base_n{n}"]
        res.update({"fid_minus_base": res["fid"] - b["fid"], "kid_minus_base": res["kid"] - b["kid"]})
        training = read_json(corr_dir / "config.json").get("training", {})
        res.update({f"corrector_{k}": v for k, v in training.items()
                    if k in ("nn_ratio", "best_step", "steps_run", "heldout_score_best")})
        out[f"inc_n{n}"] = res
    write_json(args.out, out)
    return out


def main(argv: list[str] | None = None) -> int:
    return run_stage("evaluate_flow", stage_parser("evaluate_flow", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
