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

    from pgraft import domains
    from pgraft.io import read_json, write_json
    from pgraft.models import corrector
    from pgraft.stages.common import load_model, set_threads
    from pgraft.workflows.inc import evaluate_inc

    set_threads()
    domain = domains.build(args.domain, params)
    base = domain.place(load_model(args.model, domain))

    def load_corrector(n: int):
        corr_dir = Path(args.correctors_dir) / f"n{n}" / "corrector"
        corr = domain.place(load_model(corr_dir, domain, build=corrector.from_config))
        return corr, read_json(corr_dir / "config.json").get("training", {})

    out = evaluate_inc(domain, base, params.inc, args.seed, args.features, load_corrector)
    write_json(args.out, out)
    return out


def main(argv: list[str] | None = None) -> int:
    return run_stage("evaluate_flow", stage_parser("evaluate_flow", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
