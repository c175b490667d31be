"""Fine-tuning: one training loop; pretraining, GRAFT and P-GRAFT differ only in their objective."""

from pgraft.finetune.loop import train
from pgraft.finetune.objectives import DenoisingObjective, TruncatedObjective

__all__ = ["train", "DenoisingObjective", "TruncatedObjective"]
