"""The pretraining protocol: base networks from scratch, their sampling cost, the FID feature network, auxiliaries."""

from __future__ import annotations

import torch

from pgraft.finetune import DenoisingObjective, train
from pgraft.samplers.schedule import build_schedule
from pgraft.seeds import seeded


def train_bases(params, domain, section, name: str) -> tuple[list, dict, int]:
    """Every base network of the domain (params base_models for a diffusion domain, base b from seed
    (pretrain.seed, b); one otherwise): the networks, {"final_loss", "final_loss_base<b>"} (the mean loss over each
    base's last tenth of steps) and the step count."""
    count = params.base_models if domain.kind == "diffusion" else 1
    models, metrics = [], {}
    for b in range(count):
        model, losses, steps = train_base(params, domain, section, name, b)
        models.append(model)
        tail = losses[-max(1, len(losses) // 10):] or [float("nan")]
        metrics["final_loss" if b == 0 else f"final_loss_base{b}"] = sum(tail) / len(tail)
    return models, metrics, steps


def train_base(params, domain, section, name: str, b: int):
    """Train base model b of the domain (b = 0: seeded by pretrain.seed alone, as with a single base); returns the
    network, its loss per step and its step count."""
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
    label = f"pretrain {name}" + (f" (base {b})" if b else "")
    return model, train(model, objective, steps, cfg.learning_rate, cfg.batch_size, gen, progress=label), steps


def base_metrics(params, domain, models: list, steps: int, device) -> dict:
    """Steps, parameter count and base count of the trained bases, and for a diffusion domain the network cost of
    drawing one sample with the configured sampler (flops_per_sample; base 0 is put in eval mode)."""
    model = models[0]
    metrics = {"steps": steps, "parameters": sum(p.numel() for p in model.parameters()), "base_models": len(models)}
    if domain.kind == "diffusion":
        from pgraft.metrics.flops import flops_per_call

        model.eval()
        x = torch.zeros((1, *domain.shape), device=device)
        extra = ((torch.as_tensor(domain.tokens(domain.prompts("train")[:1])).to(device),) if domain.conditional
                 else ())
        metrics["flops_per_sample"] = params.sampler.num_steps * flops_per_call(
            model, x, torch.zeros(1, device=device).long(), *extra)
    return metrics


def train_features(domain, section):
    """The FID feature network of an image domain: a digit classifier on its labelled train split at 8x8
    grayscale, seeded by pretrain.seed."""
    from pgraft.models.digit_features import train_digit_classifier

    x, y = domain.labelled_train()
    x = torch.as_tensor(x).mean(dim=1, keepdim=True)  # the feature network sees 8x8 grayscale
    x = torch.nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)
    return train_digit_classifier(x, torch.as_tensor(y), steps=section.features.steps,
                                  generator=seeded("features", section.pretrain.seed))


def train_auxiliary(domain, directory, seed: int) -> dict:
    """The domain's auxiliary networks (judges, feature networks) trained into `directory` (one reward for every
    base): their metrics, keyed auxiliary_<name>."""
    aux = domain.train_auxiliary(directory, seeded("auxiliary", seed))
    return {f"auxiliary_{k}": v for k, v in aux.items()}


def published_base(params, domain) -> tuple[object, dict]:
    """A pretrained domain's published base (e.g. Stable Diffusion 2) in eval mode and its metrics: no steps, its
    parameter count and sampling FLOPs."""
    from pgraft.metrics.flops import flops_per_call

    model = domain.build_model().eval()
    tokens = torch.as_tensor(domain.tokens(domain.prompts("train")[:1]))
    metrics = {"steps": 0, "parameters": sum(p.numel() for p in model.parameters()),
               "flops_per_sample": params.sampler.num_steps * flops_per_call(
                   model, torch.zeros((1, *domain.shape)), torch.zeros(1).long(), tokens)}
    return model, metrics
