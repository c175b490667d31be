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
    from pgraft.errors import StageError
    from pgraft.finetune import TruncatedObjective, parallel
    from pgraft.finetune.loop import LOG_EVERY
    from pgraft.finetune.objectives import target_scale
    from pgraft.finetune.resume import Resumable
    from pgraft.io import atomic_dir, read_npz, read_table, replace_dir, write_json
    from pgraft.samplers.levels import NoiseLevels
    from pgraft.samplers.stitched import method
    from pgraft.seeds import seeded
    from pgraft.stages.common import auxiliary_dir, build_rule, load_base, save_model, set_threads
    from pgraft.workflows import finetuning as fine
    from pgraft.workflows.artifacts import check_samples, training_key

    set_threads()
    domain = domains.build(args.domain, params)
    base = domain.place(load_base(args.model, domain, args.seed))  # fine-tuned copies train on the same device
    ft = params.finetune_for(args.domain)
    samples = read_npz(args.samples, required=("x0", "groups", "domain", "timesteps", "alphas_cumprod"))
    check_samples(args.samples, samples, domain)
    sel = read_table(args.selection, columns=("index", "keep"))
    key = training_key(args.k, params.sampler.num_steps, ft.target)
    if key not in samples:
        raise StageError(f"{args.samples}: no state for k={args.k} (has {sorted(samples)}); rerun sample")
    keep = sel.sort_values("index")["keep"].to_numpy().astype(bool)
    if len(keep) != len(samples["x0"]):
        raise StageError(f"{args.selection}: {len(keep)} rows but {len(samples['x0'])} samples; rerun filter")
    meta = {"k": args.k, "budgets": ft.budgets, "target": ft.target, "timesteps": ft.timesteps,
            "rounds": ft.rounds, "accepted": int(keep.sum()),
            # rewards computed to build the training data (every round scores a fresh pool of the same size)
            "reward_evaluations": {str(b): len(keep) * ft.rounds_at(b) for b in ft.budgets}}
    if method(args.k, params.sampler.num_steps) == "base":  # nothing to fine-tune
        if not is_main_process():
            return {}
        with atomic_dir(args.out) as tmp:
            write_json(Path(tmp) / "config.json", {"domain": args.domain, "identity": True, **meta,
                                                   "reward_evaluations": {}})
            write_json(Path(tmp) / fine.LOSS_HISTORY_FILE, {"log_every": LOG_EVERY, "train_loss": []})
        return {"accepted": int(keep.sum())}

    levels = NoiseLevels.from_arrays(samples["timesteps"], samples["alphas_cumprod"])
    if len(levels.timesteps) != params.sampler.num_steps:
        raise StageError(f"{args.samples}: drawn with {len(levels.timesteps)} sampler steps but params say "
                         f"sampler.num_steps={params.sampler.num_steps}; rerun sample")
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
        resume = Resumable(work, fingerprint, ft.checkpoint_every)
        objective = TruncatedObjective(data, levels, args.k, ft.target, ft.timesteps, cond=cond)
        losses, history = fine.finetune_once(base, objective, ft, seeded("finetune", args.seed, args.k), save,
                                             f"finetune k={args.k}", resume)
        if resume.resumed_from:
            print(f"pgraft finetune: resumed from step {resume.resumed_from}", file=sys.stderr)
            metrics["resumed_from"] = resume.resumed_from
        resume.clear()
    else:  # several GRAFT rounds: no mid-run resume (each round re-samples and re-scores)
        domain.load_auxiliary(auxiliary_dir(args.model))  # the reward's networks (judges), as in the reward stage
        losses, history = fine.finetune_rounds(base, data, cond, levels, args.k, ft, domain=domain, rule=rule,
                                               schedule=domain.schedule(params.sampler), sample=params.sample,
                                               group_size=params.group_size(args.domain), seed=args.seed,
                                               state_key=key, save=save)
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

    parts = {"finetune": params.finetune_for(args.domain).model_dump(mode="json"), "k": args.k, "seed": args.seed,
             "domain": args.domain, "model": file_digest(Path(args.model) / f"{base_name(args.model, args.seed)}.safetensors"),
             "samples": file_digest(args.samples), "selection": file_digest(args.selection)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    return run_stage("finetune", stage_parser("finetune", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
