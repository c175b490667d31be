"""Stage pretrain: train the domain's base denoiser from scratch (no pretrained weights are downloaded)."""

from __future__ import annotations

from pathlib import Path

from pgraft.runtime.runner import run_stage, stage_parser

DOC = "Train the domain's base ε-model on its data with the ordinary denoising loss; save it as safetensors."


def body(args, params) -> dict:
    from pgraft import domains
    from pgraft.devices import is_main_process
    from pgraft.io import atomic_dir, save_weights, write_json
    from pgraft.stages.common import auxiliary_dir, save_model, set_threads
    from pgraft.workflows.pretrain import base_metrics, train_auxiliary, train_bases, train_features

    set_threads()
    domain = domains.build(args.domain, params)
    device = domain.device  # resolved before any compute: a CUDA device asked for and absent fails here
    if domain.pretrained:  # a published base (e.g. Stable Diffusion 2): its config is recorded, nothing is trained
        return _published_base(args, params, domain) if is_main_process() else {}
    section = params.domain_params(args.domain)
    models, metrics, steps = train_bases(params, domain, section, args.domain)
    if not is_main_process():  # a data-parallel launch: the main process measures and writes
        return {}
    metrics.update(base_metrics(params, domain, models, steps, device))
    if args.features:  # the FID feature network of an image domain, trained on its train split
        from pgraft.metrics.fid import save_extractor

        net = train_features(domain, section)
        with atomic_dir(args.features) as tmp:
            save_extractor(net, tmp)
    with atomic_dir(args.out) as tmp:
        save_model(Path(tmp), models[0], args.domain,
                   meta={"sampler": params.sampler.model_dump(), "base_models": len(models)})
        for b, other in enumerate(models[1:], start=1):  # base b beside base 0 (pgraft.checkpoints.base_name)
            save_weights(Path(tmp) / f"model_base{b}.safetensors", other.state_dict(),
                         metadata={"domain": args.domain})
        metrics.update(train_auxiliary(domain, auxiliary_dir(tmp), section.pretrain.seed))
    write_json(args.metrics, metrics)
    return {**metrics, "_artifacts": [args.metrics]}


def _published_base(args, params, domain) -> dict:
    """The base model directory of a pretrained domain: its config (no trainable weights) and sampling FLOPs."""
    from pgraft.io import atomic_dir, write_json
    from pgraft.stages.common import auxiliary_dir, save_model
    from pgraft.workflows.pretrain import published_base, train_auxiliary

    model, metrics = published_base(params, domain)
    with atomic_dir(args.out) as tmp:
        save_model(Path(tmp), model, args.domain, meta={"sampler": params.sampler.model_dump()})
        metrics.update(train_auxiliary(domain, auxiliary_dir(tmp), 0))
    write_json(args.metrics, metrics)
    return {**metrics, "_artifacts": [args.metrics]}


def main(argv: list[str] | None = None) -> int:
    return run_stage("pretrain", stage_parser("pretrain", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
