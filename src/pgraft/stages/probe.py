"""The learning-error probe as a command (`python -m pgraft.stages.probe`), for scripts/regime_map.py: not a
pipeline stage (no entry in pgraft.pipeline.table, no stamp); it reads params' `regime_map.probe`."""

from __future__ import annotations

from pgraft.runtime.runner import base_parser, run_stage

DOC = ("Fine-tune a copy of the base with GRAFT's loss for regime_map.probe.steps steps on the accepted x_0 less a "
       "held-out part (regime_map.probe.heldout_fraction), then write the mean denoising loss at each sampler step "
       "(noise end first) of the base and the probe on the held-out part and of the probe on its training part "
       "(pgraft.finetune.probe; docs/METHOD.md §2, \"Predicting the best k\").")


def body(args, params) -> dict:
    import numpy as np

    from pgraft import domains
    from pgraft.finetune.probe import probe
    from pgraft.io import read_npz, read_table, write_json
    from pgraft.samplers.levels import NoiseLevels
    from pgraft.stages.common import load_base, set_threads
    from pgraft.workflows.artifacts import check_samples
    from pgraft.workflows.finetuning import training_data

    set_threads()
    cfg = params.regime_map.probe
    ft = params.finetune_for(args.domain)
    domain = domains.build(args.domain, params)
    base = domain.place(load_base(args.model, domain, args.seed))
    samples = read_npz(args.samples, required=("x0", "groups", "domain", "timesteps", "alphas_cumprod"))
    check_samples(args.samples, samples, domain)
    keep = read_table(args.selection, columns=("index", "keep")).sort_values("index")["keep"].to_numpy(dtype=bool)
    data, cond = training_data(samples, keep, "x0", domain)
    levels = NoiseLevels.from_arrays(samples["timesteps"], samples["alphas_cumprod"])
    out = probe(base, data, cond, levels, steps=cfg.steps, heldout_fraction=cfg.heldout_fraction,
                draws=cfg.noise_draws, learning_rate=ft.learning_rate, batch_size=ft.batch_size,
                warmup_steps=ft.warmup_steps, timesteps=ft.timesteps, seed=args.seed)
    write_json(args.out, out)
    return {"heldout_excess": float(np.mean(np.subtract(out["heldout_probe"], out["train_probe"])))}


def main(argv: list[str] | None = None) -> int:
    p = base_parser("probe", DOC, ("domain", "seed"))
    p.add_argument("--model", required=True, help="base model directory (from pretrain)")
    p.add_argument("--samples", required=True, help="samples .npz (from sample)")
    p.add_argument("--selection", required=True, help="selection .parquet (from filter)")
    p.add_argument("--out", required=True, help="output JSON: the per-step losses")
    return run_stage("probe", p, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
