"""Stage invert: real training data back to noise through the base flow's own n-step Euler sampler."""

from __future__ import annotations

from pgraft.stages.common import parser, run_stage

DOC = ("Invert inc.num_inverted training images through the frozen base flow with backward Euler (fixed-point "
       "iterations at the forward step's own times, docs/METHOD.md §4); record the round-trip reconstruction error "
       "and whether every step converged (a warning names the step when η·Lip(v) ≥ 1).")


def body(args, params) -> dict:
    import sys
    import warnings

    import numpy as np
    import torch

    from pgraft import domains
    from pgraft.errors import StageError
    from pgraft.io import write_json, write_npz
    from pgraft.samplers.flow import InversionWarning, batched, euler_invert, euler_sample
    from pgraft.seeds import seeded
    from pgraft.stages.common import load_model, set_threads

    set_threads()
    inc = params.inc
    domain = domains.build(args.domain, params)
    if domain.kind != "flow":
        raise StageError(f"--domain {args.domain!r} is not a flow domain")
    base = domain.place(load_model(args.model, domain))
    device = domain.device
    train, _ = domain.split()
    order = np.random.default_rng(11).permutation(len(train))[: inc.num_inverted]
    data = torch.as_tensor(train[order])
    gen = seeded(9, args.n)
    noises, converged, residual = [], True, 0.0
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always", InversionWarning)
        for start in range(0, len(data), inc.batch_size):
            res = euler_invert(base, data[start:start + inc.batch_size].to(device), args.n,
                               iterations=inc.iterations, tol=inc.tolerance, perturb=inc.perturb, generator=gen)
            noises.append(res.noise.cpu())
            converged &= res.converged
            residual = max(residual, float(res.residual))
        caught = [str(w.message) for w in record if issubclass(w.category, InversionWarning)]
    for msg in caught[:1]:
        print(f"pgraft invert: warning: {msg}", file=sys.stderr)
    noise = torch.cat(noises)
    recon = batched(lambda zb: euler_sample(base, zb.to(device), args.n).cpu(), noise, inc.batch_size)
    err = (recon - data).abs()
    metrics = {"n": args.n, "num_inverted": len(data), "converged": bool(converged), "max_residual": residual,
               "roundtrip_max_abs_error": float(err.max()), "roundtrip_mean_abs_error": float(err.mean()),
               "noise_mean": float(noise.mean()), "noise_std": float(noise.std())}
    write_npz(args.out, noise=noise.numpy(), n=np.asarray(args.n), domain=np.asarray(args.domain))
    write_json(args.metrics, metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    p = parser("invert", DOC, n=True)
    p.add_argument("--model", required=True, help="base flow model directory (from pretrain)")
    p.add_argument("--out", required=True, help="output .npz of inverted noises")
    p.add_argument("--metrics", required=True, help="output metrics JSON")
    return run_stage("invert", p, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
