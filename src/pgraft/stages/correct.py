"""Stage correct: train the INC corrector, a small flow from N(0, I) to the inverted noises."""

from __future__ import annotations

from pgraft.stages.common import parser, run_stage

DOC = ("Train a small velocity MLP by flow matching from N(0, I) to the noises that the base needs to "
       "reproduce real data (from invert); one corrector per base step count n (docs/METHOD.md §4).")


def body(args, params) -> dict:
    from pathlib import Path

    import torch

    from pgraft import domains
    from pgraft.devices import is_main_process
    from pgraft.errors import ArtifactError
    from pgraft.finetune import train
    from pgraft.finetune.flow_objective import FlowMatchingObjective
    from pgraft.io import atomic_dir, read_npz
    from pgraft.models.mlp import VelocityMLP
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
    gen = seeded(10, args.seed, args.n)
    torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=gen)))
    model = domain.place(VelocityMLP(list(domain.shape), cfg.hidden, cfg.layers))
    losses = train(model, FlowMatchingObjective(noise), cfg.steps, cfg.learning_rate, cfg.batch_size, gen,
                   progress=f"corrector n={args.n}")
    if not is_main_process():  # a data-parallel launch: the main process writes
        return {}
    with atomic_dir(args.out) as tmp:
        save_model(Path(tmp), model, args.domain, meta={"kind": "corrector", "n": args.n})
    tail = losses[-max(1, len(losses) // 10):]
    return {"final_loss": sum(tail) / len(tail), "parameters": sum(p.numel() for p in model.parameters())}


def main(argv: list[str] | None = None) -> int:
    p = parser("correct", DOC, seed=True, n=True)
    p.add_argument("--inverted", required=True, help="inverted noises .npz (from invert)")
    p.add_argument("--out", required=True, help="output corrector directory")
    return run_stage("correct", p, body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
