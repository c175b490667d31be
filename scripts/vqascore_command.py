"""VQAScore as an external reward command (sd2.reward.name: subprocess): run it in an environment with t2v-metrics 3.0.

Usage (what pgraft calls): python vqascore_command.py <shard_dir> <scores.json> [--model clip-flant5-xxl]
Reads shard_*.npz (images uint8 (n, H, W, 3), prompts) in name order, writes a JSON list of scores.
params.yaml: sd2.reward.command: [/path/to/env/bin/python, scripts/vqascore_command.py]
"""

import argparse
import glob
import json
import os
import tempfile

import numpy as np
import t2v_metrics
from PIL import Image


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("shards")
    p.add_argument("out")
    p.add_argument("--model", default="clip-flant5-xxl")
    p.add_argument("--batch-size", type=int, default=16)
    args = p.parse_args()
    model = t2v_metrics.VQAScore(model=args.model)
    scores = []
    for path in sorted(glob.glob(os.path.join(args.shards, "shard_*.npz"))):
        with np.load(path, allow_pickle=False) as shard, tempfile.TemporaryDirectory() as tmp:
            pairs = []
            for i, (img, prompt) in enumerate(zip(shard["images"], shard["prompts"])):
                Image.fromarray(img).save(os.path.join(tmp, f"{i}.png"))
                pairs.append({"images": [os.path.join(tmp, f"{i}.png")], "texts": [str(prompt)]})
            scores += model.batch_forward(dataset=pairs, batch_size=args.batch_size).reshape(-1).tolist()
    with open(args.out, "w") as f:
        json.dump(scores, f)


if __name__ == "__main__":
    main()
