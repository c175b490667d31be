"""Stage invert: real training data back to noise through the base flow's own n-step Euler sampler."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("Invert the training images (inc.num_inverted of them; all by default) through the frozen base flow with "
       "backward Euler (fixed-point iterations at the forward step's own times until inc.tolerance or "
       "inc.iterations, docs/METHOD.md §4); keep only the images whose last fixed-point update is within "
       "inc.max_residual at every step (converged) and whose round trip (noise -> base sampler -> image) is within "
       "inc.roundtrip_threshold, and count the dropped ones.")

MIN_KEPT = 10  # fewer kept noises than this cannot train a corrector


def body(args, params) -> dict:
    import sys
    import warnings

    import numpy as np
    import torch

    from pgraft import domains
    from pgraft.errors import StageError
    from pgraft.io import write_json, write_npz
    from pgraft.samplers.flow import InversionWarning, batched, euler_invert, euler_sample
    from pgraft.seeds import numpy_rng, seeded
    from pgraft.stages.common import load_model, set_threads

    set_threads()
    inc = params.inc
    domain = domains.build(args.domain, params)
    if domain.kind != "flow":
        raise StageError(f"--domain {args.domain!r} is not a flow domain")
    base = domain.place(load_model(args.model, domain))
    device = domain.device
    train, _ = domain.split()
    order = numpy_rng("invert_subset").permutation(len(train))[: inc.num_inverted or None]
    data = torch.as_tensor(train[order])
    gen = seeded("invert", args.n)
    noises, row_res, step_res, iters = [], [], [0.0] * args.n, [0] * args.n
    with warnings.catch_warnings(record=True) as record:  # the warning counts rows above inc.tolerance
        warnings.simplefilter("always", InversionWarning)
        for start in range(0, len(data), inc.batch_size):
            res = euler_invert(base, data[start:start + inc.batch_size].to(device), args.n,
                               iterations=inc.iterations, tol=inc.tolerance, perturb=inc.perturb, generator=gen)
            noises.append(res.noise.cpu())
            row_res.append(res.row_residuals)
            step_res = [max(a, b) for a, b in zip(step_res, res.step_residuals)]
            iters = [max(a, b) for a, b in zip(iters, res.iterations_used)]
        caught = [str(w.message) for w in record if issubclass(w.category, InversionWarning)]
    for msg in caught[:1]:
        print(f"pgraft invert: warning: {msg}", file=sys.stderr)
    noise, row_res = torch.cat(noises), torch.cat(row_res)
    recon = batched(lambda zb: euler_sample(base, zb.to(device), args.n).cpu(), noise, inc.batch_size)
    err = (recon - data).abs().reshape(len(data), -1).amax(1)
    converged = row_res <= inc.max_residual
    faithful = torch.isfinite(err) & (err <= inc.roundtrip_threshold)
    keep = converged & faithful
    if int(keep.sum()) < MIN_KEPT:
        raise StageError(f"invert n={args.n}: only {int(keep.sum())} of {len(data)} images inverted within "
                         f"inc.max_residual={inc.max_residual} and inc.roundtrip_threshold={inc.roundtrip_threshold}; "
                         f"raise inc.iterations, inc.perturb or the threshold")
    kept = noise[keep]
    metrics = {"n": args.n, "num_images": len(data), "converged": int(converged.sum()),
               "dropped_not_converged": int((~converged).sum()),
               "dropped_roundtrip": int((converged & ~faithful).sum()),
               "num_inverted": int(keep.sum()), "max_residual": float(row_res.max()),
               **{f"max_residual_step{j}": float(r) for j, r in enumerate(step_res)},
               **{f"iterations_step{j}": int(k) for j, k in enumerate(iters)},
               "roundtrip_max_abs_error": float(err[keep].max()), "roundtrip_mean_abs_error": float(err[keep].mean()),
               "roundtrip_max_abs_error_all": float(err.max()),
               "noise_mean": float(kept.mean()), "noise_std": float(kept.std())}
    write_npz(args.out, noise=kept.numpy(), index=order[keep.numpy()], n=np.asarray(args.n),
              domain=np.asarray(args.domain))
    write_json(args.metrics, metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    return run_stage("invert", stage_parser("invert", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
