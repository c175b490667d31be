"""Stage evaluate: sample the stitched model for each budget; reward, distances to target and base, diversity."""

from __future__ import annotations

from pgraft.stages.common import parser, run_stage

DOC = ("For each fine-tuning budget, draw evaluate.num_samples from the stitched sampler (fine-tuned for "
       "the first k steps, base after) and report the mean reward, the distance to the rule's exact tilted "
       "target p̄·g/E[g] (p̄: the base sampler's own reference pool), the distance to the base, diversity and "
       "the domain's own metrics; prompt-conditioned domains are also evaluated on their held-out prompts. "
       "Also keeps a few samples of the largest budget for the gallery figure.")


def body(args, params) -> dict:
    from pathlib import Path

    import numpy as np

    from pgraft import domains
    from pgraft.io import read_json, read_npz, read_table, write_json, write_npz
    from pgraft.metrics.distances import DISTANCES
    from pgraft.metrics.diversity import mean_pairwise_distance
    from pgraft.metrics.tilt import tilt_weights
    from pgraft.samplers.rollout import sample_in_batches
    from pgraft.samplers.stitched import Stitched
    from pgraft.stages.common import (as_cond, auxiliary_dir, build_rule, check_samples, conditions, load_model,
                                      score, seeded, set_threads)

    set_threads()
    domain = domains.build(args.domain, params)
    base = load_model(args.model, domain)
    domain.load_auxiliary(auxiliary_dir(args.model))
    schedule = domain.schedule(params.sampler)
    rule = build_rule(params, args.domain)
    ref = read_npz(args.reference, required=("x0", "domain"))
    check_samples(args.reference, ref, params, domain)
    table = read_table(args.rewards, columns=("set", "index", "reward"))
    ref_r = table[table["set"] == "reference"].sort_values("index")["reward"].to_numpy()
    weights = tilt_weights(rule, ref_r)
    distance = DISTANCES.get(params.evaluate.distance)
    ft_cfg = read_json(Path(args.finetuned) / "config.json")
    budgets = ft_cfg.get("budgets", params.finetune_for(args.domain).budgets)
    evaluations = ft_cfg.get("reward_evaluations", {})
    n = params.evaluate.num_samples
    splits = ("train", "heldout") if domain.conditional else ("train",)
    conds = {s: conditions(domain, s, n) for s in splits}
    cache: dict = {}
    out: dict = {"target_reward_mean": float(weights @ ref_r), "base_reward_mean": float(ref_r.mean())}
    gallery: dict = {}
    for b in budgets:
        if ft_cfg.get("identity") and f"b{budgets[0]}" in out:  # k = 0: the base model, whatever the budget
            out[f"b{b}"] = out[f"b{budgets[0]}"]
            continue
        ft = base if ft_cfg.get("identity") else load_model(args.finetuned, domain, name=f"b{b}")

        def draw(count, cond, stream):
            # common random numbers: the same noise for every k and budget of a seed (paired comparisons)
            x, _ = sample_in_batches(Stitched(ft, base, args.k), schedule, count, domain.shape,
                                     seeded(stream, args.seed), params.sample.batch_size, cond=cond,
                                     device=domain.device)
            return x.numpy()

        row: dict = {}
        for split in splits:
            prompts, cond = conds[split]
            x = draw(n, cond, 7 if split == "train" else 17)
            r = score(domain, x, prompts)
            metrics = {"reward_mean": float(np.mean(r)), "reward_std": float(np.std(r)),
                       "diversity": mean_pairwise_distance(x), **domain.extra_metrics(x, as_cond(prompts))}
            if split == "train":  # the tilted target and the base pool are defined on the training prompts
                metrics["dist_target"] = distance(x, ref["x0"], weights, cache=cache)
                metrics["dist_base"] = distance(x, ref["x0"], cache=cache)
                if domain.gallery_size and not domain.conditional:
                    gallery = {"x": x[:domain.gallery_size]}
            row.update({(m if split == "train" else f"{m}_heldout"): v for m, v in metrics.items()})
        if str(b) in evaluations:
            row["reward_evaluations"] = float(evaluations[str(b)])
        if domain.gallery_size and domain.conditional:
            prompts = np.asarray(domain.gallery_prompts())
            x = draw(len(prompts), conditions_of(domain, prompts), 27)
            gallery = {"x": x, "prompt": prompts}
        out[f"b{b}"] = row
    if not gallery:
        gallery = {"x": np.zeros((0, *domain.shape), dtype=np.float32)}
    write_npz(args.gallery, domain=np.asarray(args.domain), **gallery)
    write_json(args.out, out)
    return out


def conditions_of(domain, prompts):
    import torch

    return torch.as_tensor(domain.tokens([str(p) for p in prompts]))


def main(argv: list[str] | None = None) -> int:
    p = parser("evaluate", DOC, seed=True, k=True)
    p.add_argument("--model", required=True, help="base model directory")
    p.add_argument("--finetuned", required=True, help="fine-tuned checkpoints directory (from finetune or ddpo)")
    p.add_argument("--reference", required=True, help="reference pool .npz (from sample)")
    p.add_argument("--rewards", required=True, help="rewards .parquet (from reward)")
    p.add_argument("--out", required=True, help="output metrics JSON")
    p.add_argument("--gallery", required=True, help="output .npz of a few samples of the largest budget (figures)")
    return run_stage("evaluate", p, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
