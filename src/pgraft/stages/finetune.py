"""Stage finetune: GRAFT (k = N) / P-GRAFT (0 < k < N) fine-tuning of a copy of the base, per budget."""

from __future__ import annotations

from pgraft.stages.common import parser, run_stage

DOC = ("Fine-tune a copy of the base denoiser on the accepted states at truncation point k (noise levels "
       "above t_I only), saving one checkpoint per fine-tuning budget. k = 0 is the base model itself. "
       "With finetune.rounds > 1, each later round re-samples from the current stitched model, re-scores "
       "and re-filters before training (each round gets budget/rounds steps).")


def body(args, params) -> dict:
    import copy
    import shutil
    import sys
    from pathlib import Path

    import numpy as np
    import torch

    from pgraft import domains
    from pgraft.errors import StageError
    from pgraft.finetune import TruncatedObjective, train
    from pgraft.finetune.objectives import target_scale
    from pgraft.finetune.resume import Resumable
    from pgraft.io import atomic_dir, read_json, read_npz, read_table, replace_dir, write_json
    from pgraft.samplers.levels import NoiseLevels
    from pgraft.samplers.stitched import method
    from pgraft.stages.common import build_rule, check_samples, load_model, save_model, seeded, set_threads

    set_threads()
    domain = domains.build(args.domain, params)
    base = load_model(args.model, domain)
    ft = params.finetune_for(args.domain)
    samples = read_npz(args.samples, required=("x0", "groups", "domain", "timesteps", "alphas_cumprod"))
    check_samples(args.samples, samples, params, domain)
    sel = read_table(args.selection, columns=("index", "keep"))
    kind = method(args.k, params.sampler.num_steps)
    key = "x0" if (ft.target == "x0" or kind == "graft") else f"state_k{args.k}"
    if key not in samples:
        raise StageError(f"{args.samples}: no state for k={args.k} (has {sorted(samples)}); rerun sample")
    keep = sel.sort_values("index")["keep"].to_numpy().astype(bool)
    if len(keep) != len(samples["x0"]):
        raise StageError(f"{args.selection}: {len(keep)} rows but {len(samples['x0'])} samples; rerun filter")
    meta = {"k": args.k, "budgets": ft.budgets, "target": ft.target, "timesteps": ft.timesteps,
            "rounds": ft.rounds, "accepted": int(keep.sum()),
            # rewards computed to build the training data (every round scores a fresh pool of the same size)
            "reward_evaluations": {str(b): len(keep) * ft.rounds for b in ft.budgets}}
    if kind == "base":  # nothing to fine-tune
        with atomic_dir(args.out) as tmp:
            write_json(Path(tmp) / "config.json", {"domain": args.domain, "identity": True, **meta,
                                                   "reward_evaluations": {}})
        return {"accepted": int(keep.sum())}

    levels = NoiseLevels.from_arrays(samples["timesteps"], samples["alphas_cumprod"])
    if len(levels.timesteps) != params.sampler.num_steps:
        raise StageError(f"{args.samples}: drawn with {len(levels.timesteps)} sampler steps but params say "
                         f"sampler.num_steps={params.sampler.num_steps}; rerun sample")
    rule = build_rule(params, args.domain)
    data = torch.as_tensor(samples[key][keep], dtype=torch.float32)
    cond = torch.as_tensor(domain.tokens([str(q) for q in samples["prompt"][keep]])) if domain.conditional else None
    metrics = {"accepted": int(keep.sum()), "target_scale_max": target_scale(levels, args.k)}
    work = Path(f"{args.out}.partial")  # a fixed work directory, so a killed run can resume from it
    fingerprint = _fingerprint(params, args)
    if work.exists() and (not (work / "resume.json").exists()
                          or read_json(work / "resume.json").get("fingerprint") != fingerprint):
        shutil.rmtree(work)  # killed before its first checkpoint, or left by other inputs: start afresh
    work.mkdir(parents=True, exist_ok=True)
    if ft.rounds == 1:
        # one run with checkpoints: identical to separate runs per budget (same batch stream, constant LR)
        model = copy.deepcopy(base).requires_grad_(True)
        resume = Resumable(work, fingerprint, ft.checkpoint_every)

        def checkpoint(step, m):
            if step in ft.budgets:
                save_model(work, m, args.domain, name=f"b{step}", meta=meta)

        losses = train(model, TruncatedObjective(data, levels, args.k, ft.target, ft.timesteps, cond=cond),
                       ft.budgets[-1], ft.learning_rate, ft.batch_size, seeded(5, args.seed, args.k),
                       on_step=checkpoint, progress=f"finetune k={args.k}", resume=resume)
        if resume.resumed_from:
            print(f"pgraft finetune: resumed from step {resume.resumed_from}", file=sys.stderr)
            metrics["resumed_from"] = resume.resumed_from
        resume.clear()
        for b in ft.budgets:
            metrics[f"loss_b{b}"] = float(np.mean(losses[max(0, b - 20):b]))
    else:  # several GRAFT rounds: no mid-run resume (each round re-samples)
        schedule = domain.schedule(params.sampler)
        for b in ft.budgets:
            model = copy.deepcopy(base).requires_grad_(True)
            gen, round_data, round_cond = seeded(5, args.seed, args.k, b), data, cond
            for rnd in range(ft.rounds):
                if rnd > 0:  # GRAFT round: sample from the current stitched model, reward, filter
                    round_data, round_cond = _resample(model, base, schedule, domain, rule, params, args, gen, key)
                obj = TruncatedObjective(round_data, levels, args.k, ft.target, ft.timesteps, cond=round_cond)
                losses = train(model, obj, max(1, b // ft.rounds), ft.learning_rate, ft.batch_size, gen)
            metrics[f"loss_b{b}"] = float(np.mean(losses[-20:]))
            save_model(work, model, args.domain, name=f"b{b}", meta=meta)
    replace_dir(work, args.out)
    return metrics


def _fingerprint(params, args) -> str:
    """What a resumable checkpoint must agree on: settings, truncation point and input file contents."""
    import hashlib
    import json
    from pathlib import Path

    from pgraft.io import file_digest

    parts = {"finetune": params.finetune_for(args.domain).model_dump(mode="json"), "k": args.k, "seed": args.seed,
             "domain": args.domain, "model": file_digest(Path(args.model) / "model.safetensors"),
             "samples": file_digest(args.samples), "selection": file_digest(args.selection)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _resample(model, base, schedule, domain, rule, params, args, gen, key):
    """One later GRAFT round's data: sample the current stitched model, reward, filter, keep the states."""
    import torch

    from pgraft.samplers.rollout import sample_in_batches
    from pgraft.samplers.stitched import Stitched
    from pgraft.stages.common import conditions, numpy_rng, score

    m = params.group_size(args.domain)
    n = params.sample.num_groups * m
    prompts, cond = conditions(domain, "train", n, group_size=m)
    model.eval()
    x0, kept = sample_in_batches(Stitched(model, base, args.k), schedule, n, domain.shape, gen,
                                 params.sample.batch_size, keep=[args.k], cond=cond,
                                 device=domain.device)
    model.train()
    groups = torch.arange(n).numpy() // m
    r = score(domain, x0.numpy(), prompts)
    keep = rule.select(r, groups, generator=numpy_rng(6, args.seed, args.k), keys=domain.dedup_keys(x0.numpy()))
    states = x0 if key == "x0" else kept[args.k]
    idx = torch.as_tensor(keep)
    return states[idx].float(), (None if cond is None else cond[idx])


def main(argv: list[str] | None = None) -> int:
    p = parser("finetune", DOC, seed=True, k=True)
    p.add_argument("--model", required=True, help="base model directory")
    p.add_argument("--samples", required=True, help="samples .npz from the sample stage")
    p.add_argument("--selection", required=True, help="selection .parquet from the filter stage")
    p.add_argument("--out", required=True, help="output directory: b<budget>.safetensors + config.json")
    return run_stage("finetune", p, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
