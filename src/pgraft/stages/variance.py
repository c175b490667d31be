"""Stage variance: the conditional reward variance at every truncation point, and each k's exact-target reward."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("For every k of the truncation grid, continue the seed's stored base trajectories from their state after "
       "k steps with the base sampler: `variance.branches` continuations of `variance.states` training states give "
       "E[Var(r(X_0)|X_tk)] and Var(E[r|X_tk]) (prompt-conditioned domains: rewards centred per prompt), and "
       "`variance.ceiling_branches` continuations of every accepted state give the reward of P-GRAFT's exact "
       "target at k, its ceiling (at k = N: the accepted x_0, GRAFT's; at k = 0: the base samples). 95 % "
       "bootstrap intervals over states (docs/METHOD.md §2).")


def body(args, params) -> dict:
    import numpy as np

    from pgraft import domains
    from pgraft.io import read_npz, read_table, write_json
    from pgraft.stages.common import auxiliary_dir, load_base, set_threads
    from pgraft.workflows.artifacts import check_samples, state_key
    from pgraft.workflows.variance import variance_by_k, within_share

    set_threads()
    domain = domains.build(args.domain, params)
    base = domain.place(load_base(args.model, domain, args.seed))  # on params `device`: continuations stay there
    domain.load_auxiliary(auxiliary_dir(args.model))
    schedule = domain.schedule(params.sampler)
    grid = params.truncation_grid
    samples = read_npz(args.samples, required=("x0", "groups", "domain", *(state_key(k) for k in grid)))
    check_samples(args.samples, samples, domain)
    sel = read_table(args.selection, columns=("index", "reward", "keep")).sort_values("index")
    r, keep = sel["reward"].to_numpy(dtype=np.float64), sel["keep"].to_numpy(dtype=bool)
    out = variance_by_k(domain, base, schedule, samples, r, keep, seed=args.seed, grid=grid,
                        num_steps=params.sampler.num_steps, cfg=params.variance,
                        batch_size=params.sample.batch_size, progress=_progress)
    write_json(args.out, out)
    total = out["reward_variance"]
    return {f"v_within_k{k}": within_share(v["within"], total) for k, v in out["k"].items()}


def _progress(k: int, share: float, ceiling: float) -> None:
    print(f"pgraft variance: k={k} E[Var(r|X)]/Var = {share:.3f}, ceiling {ceiling:.4f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    return run_stage("variance", stage_parser("variance", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
