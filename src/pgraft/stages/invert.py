"""Stage invert: real training data back to noise through the base flow's own n-step Euler sampler."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("Invert the training images (inc.num_inverted of them; all by default) through the frozen base flow with "
       "backward Euler (fixed-point iterations at the forward step's own times until inc.tolerance or "
       "inc.iterations, docs/METHOD.md §4); keep only the images whose last fixed-point update is within "
       "inc.max_residual at every step (converged) and whose round trip (noise -> base sampler -> image) is within "
       "inc.roundtrip_threshold, and count the dropped ones.")

def body(args, params) -> dict:
    import sys

    import numpy as np

    from pgraft import domains
    from pgraft.errors import StageError
    from pgraft.io import write_json, write_npz
    from pgraft.stages.common import load_model, set_threads
    from pgraft.workflows.inc import invert_images, keep_faithful

    set_threads()
    domain = domains.build(args.domain, params)
    if domain.kind != "flow":
        raise StageError(f"--domain {args.domain!r} is not a flow domain")
    base = domain.place(load_model(args.model, domain))
    inversion = invert_images(domain, base, params.inc, args.n)
    for msg in inversion.warnings[:1]:
        print(f"pgraft invert: warning: {msg}", file=sys.stderr)
    kept, metrics = keep_faithful(domain, base, inversion, params.inc, args.n)
    write_npz(args.out, **kept, n=np.asarray(args.n), domain=np.asarray(args.domain))
    write_json(args.metrics, metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    return run_stage("invert", stage_parser("invert", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
