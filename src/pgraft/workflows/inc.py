"""The INC protocols (docs/METHOD.md §4): inversion of the training images, corrector training, FID vs FLOPs."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from pgraft.errors import ArtifactError, StageError
from pgraft.seeds import numpy_rng, seeded

MIN_KEPT = 10  # fewer kept noises than this cannot train a corrector
EVAL_REPEATS = 4  # (t, ε) draws per held-out noise in the fixed held-out loss (stop_on: loss)
ENERGY_SAMPLES = 1000  # corrector outputs compared with the held-out noises (stop_on: energy)


@dataclass
class Inversion:
    """The backward-Euler inversion of a subset of the training images, before any image is dropped."""

    data: object  # torch.Tensor: the images inverted
    order: np.ndarray  # their rows in the training split
    noise: object  # torch.Tensor: the recovered noises, one per image
    row_residuals: object  # torch.Tensor: each row's largest last fixed-point update over steps
    step_residuals: list  # per forward step, the largest last update over rows
    iterations: list  # per forward step, the iterations spent (by its slowest row)
    warnings: list  # the InversionWarning messages caught (rows above inc.tolerance)


def invert_images(domain, base, inc, n: int) -> Inversion:
    """Backward Euler of the base's n-step sampler over inc.num_inverted training images (all by default)."""
    import torch

    from pgraft.samplers.flow import InversionWarning, euler_invert

    train, _ = domain.split()
    order = numpy_rng("invert_subset").permutation(len(train))[: inc.num_inverted or None]
    data = torch.as_tensor(train[order])
    gen = seeded("invert", n)
    noises, row_res, step_res, iters = [], [], [0.0] * n, [0] * n
    with warnings.catch_warnings(record=True) as record:  # the warning counts rows above inc.tolerance
        warnings.simplefilter("always", InversionWarning)
        for start in range(0, len(data), inc.batch_size):
            res = euler_invert(base, data[start:start + inc.batch_size].to(domain.device), n,
                               iterations=inc.iterations, tol=inc.tolerance, perturb=inc.perturb, generator=gen)
            noises.append(res.noise.cpu())
            row_res.append(res.row_residuals)
            step_res = [max(a, b) for a, b in zip(step_res, res.step_residuals)]
            iters = [max(a, b) for a, b in zip(iters, res.iterations_used)]
        caught = [str(w.message) for w in record if issubclass(w.category, InversionWarning)]
    return Inversion(data, order, torch.cat(noises), torch.cat(row_res), step_res, iters, caught)


def keep_faithful(domain, base, inv: Inversion, inc, n: int) -> tuple[dict, dict]:
    """The noises that converged within inc.max_residual and whose round trip (noise -> base sampler -> image) is
    within inc.roundtrip_threshold; a StageError when fewer than MIN_KEPT remain.
    Returns ({"noise", "index"}: the kept noises and their training rows, the inversion's metrics)."""
    import torch

    from pgraft.samplers.flow import batched, euler_sample

    data, noise, row_res = inv.data, inv.noise, inv.row_residuals
    recon = batched(lambda zb: euler_sample(base, zb.to(domain.device), n).cpu(), noise, inc.batch_size)
    err = (recon - data).abs().reshape(len(data), -1).amax(1)
    converged = row_res <= inc.max_residual
    faithful = torch.isfinite(err) & (err <= inc.roundtrip_threshold)
    keep = converged & faithful
    if int(keep.sum()) < MIN_KEPT:
        raise StageError(f"invert n={n}: only {int(keep.sum())} of {len(data)} images inverted within "
                         f"inc.max_residual={inc.max_residual} and inc.roundtrip_threshold={inc.roundtrip_threshold}; "
                         f"raise inc.iterations, inc.perturb or the threshold")
    kept = noise[keep]
    metrics = {"n": n, "num_images": len(data), "converged": int(converged.sum()),
               "dropped_not_converged": int((~converged).sum()),
               "dropped_roundtrip": int((converged & ~faithful).sum()),
               "num_inverted": int(keep.sum()), "max_residual": float(row_res.max()),
               **{f"max_residual_step{j}": float(r) for j, r in enumerate(inv.step_residuals)},
               **{f"iterations_step{j}": int(k) for j, k in enumerate(inv.iterations)},
               "roundtrip_max_abs_error": float(err[keep].max()), "roundtrip_mean_abs_error": float(err[keep].mean()),
               "roundtrip_max_abs_error_all": float(err.max()),
               "noise_mean": float(kept.mean()), "noise_std": float(kept.std())}
    return {"noise": kept.numpy(), "index": inv.order[keep.numpy()]}, metrics


