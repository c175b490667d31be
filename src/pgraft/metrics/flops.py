"""FLOP counts of a call (torch.utils.flop_counter), sampling cost per generated image, and the training cost of
DDPO and GRAFT / P-GRAFT in denoiser forward passes."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def flops_per_call(fn, *args, **kwargs) -> int:
    """FLOPs of one call `fn(*args, **kwargs)` (a multiply-add counts as 2), without gradients."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn(*args, **kwargs)
    return int(counter.get_total_flops())


def flops_per_image(model: nn.Module, example_x: torch.Tensor, example_t: torch.Tensor, n_steps: int,
                    batch: int | None = None) -> float:
    """n_steps x FLOPs(model(x, t) on the example batch) / batch size: network cost of sampling one image."""
    batch = int(batch if batch is not None else example_x.shape[0])
    if batch <= 0 or n_steps < 0:
        raise ValueError(f"need batch > 0 and n_steps >= 0, got batch={batch}, n_steps={n_steps}")
    return n_steps * flops_per_call(model, example_x, example_t) / batch


#: a backward pass through the denoiser counts as two forward passes (the gradients with respect to the activations
#: and to the weights each cost about one forward; the usual convention): one training sample costs 1 + 2 forwards.
#: Optimizer updates, reward calls and the log-probability arithmetic are left out.
BACKWARD_FORWARDS = 2


def ddpo_training_flops(forward: float, *, evaluations: int, num_steps: int, policy_steps: int,
                        inner_epochs: int) -> float:
    """FLOPs of DDPO up to `evaluations` reward evaluations (trajectories): each trajectory is sampled (num_steps
    forwards) and replayed inner_epochs times by PPO (num_steps forwards, a backward through the policy_steps
    stochastic steps; a deterministic last step is run forward but gets no gradient). `forward`: FLOPs of one
    denoiser call on one sample."""
    replay = num_steps + BACKWARD_FORWARDS * policy_steps
    return float(forward) * evaluations * (num_steps + inner_epochs * replay)


def graft_training_flops(forward: float, *, rounds: int, samples_per_round: int, num_steps: int,
                         optimizer_steps: int, batch_size: int) -> float:
    """FLOPs of GRAFT / P-GRAFT: every round draws samples_per_round full trajectories (num_steps forwards each;
    P-GRAFT's stitched sampler runs its fine-tuned model for the first k steps and the base for the other N − k, N
    calls of the same network all the same), then the optimizer steps each take batch_size samples forward and
    backward (one denoiser call per sample). `forward`: FLOPs of one denoiser call on one sample."""
    sampling = rounds * samples_per_round * num_steps
    return float(forward) * (sampling + optimizer_steps * batch_size * (1 + BACKWARD_FORWARDS))
