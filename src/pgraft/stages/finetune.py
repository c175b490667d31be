"""Stage finetune: GRAFT (k = N) / P-GRAFT (0 < k < N) fine-tuning of a copy of the base, per budget."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("Fine-tune a copy of the base denoiser on the accepted states at truncation point k (noise levels "
       "above t_I only), saving one checkpoint per fine-tuning budget. k = 0 is the base model itself. "
       "With finetune.rounds > 1, each later round re-samples from the current stitched model, re-scores "
       "and re-filters before training (each round gets budget/rounds steps; with finetune.round_checkpoints one "
       "run of budgets[-1]/rounds steps a round saves each budget at the end of its round).")


def body(args, params) -> dict:
    import sys
    from pathlib import Path

    from pgraft import domains
    from pgraft.devices import is_main_process
    from pgraft.finetune import parallel
    from pgraft.finetune.loop import LOG_EVERY
    from pgraft.finetune.objectives import target_scale
    from pgraft.io import read_npz, read_table, replace_dir, write_json
    from pgraft.samplers.stitched import method
    from pgraft.stages.common import auxiliary_dir, build_rule, load_base, save_model, set_threads
    from pgraft.workflows import finetuning as fine
    from pgraft.workflows.artifacts import check_samples
    from pgraft.workflows.context import RunContext

    set_threads()
    domain = domains.build(args.domain, params)
    base = domain.place(load_base(args.model, domain, args.seed))  # fine-tuned copies train on the same device
    ft, num_steps = params.finetune_for(args.domain), params.sampler.num_steps
    samples = read_npz(args.samples, required=("x0", "groups", "domain", "timesteps", "alphas_cumprod"))
    check_samples(args.samples, samples, domain)
    key, keep = fine.accepted_rows(samples, read_table(args.selection, columns=("index", "keep")), args.k, num_steps,
                                   ft.target, (args.samples, args.selection))
    meta = {"k": args.k, "budgets": ft.budgets, "target": ft.target, "timesteps": ft.timesteps,
            "rounds": ft.rounds, "accepted": int(keep.sum()),
            # rewards computed to build the training data (every round scores a fresh pool of the same size)
            "reward_evaluations": {str(b): len(keep) * ft.rounds_at(b) for b in ft.budgets}}
    if method(args.k, num_steps) == "base":  # nothing to fine-tune: k = 0 is the base model
        if is_main_process():
            fine.write_identity(args.out, args.domain, meta, LOG_EVERY)
        return {"accepted": int(keep.sum())} if is_main_process() else {}

    levels = fine.noise_levels(samples, num_steps, args.samples)
    rule = build_rule(params, args.domain)
    data, cond = fine.training_data(samples, keep, key, domain)
    metrics = {"accepted": int(keep.sum()), "target_scale_max": target_scale(levels, args.k)}
    work = Path(f"{args.out}.partial")  # a fixed work directory, so a killed run can resume from it
    fingerprint = _fingerprint(params, args)
    main = is_main_process()  # under a data-parallel launch only the main process writes
    if main:
        fine.fresh_workdir(work, fingerprint)
    parallel.wait(domain.device)  # the others read its resume point once it is settled

    def save(name, model):
        if main:
            save_model(work, model, args.domain, name=name, meta=meta)

    if ft.rounds == 1:
        losses, history, resumed = fine.finetune_resumable(base, data, cond, levels, ft, args.seed, args.k, work,
                                                           fingerprint, save)
        if resumed:
            print(f"pgraft finetune: resumed from step {resumed}", file=sys.stderr)
            metrics["resumed_from"] = resumed
    else:  # several GRAFT rounds: no mid-run resume (each round re-samples and re-scores)
        domain.load_auxiliary(auxiliary_dir(args.model))  # the reward's networks (judges), as in the reward stage
        ctx = RunContext(domain, base, domain.schedule(params.sampler), rule, args.seed, args.k,
                         params.sample.batch_size)
        losses, history = fine.finetune_rounds(ctx, data, cond, levels, ft, num_groups=params.sample.num_groups,
                                               group_size=params.group_size(args.domain), state_key=key, save=save)
    if not main:
        return {}
    write_json(work / fine.LOSS_HISTORY_FILE, {"log_every": LOG_EVERY, "train_loss": history})
    replace_dir(work, args.out)
    return {**metrics, **losses, "_curves": {"train_loss": history}}  # _curves: step-wise, not flat metrics


def _fingerprint(params, args) -> str:
    """What a resumable checkpoint must agree on: settings, truncation point and input file contents."""
    import hashlib
    import json
    from pathlib import Path

    from pgraft.io import file_digest
    from pgraft.stages.common import base_name

    weights = Path(args.model) / f"{base_name(args.model, args.seed)}.safetensors"
    parts = {"finetune": params.finetune_for(args.domain).model_dump(mode="json"), "k": args.k, "seed": args.seed,
             "domain": args.domain, "model": file_digest(weights),
             "samples": file_digest(args.samples), "selection": file_digest(args.selection)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    return run_stage("finetune", stage_parser("finetune", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
