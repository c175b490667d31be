"""Stage correct: train the INC corrector, a small flow from N(0, I) to the inverted noises."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = ("Train a small velocity network (inc.corrector.architecture: MLP or UNet) by flow matching from N(0, I) to the noises that the base needs to "
       "reproduce real data (from invert), pairing each minibatch by its optimal-transport plan "
       "(inc.corrector.coupling); on a held-out share of the noises (inc.corrector.heldout_fraction) the loss is "
       "recorded, or a score (inc.corrector.stop_on) stops training early and keeps the best state; the "
       "nearest-neighbour distances of the corrector's outputs to training vs held-out noises check memorisation. "
       "One corrector per base step count n (docs/METHOD.md §4).")

EVAL_REPEATS = 4  # (t, ε) draws per held-out noise in the fixed held-out loss (stop_on: loss)
ENERGY_SAMPLES = 1000  # corrector outputs compared with the held-out noises (stop_on: energy)


def nearest_distances(x, ref, chunk: int = 1024):
    """Euclidean distance of each row of x (flattened) to its nearest row of ref."""
    import torch

    x, ref = x.reshape(len(x), -1).double(), ref.reshape(len(ref), -1).double()
    return torch.cat([torch.cdist(x[s:s + chunk], ref).min(1).values for s in range(0, len(x), chunk)])


def memorisation(outputs, train, heldout) -> dict:
    """Memorisation check: mean nearest-neighbour distance of corrector outputs to the training noises, beside that
    of the held-out noises (fresh draws of Q the corrector never saw) to the same training noises. Their ratio is
    near 1 without memorisation and falls towards 0 when outputs copy training noises. The mean distance of the
    outputs to the held-out noises is reported too."""
    d_train, d_held = nearest_distances(outputs, train), nearest_distances(outputs, heldout)
    d_ref = nearest_distances(heldout, train)
    return {"nn_distance_train": float(d_train.mean()), "nn_distance_heldout": float(d_held.mean()),
            "nn_distance_heldout_to_train": float(d_ref.mean()),
            "nn_ratio": float(d_train.mean() / d_ref.mean())}


def body(args, params) -> dict:
    from pathlib import Path

    import torch

    from pgraft import domains
    from pgraft.devices import is_main_process
    from pgraft.errors import ArtifactError
    from pgraft.finetune import train
    from pgraft.finetune.early_stopping import EarlyStopping, mean_loss
    from pgraft.finetune.flow_objective import FlowMatchingObjective
    from pgraft.io import atomic_dir, read_npz
    from pgraft.metrics.distances import energy_distance
    from pgraft.models import corrector
    from pgraft.samplers.flow import euler_sample
    from pgraft.seeds import seeded
    from pgraft.stages.common import save_model, set_threads

    set_threads()
    cfg = params.inc.corrector
    domain = domains.build(args.domain, params)
    inv = read_npz(args.inverted, required=("noise", "n", "domain"))
    if str(inv["domain"]) != args.domain or int(inv["n"]) != args.n:
        raise ArtifactError(f"{args.inverted}: inverted noises of {inv['domain']} n={int(inv['n'])}, "
                            f"expected {args.domain} n={args.n}")
    noise = torch.as_tensor(inv["noise"], dtype=torch.float32)
    num_held = int(round(cfg.heldout_fraction * len(noise)))
    if num_held and len(noise) - num_held < 2:
        raise ArtifactError(f"{args.inverted}: {len(noise)} inverted noises leave no training set after holding "
                            f"out inc.corrector.heldout_fraction={cfg.heldout_fraction}")
    order = torch.randperm(len(noise), generator=seeded("inc_heldout", args.n))
    held, fit = noise[order[:num_held]], noise[order[num_held:]]
    gen = seeded("corrector", args.seed, args.n)
    torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=gen)))
    model = domain.place(corrector.build(cfg, tuple(domain.shape)))
    stopper = None
    if num_held:
        if cfg.stop_on in ("loss", "none"):
            held_batches = FlowMatchingObjective(held, cfg.coupling).fixed_batches(
                cfg.batch_size, seeded("inc_heldout", args.seed, args.n), repeats=EVAL_REPEATS)
            score = lambda m: mean_loss(m, held_batches)  # noqa: E731
        else:
            z_eval = torch.randn((ENERGY_SAMPLES, *domain.shape), generator=seeded("inc_heldout", args.seed, args.n))
            score = lambda m: energy_distance(  # noqa: E731
                euler_sample(m, z_eval.to(domain.device), params.inc.corrector_steps).cpu().reshape(len(z_eval), -1)
                .numpy(), held.reshape(len(held), -1).numpy())
        stopper = EarlyStopping(score, cfg.eval_every, cfg.patience, monitor_only=cfg.stop_on == "none")
    losses = train(model, FlowMatchingObjective(fit, cfg.coupling), cfg.steps, cfg.learning_rate, cfg.batch_size,
                   gen, on_step=stopper, progress=f"corrector n={args.n}")
    out = {"steps_run": len(losses), "train_noises": len(fit), "heldout_noises": len(held),
           "parameters": sum(p.numel() for p in model.parameters())}
    if stopper is not None:
        stopper.finish(len(losses), model)
        out.update({"best_step": stopper.best_step, "heldout_score_best": stopper.best_loss,
                    "stopped_early": stopper.stopped_at is not None})
        check = seeded("inc_heldout", args.seed, args.n, 1)
        z = torch.randn((max(len(held), 2), *domain.shape), generator=check)
        with torch.no_grad():
            outputs = euler_sample(model, z.to(domain.device), params.inc.corrector_steps).cpu()
        out.update(memorisation(outputs, fit, held))
    tail = losses[-max(1, len(losses) // 10):]
    out["final_loss"] = sum(tail) / len(tail)
    if not is_main_process():  # a data-parallel launch: the main process writes
        return {}
    with atomic_dir(args.out) as tmp:
        history = {"heldout_history": stopper.history} if stopper is not None else {}
        save_model(Path(tmp), model, args.domain, meta={"kind": "corrector", "n": args.n, "training": out, **history})
    return out


def main(argv: list[str] | None = None) -> int:
    return run_stage("correct", stage_parser("correct", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
