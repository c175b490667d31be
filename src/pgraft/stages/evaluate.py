"""Stage evaluate: sample the stitched model for each budget; reward, distances to target and base, diversity."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("For each fine-tuning budget, draw evaluate.num_samples from the stitched sampler (fine-tuned for "
       "the first k steps, base after) and report the mean reward, the distance to the rule's exact tilted "
       "target p̄·g/E[g] (p̄: the base sampler's own reference pool), the distance to the base, diversity and "
       "the domain's own metrics; prompt-conditioned domains are also evaluated on their held-out prompts. "
       "Also keeps a few samples of the largest budget for the gallery figure, and copies the fine-tuning "
       "loss history (finetuned/loss_history.json) into its output under loss_history.")


def body(args, params) -> dict:
    from pathlib import Path

    import numpy as np

    from pgraft import domains
    from pgraft.io import read_json, read_npz, read_table, write_json, write_npz
    from pgraft.metrics.distances import DISTANCES
    from pgraft.stages.common import auxiliary_dir, build_rule, load_base, load_model, set_threads
    from pgraft.workflows.artifacts import check_samples
    from pgraft.workflows.context import RunContext
    from pgraft.workflows.evaluation import Reference, evaluate_budgets
    from pgraft.workflows.finetuning import LOSS_HISTORY_FILE

    set_threads()
    domain = domains.build(args.domain, params)
    domain.load_auxiliary(auxiliary_dir(args.model))
    ctx = RunContext(domain, domain.place(load_base(args.model, domain, args.seed)), domain.schedule(params.sampler),
                     build_rule(params, args.domain), args.seed, args.k, params.sample.batch_size)
    ref = read_npz(args.reference, required=("x0", "domain"))
    check_samples(args.reference, ref, domain)
    table = read_table(args.rewards, columns=("set", "index", "reward"))
    ref_r = table[table["set"] == "reference"].sort_values("index")["reward"].to_numpy()
    ft_cfg = read_json(Path(args.finetuned) / "config.json")
    result, gallery = evaluate_budgets(
        ctx, lambda b: domain.place(load_model(args.finetuned, domain, name=f"b{b}")),
        distance=DISTANCES.get(params.evaluate.distance),
        reference=Reference(ref["x0"], ref_r, ref.get("prompt") if domain.conditional else None),
        budgets=ft_cfg.get("budgets", params.finetune_for(args.domain).budgets),
        evaluations=ft_cfg.get("reward_evaluations", {}), identity=bool(ft_cfg.get("identity")),
        num_samples=params.evaluate.num_samples)
    write_npz(args.gallery, domain=np.asarray(args.domain), **gallery)
    history = Path(args.finetuned) / LOSS_HISTORY_FILE  # absent for DDPO and for runs made before it existed
    if history.exists():  # carried on for aggregate, which reads evaluate's outputs only
        result.extra["loss_history"] = {"train_loss": read_json(history)["train_loss"]}
    out = result.to_json()
    write_json(args.out, out)
    return out


def main(argv: list[str] | None = None) -> int:
    return run_stage("evaluate", stage_parser("evaluate", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
