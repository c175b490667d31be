"""The learning-error probe of the best-k predictor (docs/METHOD.md §2, "Predicting the best k"): a short GRAFT
fine-tune on part of the accepted samples, and the denoising loss per sampler step of the base and of the probe
on the held-out rest and of the probe on its own training part. Not a pipeline stage: scripts/regime_map.py runs
it (`python -m pgraft.finetune.probe`) beside the stages, in a cell's directory with its params.yaml
(`regime_map.probe`)."""

from __future__ import annotations

import copy

import numpy as np

from pgraft.stages.common import parser, run_stage

DOC = ("Fine-tune a copy of the base with GRAFT's loss for regime_map.probe.steps steps on the accepted x_0 less a "
       "held-out part (regime_map.probe.heldout_fraction), then write the mean denoising loss at each sampler step "
       "(noise end first) of the base and the probe on the held-out part and of the probe on its training part.")


def window_losses(model, data, cond, timesteps, alphas_cumprod, generator, draws: int, batch: int = 4096):
    """Mean ε-loss of `model` on `data` (accepted x_0) at each sampler timestep, `draws` noises per row (drawn from
    `generator`, the same for every model given the same generator state): a list, noise end first."""
    import torch

    out = []
    with torch.no_grad():
        for t in timesteps.tolist():
            total, count = 0.0, 0
            for _ in range(draws):
                eps = torch.randn(data.shape, generator=generator)
                ab = float(alphas_cumprod[t])
                x_t = ab ** 0.5 * data + (1 - ab) ** 0.5 * eps
                for i in range(0, len(data), batch):
                    rows = slice(i, i + batch)
                    tt = torch.full((len(data[rows]),), t, dtype=torch.long)
                    extra = () if cond is None else (cond[rows],)
                    pred = model(x_t[rows], tt, *extra)
                    total += float(((pred - eps[rows]) ** 2).flatten(1).mean(1).sum())
                    count += len(data[rows])
            out.append(total / count)
    return out


def split(n: int, heldout_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows) of n accepted samples: at least one of each."""
    order = rng.permutation(n)
    held = min(n - 1, max(1, int(round(heldout_fraction * n))))
    return np.sort(order[held:]), np.sort(order[:held])


def body(args, params) -> dict:
    import torch

    from pgraft import domains
    from pgraft.finetune import TruncatedObjective, train
    from pgraft.io import read_npz, read_table, write_json
    from pgraft.samplers.levels import NoiseLevels
    from pgraft.seeds import numpy_rng, seeded
    from pgraft.stages.common import load_model, set_threads
    from pgraft.workflows.artifacts import check_samples
    from pgraft.workflows.finetuning import training_data

    set_threads()
    cfg = params.regime_map.probe
    ft = params.finetune_for(args.domain)
    domain = domains.build(args.domain, params)
    base = load_model(args.model, domain)
    samples = read_npz(args.samples, required=("x0", "groups", "domain", "timesteps", "alphas_cumprod"))
    check_samples(args.samples, samples, domain)
    keep = read_table(args.selection, columns=("index", "keep")).sort_values("index")["keep"].to_numpy(dtype=bool)
    data, cond = training_data(samples, keep, "x0", domain)
    tr, ho = split(len(data), cfg.heldout_fraction, numpy_rng(16, args.seed))
    levels = NoiseLevels.from_arrays(samples["timesteps"], samples["alphas_cumprod"])
    n = len(levels.timesteps)
    pick = (lambda c, rows: None if c is None else c[torch.as_tensor(rows)])
    objective = TruncatedObjective(data[torch.as_tensor(tr)], levels, n, "x0", ft.timesteps, cond=pick(cond, tr))
    model = copy.deepcopy(base).requires_grad_(True)
    losses = train(model, objective, cfg.steps, ft.learning_rate, ft.batch_size, seeded(17, args.seed),
                   warmup_steps=ft.warmup_steps)

    def measured(m, rows):  # the same noises for every model on the same rows
        return window_losses(m, data[torch.as_tensor(rows)], pick(cond, rows), levels.timesteps,
                             levels.alphas_cumprod, seeded(18, args.seed, len(rows)), cfg.noise_draws)

    out = {"steps": cfg.steps, "accepted": len(data), "train": len(tr), "heldout": len(ho),
           "timesteps": levels.timesteps.tolist(), "heldout_base": measured(base, ho),
           "heldout_probe": measured(model, ho), "train_probe": measured(model, tr),
           "final_train_loss": float(np.mean(losses[-10:]))}
    write_json(args.out, out)
    return {"heldout_excess": float(np.mean(np.subtract(out["heldout_probe"], out["train_probe"])))}


def main(argv: list[str] | None = None) -> int:
    p = parser("probe", DOC, seed=True)
    p.add_argument("--model", required=True, help="base model directory (from pretrain)")
    p.add_argument("--samples", required=True, help="samples .npz (from sample)")
    p.add_argument("--selection", required=True, help="selection .parquet (from filter)")
    p.add_argument("--out", required=True, help="output JSON: the per-step losses")
    return run_stage("probe", p, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
