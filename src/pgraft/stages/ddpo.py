"""Stage ddpo: the policy-gradient baseline (DDPO with PPO clipping), fine-tuning a copy of the base online."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("Fine-tune a copy of the base with DDPO: each iteration samples ddpo.prompts_per_batch training prompts x "
       "ddpo.samples_per_prompt trajectories with the current model (stochastic DDIM, sampler.eta > 0), scores "
       "them with the domain's reward, normalises rewards per prompt (by its last ddpo.stat_tracking.buffer_size "
       "rewards across iterations) and takes PPO steps. Saves a checkpoint "
       "b<E> after E reward evaluations for each E in ddpo.checkpoints (evaluated like a GRAFT model, k = N).")


def body(args, params) -> dict:
    import copy
    from pathlib import Path

    import numpy as np
    import torch

    from pgraft import domains
    from pgraft.errors import StageError
    from pgraft.finetune.ddpo import train_ddpo
    from pgraft.io import write_json
    from pgraft.seeds import numpy_rng, seeded
    from pgraft.stages.common import auxiliary_dir, load_base, main_output, save_model, set_threads
    from pgraft.workflows.scoring import score

    set_threads()
    cfg = params.ddpo
    if args.domain not in cfg.domains:
        raise StageError(f"--domain {args.domain!r} is not in params 'ddpo.domains' {cfg.domains}")
    if params.sampler.name != "ddim" or params.sampler.eta <= 0:
        raise StageError(f"DDPO needs a stochastic DDIM sampler: params sampler.name={params.sampler.name!r}, "
                         f"sampler.eta={params.sampler.eta} (expected ddim with eta > 0)")
    domain = domains.build(args.domain, params)
    base = domain.place(load_base(args.model, domain, args.seed))
    domain.load_auxiliary(auxiliary_dir(args.model))
    schedule = domain.schedule(params.sampler)
    pool = domain.prompts("train")
    rng = numpy_rng("ddpo_prompts", args.seed)

    def prompt_batch(i):
        chosen = rng.choice(len(pool), size=min(cfg.prompts_per_batch, len(pool)), replace=False)
        chosen = np.resize(chosen, cfg.prompts_per_batch)
        groups = np.repeat(np.arange(cfg.prompts_per_batch), cfg.samples_per_prompt)
        prompts = [pool[chosen[g]] for g in groups]
        return prompts, torch.as_tensor(domain.tokens(prompts)), groups

    model = copy.deepcopy(base).requires_grad_(True)
    meta = {"k": params.sampler.num_steps, "method": "ddpo", "budgets": cfg.checkpoints,
            "reward_evaluations": {str(c): c for c in cfg.checkpoints}}
    with main_output(args.out) as tmp:  # None in the other processes of a data-parallel launch

        def save(evaluations, m):
            if tmp is not None:
                save_model(Path(tmp), m, args.domain, name=f"b{evaluations}", meta=meta)

        log = train_ddpo(model, schedule, domain.shape, lambda x, p: score(domain, x, p), prompt_batch, cfg,
                         params.sampler.eta, seeded("ddpo", args.seed), save, progress=f"ddpo {args.domain}")
    if tmp is None:
        return {}
    metrics = {"iterations": len(log), "reward_first": log[0]["reward_mean"], "reward_last": log[-1]["reward_mean"],
               "clip_fraction_mean": float(np.mean([r["clip_fraction"] for r in log]))}
    write_json(args.metrics, {**metrics, "log": log})
    # step-wise curves for tracking, by reward evaluations (the x axis of the DDPO figure)
    curves = {name: [[r["reward_evaluations"], r[key]] for r in log]
              for name, key in (("train_reward", "reward_mean"), ("ppo_loss", "loss"))}
    return {**metrics, "_curves": curves}


def main(argv: list[str] | None = None) -> int:
    return run_stage("ddpo", stage_parser("ddpo", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
