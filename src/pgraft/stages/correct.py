"""Stage correct: train the INC corrector, a small flow from N(0, I) to the inverted noises."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("Train a small velocity network (inc.corrector.architecture: MLP or UNet) by flow matching from N(0, I) "
       "to the noises that the base needs to reproduce real data (from invert), pairing each minibatch by its "
       "optimal-transport plan "
       "(inc.corrector.coupling); on a held-out share of the noises (inc.corrector.heldout_fraction) the loss is "
       "recorded, or a score (inc.corrector.stop_on) stops training early and keeps the best state; the "
       "nearest-neighbour distances of the corrector's outputs to training vs held-out noises check memorisation. "
       "One corrector per base step count n (docs/METHOD.md §4).")

def body(args, params) -> dict:
    from pathlib import Path

    from pgraft import domains
    from pgraft.devices import is_main_process
    from pgraft.io import atomic_dir, read_npz
    from pgraft.stages.common import save_model, set_threads
    from pgraft.workflows.inc import heldout_split, train_corrector

    set_threads()
    domain = domains.build(args.domain, params)
    inv = read_npz(args.inverted, required=("noise", "n", "domain"))
    held, fit = heldout_split(args.inverted, inv, args.domain, args.n, params.inc.corrector)
    model, out, history = train_corrector(domain, params.inc, held, fit, args.seed, args.n)
    if not is_main_process():  # a data-parallel launch: the main process writes
        return {}
    with atomic_dir(args.out) as tmp:
        save_model(Path(tmp), model, args.domain, meta={"kind": "corrector", "n": args.n, "training": out, **history})
    return out


def main(argv: list[str] | None = None) -> int:
    return run_stage("correct", stage_parser("correct", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
