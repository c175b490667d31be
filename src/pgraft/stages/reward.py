"""Stage reward: score the final samples of the training set and the reference pool."""

from __future__ import annotations

from pgraft.runtime.runner import run_stage, stage_parser

DOC = "Compute the terminal reward r(x_0) of every sample (training groups and reference pool)."


def body(args, params) -> dict:
    import numpy as np
    import pandas as pd

    from pgraft import domains
    from pgraft.io import read_npz, write_table
    from pgraft.stages.common import auxiliary_dir
    from pgraft.workflows.artifacts import check_samples
    from pgraft.workflows.scoring import score_finite

    domain = domains.build(args.domain, params)
    domain.load_auxiliary(auxiliary_dir(args.model))
    frames = []
    for name, path in (("train", args.samples), ("reference", args.reference)):
        data = read_npz(path, required=("x0", "domain"))
        check_samples(path, data, domain)
        r = score_finite(domain, data["x0"], data.get("prompt"), path)
        frames.append(pd.DataFrame({"set": name, "index": np.arange(len(r)), "reward": r}))
    table = pd.concat(frames, ignore_index=True)
    write_table(args.out, table)
    train = table[table["set"] == "train"]["reward"]
    return {"reward_mean": float(train.mean()), "reward_std": float(train.std())}


def main(argv: list[str] | None = None) -> int:
    return run_stage("reward", stage_parser("reward", DOC), body, argv)


if __name__ == "__main__":
    raise SystemExit(main())
