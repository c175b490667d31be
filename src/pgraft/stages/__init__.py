"""Pipeline stages, one module each, run as `python -m pgraft.stages.<name>` or `pgraft <name>`."""

STAGES = ("pretrain", "sample", "reward", "filter", "finetune", "ddpo", "evaluate", "invert", "correct", "evaluate_flow",
          "aggregate", "figures")
