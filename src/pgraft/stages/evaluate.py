"""Stage evaluate: sample the stitched model for each budget; reward, distances to target and base, diversity."""

from __future__ import annotations

from pgraft.stages.common import parser, run_stage

DOC = ("For each fine-tuning budget, draw evaluate.num_samples from the stitched sampler (fine-tuned for "
       "the first k steps, base after) and report the mean reward, the distance to the rule's exact tilted "
       "target p̄·g/E[g] (p̄: the base sampler's own reference pool), the distance to the base, and diversity.")


def body(args, params) -> dict:
    from pathlib import Path

    import numpy as np

    from pgraft import domains
    from pgraft.io import read_json, read_npz, read_table, write_json
    from pgraft.metrics.distances import DISTANCES
    from pgraft.metrics.diversity import mean_pairwise_distance
    from pgraft.metrics.tilt import tilt_weights
    from pgraft.samplers.schedule import build_schedule
    from pgraft.samplers.rollout import sample_in_batches
    from pgraft.stages.common import build_rule, check_samples, load_model, seeded, set_threads

    set_threads()
    domain = domains.build(args.domain, params)
    base = load_model(args.model, domain)
    schedule = build_schedule(params.sampler)
    rule = build_rule(params, args.domain)
    ref = read_npz(args.reference, required=("x0", "domain"))
    check_samples(args.reference, ref, params, domain)
    table = read_table(args.rewards, columns=("set", "index", "reward"))
    ref_r = table[table["set"] == "reference"].sort_values("index")["reward"].to_numpy()
    weights = tilt_weights(rule, ref_r)
    distance = DISTANCES.get(params.evaluate.distance)
    ft_cfg = read_json(Path(args.finetuned) / "config.json")
    cache: dict = {}
    out: dict = {"target_reward_mean": float(weights @ ref_r), "base_reward_mean": float(ref_r.mean())}
    for b in params.finetune.budgets:
        if ft_cfg.get("identity") and len(out) > 2:  # k = 0: the base model, whatever the budget
            out[f"b{b}"] = out[f"b{params.finetune.budgets[0]}"]
            continue
        ft = base if ft_cfg.get("identity") else load_model(args.finetuned, domain, name=f"b{b}")
        # common random numbers: the same noise for every k and budget of a seed (paired comparisons)
        x, _ = sample_in_batches(lambda i: ft if i < args.k else base, schedule, params.evaluate.num_samples,
                                 domain.shape, seeded(7, args.seed), params.sample.batch_size)
        x = x.numpy()
        r = domain.reward(x)
        row = {"reward_mean": float(np.mean(r)), "reward_std": float(np.std(r)),
               "dist_target": distance(x, ref["x0"], weights, cache=cache),
               "dist_base": distance(x, ref["x0"], cache=cache),
               "diversity": mean_pairwise_distance(x), **domain.extra_metrics(x)}
        out[f"b{b}"] = row
    write_json(args.out, out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = parser("evaluate", DOC, seed=True, k=True)
    p.add_argument("--model", required=True, help="base model directory")
    p.add_argument("--finetuned", required=True, help="fine-tuned checkpoints directory (from finetune)")
    p.add_argument("--reference", required=True, help="reference pool .npz (from sample)")
    p.add_argument("--rewards", required=True, help="rewards .parquet (from reward)")
    p.add_argument("--out", required=True, help="output metrics JSON")
    return run_stage("evaluate", p, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