def heldout_split(path: Path, inv: dict, domain_name: str, n: int, cfg):
    """The inverted noises of `path` (checked to be those of domain_name at n) split into (held-out, training)
    shares by the stream inc_heldout (inc.corrector.heldout_fraction held out)."""
    import torch

    if str(inv["domain"]) != domain_name or int(inv["n"]) != n:
        raise ArtifactError(f"{path}: inverted noises of {inv['domain']} n={int(inv['n'])}, "
                            f"expected {domain_name} n={n}")
    noise = torch.as_tensor(inv["noise"], dtype=torch.float32)
    num_held = int(round(cfg.heldout_fraction * len(noise)))
    if num_held and len(noise) - num_held < 2:
        raise ArtifactError(f"{path}: {len(noise)} inverted noises leave no training set after holding "
                            f"out inc.corrector.heldout_fraction={cfg.heldout_fraction}")
    order = torch.randperm(len(noise), generator=seeded("inc_heldout", n))
    return noise[order[:num_held]], noise[order[num_held:]]


def heldout_stopper(domain, inc, held, seed: int, n: int):
    """Early stopping on the held-out noises' score (inc.corrector.stop_on; none: recorded only), or None when
    none are held out."""
    import torch

    from pgraft.finetune.early_stopping import EarlyStopping, mean_loss
    from pgraft.finetune.flow_objective import FlowMatchingObjective
    from pgraft.metrics.distances import energy_distance
    from pgraft.samplers.flow import euler_sample

    cfg = inc.corrector
    if not len(held):
        return None
    if cfg.stop_on in ("loss", "none"):
        held_batches = FlowMatchingObjective(held, cfg.coupling).fixed_batches(
            cfg.batch_size, seeded("inc_heldout", seed, n), repeats=EVAL_REPEATS)
        score = lambda m: mean_loss(m, held_batches)  # noqa: E731
    else:
        z_eval = torch.randn((ENERGY_SAMPLES, *domain.shape), generator=seeded("inc_heldout", seed, n))
        score = lambda m: energy_distance(  # noqa: E731
            euler_sample(m, z_eval.to(domain.device), inc.corrector_steps).cpu().reshape(len(z_eval), -1)
            .numpy(), held.reshape(len(held), -1).numpy())
    return EarlyStopping(score, cfg.eval_every, cfg.patience, monitor_only=cfg.stop_on == "none")


