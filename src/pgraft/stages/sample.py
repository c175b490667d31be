"""Stage sample: one base-sampler run per (domain, seed) keeping the state at every truncation point."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("Draw num_groups x group_size base trajectories, keeping x after k steps for every k of the "
       "truncation grid and x_0 (one run feeds the whole sweep), plus an independent reference pool "
       "of final samples that stands for the base law p̄ in evaluation.")


def body(args, params) -> dict:
    import time

    import numpy as np

    from pgraft import domains
    from pgraft.io import write_json, write_npz
    from pgraft.samplers.rollout import sample_in_batches
    from pgraft.seeds import seeded
    from pgraft.stages.common import load_base, set_threads
    from pgraft.workflows.artifacts import state_key
    from pgraft.workflows.grs_round import draw_groups
    from pgraft.workflows.scoring import conditions

    set_threads()
    domain = domains.build(args.domain, params)
    base = domain.place(load_base(args.model, domain, args.seed))  # on params `device`: each batch stays there
    schedule = domain.schedule(params.sampler)
    m = params.group_size(args.domain)
    n = params.sample.num_groups * m
    grid = params.truncation_grid
    t0 = time.perf_counter()
    drawn = draw_groups(lambda i: base, schedule, domain, params.sample.num_groups, m, seeded("sample", args.seed),
                        params.sample.batch_size, keep=grid, progress=True)  # a group shares one prompt
    elapsed = time.perf_counter() - t0
    x0, kept, prompts, groups = drawn.x0, drawn.kept, drawn.prompts, drawn.groups
    ref_prompts, ref_cond = conditions(domain, "train", params.sample.reference_size)
    ref, _ = sample_in_batches(lambda i: base, schedule, params.sample.reference_size, domain.shape,
                               seeded("reference", args.seed), params.sample.batch_size, cond=ref_cond,
                               device=domain.device)
    extra = {} if prompts is None else {"prompt": prompts}
    ref_extra = {} if ref_prompts is None else {"prompt": ref_prompts}
    states = {state_key(k): kept[k].numpy() for k in grid}
    # the noise levels travel with the states they describe (finetune reads them, without diffusers)
    write_npz(args.out, x0=x0.numpy(), groups=groups, grid=np.asarray(grid), domain=np.asarray(args.domain),
              **schedule.levels.to_arrays(), **states, **extra)
    write_npz(args.reference, x0=ref.numpy(), domain=np.asarray(args.domain), **ref_extra)
    metrics = {"num_samples": n, "group_size": m, "samples_per_s": n / elapsed,
               "reference_size": params.sample.reference_size}
    write_json(args.metrics, {k: v for k, v in metrics.items() if k != "samples_per_s"})
    return metrics


def main(argv: list[str] | None = None) -> int:
    return run_stage("sample", stage_parser("sample", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
