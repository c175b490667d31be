"""Stage pretrain: train the domain's base denoiser from scratch (no pretrained weights are downloaded)."""

from __future__ import annotations

from pathlib import Path

from pgraft.stages.common import parser, run_stage

DOC = "Train the domain's base ε-model on its data with the ordinary denoising loss; save it as safetensors."


def body(args, params) -> dict:
    import torch

    from pgraft import domains
    from pgraft.finetune import DenoisingObjective, train
    from pgraft.io import atomic_dir, write_json
    from pgraft.samplers.schedule import build_schedule
    from pgraft.stages.common import save_model, seeded, set_threads

    set_threads()
    domain = domains.build(args.domain, params)
    cfg = params.domain_params(args.domain).pretrain
    schedule = build_schedule(params.sampler)
    gen = seeded(1, cfg.seed)
    data = domain.sample_data(max(cfg.batch_size * 64, 50_000), gen)
    torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=gen)))  # network init is seeded too
    model = domain.build_model()
    losses = train(model, DenoisingObjective(data, schedule.alphas_cumprod), cfg.steps, cfg.learning_rate,
                   cfg.batch_size, gen, progress=f"pretrain {args.domain}")
    tail = losses[-max(1, len(losses) // 10):]
    metrics = {"final_loss": sum(tail) / len(tail), "steps": cfg.steps,
               "parameters": sum(p.numel() for p in model.parameters())}
    with atomic_dir(args.out) as tmp:
        save_model(Path(tmp), model, args.domain, meta={"sampler": params.sampler.model_dump()})
    write_json(args.metrics, metrics)
    return {**metrics, "_artifacts": [args.metrics]}


def main(argv: list[str] | None = None) -> int:
    p = parser("pretrain", DOC)
    p.add_argument("--out", required=True, help="output directory for model.safetensors + config.json")
    p.add_argument("--metrics", required=True, help="output metrics JSON")
    return run_stage("pretrain", p, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