def train_corrector(domain, inc, held, fit, seed: int, n: int) -> tuple[object, dict, dict]:
    """Flow matching from N(0, I) to the training noises `fit`, scored on `held` (docs/METHOD.md §4), then the
    memorisation check. Returns (the corrector, its training record, {"heldout_history": ...} or {})."""
    import torch

    from pgraft.finetune import train
    from pgraft.finetune.flow_objective import FlowMatchingObjective
    from pgraft.models import corrector

    cfg = inc.corrector
    gen = seeded("corrector", seed, n)
    torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=gen)))  # the corrector's initial weights
    model = domain.place(corrector.build(cfg, tuple(domain.shape)))
    stopper = heldout_stopper(domain, inc, held, seed, n)
    losses = train(model, FlowMatchingObjective(fit, cfg.coupling), cfg.steps, cfg.learning_rate, cfg.batch_size,
                   gen, on_step=stopper, progress=f"corrector n={n}")
    out = {"steps_run": len(losses), "train_noises": len(fit), "heldout_noises": len(held),
           "parameters": sum(p.numel() for p in model.parameters())}
    if stopper is not None:
        stopper.finish(len(losses), model)
        out.update({"best_step": stopper.best_step, "heldout_score_best": stopper.best_loss,
                    "stopped_early": stopper.stopped_at is not None})
        out.update(memorisation_check(domain, model, inc, fit, held, seed, n))
    tail = losses[-max(1, len(losses) // 10):]
    out["final_loss"] = sum(tail) / len(tail)
    return model, out, ({"heldout_history": stopper.history} if stopper is not None else {})


def memorisation_check(domain, model, inc, fit, held, seed: int, n: int) -> dict:
    """metrics.memorisation of the corrector's outputs from fresh noise (as many as held-out noises, at least 2)."""
    import torch

    from pgraft.metrics.memorisation import memorisation
    from pgraft.samplers.flow import euler_sample

    check = seeded("inc_heldout", seed, n, 1)
    z = torch.randn((max(len(held), 2), *domain.shape), generator=check)
    with torch.no_grad():
        outputs = euler_sample(model, z.to(domain.device), inc.corrector_steps).cpu()
    return memorisation(outputs, fit, held)


def evaluate_inc(domain, base, inc, seed: int, features, load_corrector: Callable[[int], tuple]) -> dict:
    """FID and KID against every held-out real image, and FLOPs per image, of the base at every n of
    inc.base_steps and of noise -> corrector -> base at every n of inc.corrected_steps, all from the SAME noise,
    beside the floor (real training vs real held-out images). load_corrector(n): (the placed corrector of n, its
    training record)."""
    import torch

    from pgraft.metrics.fid import fid_kid, to_uint8
    from pgraft.metrics.flops import flops_per_image
    from pgraft.samplers.flow import batched, euler_sample

    device = domain.device
    train, test = domain.split()
    real = to_uint8(torch.as_tensor(test))
    gen = seeded("inc_evaluate", seed)
    z = torch.randn((inc.num_samples, *domain.shape), generator=gen)  # the same noise for every method
    x1, t1 = z[:8].to(device), torch.full((8,), 0.5, device=device)
    base_flops = flops_per_image(base, x1, t1, 1)
    out: dict = {"real_images": len(real), "generated_images": inc.num_samples,
                 "floor": {**fid_kid(real, to_uint8(torch.as_tensor(train)), features),
                           "real_train_images": len(train)}}

    for n in inc.base_steps:
        x = batched(lambda zb: euler_sample(base, zb.to(device), n).cpu(), z, inc.batch_size)
        out[f"base_n{n}"] = {**fid_kid(real, to_uint8(x), features), "flops_per_image": n * base_flops, "n": n}
    for n in inc.corrected_steps:
        corr, training = load_corrector(n)
        c_flops = flops_per_image(corr, x1, t1, 1)
        res = _corrected(corr, base, z, real, inc, n, features, device)
        res["flops_per_image"] = n * base_flops + inc.corrector_steps * c_flops
        b = out[f"base_n{n}"]
        res.update({"fid_minus_base": res["fid"] - b["fid"], "kid_minus_base": res["kid"] - b["kid"]})
        res.update({f"corrector_{k}": v for k, v in training.items()
                    if k in ("nn_ratio", "best_step", "steps_run", "heldout_score_best")})
        out[f"inc_n{n}"] = res
    return out


def _corrected(corr, base, z, real, inc, n: int, features, device) -> dict:
    """FID and KID of noise -> corrector -> base (n steps)."""
    from pgraft.metrics.fid import fid_kid, to_uint8
    from pgraft.samplers.flow import batched, composed_sample

    x = batched(lambda zb: composed_sample(corr, base, zb.to(device), inc.corrector_steps, n).cpu(), z,
                inc.batch_size)
    return {**fid_kid(real, to_uint8(x), features), "n": n}
