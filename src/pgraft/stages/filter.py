"""Stage filter: accept a subset of each group with the configured GRS rule (shared by every k)."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("Apply the GRS rule (params 'filter') within each group of training samples; write the keep-mask "
       "and an acceptance-law check: empirical keep rate vs the closed form g, by bins of u = F(r).")

NUM_BINS = 10


def body(args, params) -> dict:
    import numpy as np
    import pandas as pd

    from pgraft import domains
    from pgraft.errors import StageError
    from pgraft.io import read_npz, read_table, write_json, write_table
    from pgraft.metrics.tilt import empirical_cdf
    from pgraft.seeds import numpy_rng
    from pgraft.stages.common import build_rule
    from pgraft.workflows.artifacts import check_samples
    from pgraft.workflows.scoring import select

    domain = domains.build(args.domain, params)
    rule = build_rule(params, args.domain)
    table = read_table(args.rewards, columns=("set", "index", "reward"))
    samples = read_npz(args.samples, required=("x0", "groups", "domain"))
    check_samples(args.samples, samples, domain)
    train = table[table["set"] == "train"].sort_values("index")
    ref = table[table["set"] == "reference"]["reward"].to_numpy()
    r = train["reward"].to_numpy()
    groups = samples["groups"]
    if len(r) != len(groups):
        raise StageError(f"{args.rewards}: {len(r)} training rewards but {args.samples} has {len(groups)} samples; "
                         "rerun the reward stage")
    bad = ~np.isfinite(r)
    if bad.any() or not np.isfinite(ref).all():
        raise StageError(f"{args.rewards}: {int(bad.sum())} training and {int((~np.isfinite(ref)).sum())} reference "
                         "rewards are NaN or inf; rewards must be finite (rerun the reward stage)")
    if len(r) == 0:
        raise StageError(f"{args.rewards}: no training rewards (set == 'train'); the sample stage drew nothing")
    if len(ref) == 0:
        raise StageError(f"{args.rewards}: no reference rewards (set == 'reference')")
    keep, keys = select(rule, domain, samples["x0"], r, groups, numpy_rng("filter", args.seed))
    if not keep.any():
        raise StageError(f"filter {rule.name} {rule.params} accepted no sample; loosen its parameters")
    u = empirical_cdf(ref, r)
    g = rule.acceptance_probability(u if rule.law_argument == "cdf" else r)
    write_table(args.out, pd.DataFrame({"index": train["index"].to_numpy(), "group": groups, "reward": r,
                                        "u": u, "keep": keep}))
    bins = np.minimum((u * NUM_BINS).astype(int), NUM_BINS - 1)
    rows = [{"rule": rule.name, "bin": b, "u_center": (b + 0.5) / NUM_BINS, "count": int((bins == b).sum()),
             "empirical": float(keep[bins == b].mean()) if (bins == b).any() else float("nan"),
             "closed_form": float(g[bins == b].mean()) if (bins == b).any() else float("nan")}
            for b in range(NUM_BINS)]
    write_table(args.acceptance, pd.DataFrame(rows))
    expected = rule.expected_acceptance()
    metrics = {"accepted": int(keep.sum()), "acceptance_rate": float(keep.mean()),
               "expected_acceptance": float(expected if expected is not None else g.mean()),
               "accepted_reward_mean": float(r[keep].mean()) if keep.any() else float("nan")}
    if keys is not None:  # domains with a notion of duplicates (e.g. canonical SMILES): distinct samples
        metrics["distinct_in_pool"] = len(set(keys))
        metrics["distinct_kept"] = len({keys[i] for i in np.flatnonzero(keep)})
    write_json(args.metrics, metrics)
    return {**metrics, "_artifacts": [args.acceptance]}


def main(argv: list[str] | None = None) -> int:
    return run_stage("filter", stage_parser("filter", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
