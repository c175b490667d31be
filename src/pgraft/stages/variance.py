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
    import torch

    from pgraft import domains
    from pgraft.io import read_npz, read_table, write_json
    from pgraft.metrics.conditional_variance import bootstrap, mean_interval
    from pgraft.samplers.continuation import continue_from
    from pgraft.seeds import numpy_rng, seeded
    from pgraft.stages.common import auxiliary_dir, load_base, set_threads
    from pgraft.workflows.artifacts import check_samples, state_key
    from pgraft.workflows.scoring import score_finite

    set_threads()
    cfg = params.variance
    domain = domains.build(args.domain, params)
    base = domain.place(load_base(args.model, domain, args.seed))  # on params `device`: continuations stay there
    domain.load_auxiliary(auxiliary_dir(args.model))
    schedule = domain.schedule(params.sampler)
    n_steps = params.sampler.num_steps
    grid = params.truncation_grid
    samples = read_npz(args.samples, required=("x0", "groups", "domain", *(state_key(k) for k in grid)))
    check_samples(args.samples, samples, domain)
    sel = read_table(args.selection, columns=("index", "reward", "keep")).sort_values("index")
    r, keep = sel["reward"].to_numpy(dtype=np.float64), sel["keep"].to_numpy(dtype=bool)
    prompts = samples["prompt"] if domain.conditional else None
    centre = _prompt_means(r, prompts)  # E[r|c] per row (the overall mean for unconditional domains)
    total = float(np.mean((r - centre) ** 2))  # E[Var(r|c)]: V(0) in the limit of pure noise
    rng = numpy_rng("variance_states", args.seed)
    chosen = np.sort(rng.choice(len(r), size=min(cfg.states, len(r)), replace=False))
    accepted = np.flatnonzero(keep)

    def rewards(rows: np.ndarray, k: int, branches: int, stream: str) -> np.ndarray:
        """(len(rows), branches) rewards of base continuations from the rows' states after k steps."""
        rep = np.repeat(rows, branches)
        x_k = torch.as_tensor(samples[state_key(k)][rep], dtype=torch.float32)
        cond = None if prompts is None else torch.as_tensor(domain.tokens([str(p) for p in prompts[rep]]))
        x0 = continue_from(base, schedule, x_k, k, seeded(stream, args.seed, k), params.sample.batch_size,
                           cond=cond, device=domain.device).numpy()
        scored = score_finite(domain, x0, None if prompts is None else prompts[rep], f"variance (k={k})")
        return scored.reshape(len(rows), branches)

    out: dict = {"reward_variance": total, "states": len(chosen), "accepted": len(accepted), "k": {}}
    for k in grid:
        if k == n_steps:  # clean data: no variance left given x_0; the exact target is the accepted x_0 itself
            var = {"within": 0.0, "within_lo": 0.0, "within_hi": 0.0, "between": total, "between_lo": total,
                   "between_hi": total}
            ceiling = mean_interval(r[accepted], rng, cfg.bootstrap)
        else:
            branched = rewards(chosen, k, cfg.branches, "variance_branches") - centre[chosen, None]
            var = bootstrap(branched, rng, cfg.bootstrap)
            if k == 0:  # no step is fine-tuned (x_T is N(0, I) whatever the model): the target is the base law itself
                ceiling = mean_interval(r, rng, cfg.bootstrap)
            else:
                continued = rewards(accepted, k, cfg.ceiling_branches, "variance_ceiling").mean(axis=1)
                ceiling = mean_interval(continued, rng, cfg.bootstrap)
        out["k"][str(k)] = {**var, **{f"ceiling_{m}" if m != "mean" else "ceiling": v for m, v in ceiling.items()}}
        share = var["within"] / total if total > 0 else float("nan")  # a constant reward has no variance to share
        print(f"pgraft variance: k={k} E[Var(r|X)]/Var = {share:.3f}, ceiling {ceiling['mean']:.4f}", flush=True)
    write_json(args.out, out)
    return {f"v_within_k{k}": v["within"] / total if total > 0 else float("nan") for k, v in out["k"].items()}


def _prompt_means(r, prompts):
    """Each row's E[r|c]: the mean training reward of its prompt (of all rows when there are no prompts)."""
    import numpy as np

    if prompts is None:
        return np.full(len(r), r.mean())
    keys = np.asarray([str(p) for p in prompts])
    means = {p: r[keys == p].mean() for p in np.unique(keys)}
    return np.asarray([means[p] for p in keys])


def main(argv: list[str] | None = None) -> int:
    return run_stage("variance", stage_parser("variance", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
