"""Stage pretrain: train the domain's base denoiser from scratch (no pretrained weights are downloaded)."""

from __future__ import annotations

from pathlib import Path

from pgraft.runtime.runner import run_stage, stage_parser

DOC = "Train the domain's base ε-model on its data with the ordinary denoising loss; save it as safetensors."


def body(args, params) -> dict:
    import torch

    from pgraft import domains
    from pgraft.devices import is_main_process
    from pgraft.io import atomic_dir, save_weights, write_json
    from pgraft.seeds import seeded
    from pgraft.stages.common import auxiliary_dir, save_model, set_threads

    set_threads()
    domain = domains.build(args.domain, params)
    device = domain.device  # resolved before any compute: a CUDA device asked for and absent fails here
    if domain.pretrained:  # a published base (e.g. Stable Diffusion 2): its config is recorded, nothing is trained
        return _published_base(args, params, domain) if is_main_process() else {}
    section = params.domain_params(args.domain)
    cfg = section.pretrain
    # several independently trained bases of a diffusion domain (params base_models): base b from seed (cfg.seed, b)
    count = params.base_models if domain.kind == "diffusion" else 1
    models, metrics = [], {}
    for b in range(count):
        model, losses, steps = _train_base(args, params, domain, section, b)
        models.append(model)
        tail = losses[-max(1, len(losses) // 10):] or [float("nan")]
        metrics["final_loss" if b == 0 else f"final_loss_base{b}"] = sum(tail) / len(tail)
    if not is_main_process():  # a data-parallel launch: the main process measures and writes
        return {}
    model = models[0]
    metrics.update({"steps": steps, "parameters": sum(p.numel() for p in model.parameters()), "base_models": count})
    if domain.kind == "diffusion":  # network cost of drawing one sample with the configured sampler
        from pgraft.metrics.flops import flops_per_call

        model.eval()
        x = torch.zeros((1, *domain.shape), device=device)
        extra = ((torch.as_tensor(domain.tokens(domain.prompts("train")[:1])).to(device),) if domain.conditional
                 else ())
        metrics["flops_per_sample"] = params.sampler.num_steps * flops_per_call(
            model, x, torch.zeros(1, device=device).long(), *extra)
    if args.features:  # the FID feature network of an image domain, trained on its train split
        from pgraft.metrics.fid import save_extractor
        from pgraft.models.digit_features import train_digit_classifier

        x, y = domain.labelled_train()
        x = torch.as_tensor(x).mean(dim=1, keepdim=True)  # the feature network sees 8x8 grayscale
        x = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)
        net = train_digit_classifier(x, torch.as_tensor(y), steps=section.features.steps,
                                     generator=seeded("features", cfg.seed))
        with atomic_dir(args.features) as tmp:
            save_extractor(net, tmp)
    with atomic_dir(args.out) as tmp:
        save_model(Path(tmp), model, args.domain, meta={"sampler": params.sampler.model_dump(), "base_models": count})
        for b, other in enumerate(models[1:], start=1):  # base b beside base 0 (pgraft.checkpoints.base_name)
            save_weights(Path(tmp) / f"model_base{b}.safetensors", other.state_dict(),
                         metadata={"domain": args.domain})
        aux = domain.train_auxiliary(auxiliary_dir(tmp), seeded("auxiliary", cfg.seed))  # one reward for every base
        metrics.update({f"auxiliary_{k}": v for k, v in aux.items()})
    write_json(args.metrics, metrics)
    return {**metrics, "_artifacts": [args.metrics]}


def _train_base(args, params, domain, section, b: int):
    """Train base model b of the domain (b = 0: seeded by pretrain.seed alone, as with a single base); returns the
    network, its loss per step and its step count."""
    import torch

    from pgraft.finetune import DenoisingObjective, train
    from pgraft.samplers.schedule import build_schedule
    from pgraft.seeds import seeded

    cfg = section.pretrain
    gen = seeded("pretrain", cfg.seed) if b == 0 else seeded("pretrain", cfg.seed, b)
    if domain.kind == "flow":
        from pgraft.finetune.flow_objective import FlowMatchingObjective

        objective = FlowMatchingObjective(torch.as_tensor(domain.split()[0]))
        steps = 0 if section.model.checkpoint else cfg.steps  # a given checkpoint is the base as it is
    else:
        data = domain.sample_data(max(cfg.batch_size * 64, 50_000), gen)
        cond = None
        if domain.conditional:  # (images, prompts): the network learns p(x | prompt)
            data, prompts = data
            cond = torch.as_tensor(domain.tokens(prompts))
        objective = DenoisingObjective(data, build_schedule(params.sampler).alphas_cumprod, cond=cond)
        steps = cfg.steps
    torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=gen)))  # network init is seeded too
    model = domain.place(domain.build_model())
    label = f"pretrain {args.domain}" + (f" (base {b})" if b else "")
    return model, train(model, objective, steps, cfg.learning_rate, cfg.batch_size, gen, progress=label), steps


def _published_base(args, params, domain) -> dict:
    """The base model directory of a pretrained domain: its config (no trainable weights) and sampling FLOPs."""
    import torch

    from pgraft.io import atomic_dir, write_json
    from pgraft.metrics.flops import flops_per_call
    from pgraft.seeds import seeded
    from pgraft.stages.common import auxiliary_dir, save_model

    model = domain.build_model().eval()
    tokens = torch.as_tensor(domain.tokens(domain.prompts("train")[:1]))
    metrics = {"steps": 0, "parameters": sum(p.numel() for p in model.parameters()),
               "flops_per_sample": params.sampler.num_steps * flops_per_call(
                   model, torch.zeros((1, *domain.shape)), torch.zeros(1).long(), tokens)}
    with atomic_dir(args.out) as tmp:
        save_model(Path(tmp), model, args.domain, meta={"sampler": params.sampler.model_dump()})
        aux = domain.train_auxiliary(auxiliary_dir(tmp), seeded("auxiliary", 0))
        metrics.update({f"auxiliary_{k}": v for k, v in aux.items()})
    write_json(args.metrics, metrics)
    return {**metrics, "_artifacts": [args.metrics]}


def main(argv: list[str] | None = None) -> int:
    return run_stage("pretrain", stage_parser("pretrain", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
