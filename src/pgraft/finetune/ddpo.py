"""DDPO (Black et al. 2023, "DDPO_IS"): PPO on the denoising MDP, the policy-gradient baseline.

Each iteration samples a batch of trajectories with the current model (stochastic DDIM, every step's
log-probability kept), scores the final samples, normalises the rewards per prompt into advantages
(clipped to ±adv_clip_max), then takes PPO steps: for each minibatch the clipped surrogate
max(−A·ρ, −A·clip(ρ, 1−ε, 1+ε)), ρ = exp(log π_θ − log π_old), averaged over all N steps, one
optimizer step per minibatch (the gradients of the N steps accumulated, as in the reference code).

The per-prompt normalisation is the reference code's PerPromptStatTracker (ddpo.stat_tracking): each prompt
keeps its last buffer_size rewards over iterations and its advantages are (r − mean) / (std + 1e-6) of that
buffer once it holds min_count rewards, else of the whole current batch. buffer_size 0 standardises each
prompt group by its own samples in the current batch alone (`advantages`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from pgraft.devices import device_of, is_main_process
from pgraft.finetune import parallel
from pgraft.finetune.parallel import DataParallel
from pgraft.samplers.ddim_logprob import ddim_step_with_logprob
from pgraft.samplers.schedule import Schedule


@dataclass
class Trajectories:
    states: torch.Tensor      # (N + 1, B, ...): x_T ... x_0
    log_probs: torch.Tensor   # (N, B): log π_old of each step
    cond: torch.Tensor | None  # (B, ...) conditioning rows (prompt tokens) or None


def _call(model: nn.Module, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    return model(x, t) if cond is None else model(x, t, cond)


@torch.no_grad()
def sample_trajectories(model: nn.Module, schedule: Schedule, x_T: torch.Tensor, cond: torch.Tensor | None,
                        eta: float, generator: torch.Generator, rows: slice = slice(None)) -> Trajectories:
    """Trajectories of the batch rows `rows` (all by default) on the model's device. Every step's noise is drawn
    for the whole batch x_T from the CPU generator, so each process of a data-parallel run draws the same stream."""
    device = device_of(model)
    timesteps = schedule.timesteps.to(device)
    x = x_T[rows].to(device)
    cond = None if cond is None else cond[rows].to(device)
    states, log_probs = [x], []
    for j, t in enumerate(schedule.timesteps):
        eps = _call(model, x, timesteps[j].expand(x.shape[0]), cond)
        noise = torch.randn(x_T.shape, generator=generator, dtype=x.dtype)[rows]
        x, lp = ddim_step_with_logprob(schedule, eps, int(t), x, eta, noise=noise)
        states.append(x)
        log_probs.append(lp)
    return Trajectories(torch.stack(states), torch.stack(log_probs), cond)


def advantages(rewards: np.ndarray, groups: np.ndarray, clip: float) -> np.ndarray:
    """Rewards standardised within each prompt's group (DDPO's per-prompt stat tracking), clipped."""
    adv = np.zeros(len(rewards), dtype=np.float64)
    for g in np.unique(groups):
        r = rewards[groups == g]
        adv[groups == g] = (r - r.mean()) / (r.std() + 1e-8)
    return np.clip(adv, -clip, clip)


class PerPromptStatTracker:
    """Reward statistics per prompt over iterations, as ddpo-pytorch's PerPromptStatTracker: a buffer of each
    prompt's last `buffer_size` rewards, extended with its rewards of every iteration before they are used."""

    def __init__(self, buffer_size: int, min_count: int):
        if buffer_size < 1 or not 1 <= min_count <= buffer_size:
            raise ValueError(f"need 1 <= min_count <= buffer_size, got buffer_size={buffer_size}, "
                             f"min_count={min_count}")
        self.buffer_size, self.min_count = buffer_size, min_count
        self.buffers: dict = {}

    def advantages(self, prompts: Sequence, rewards: np.ndarray) -> np.ndarray:
        """(r − mean) / (std + 1e-6) per prompt (unclipped): the statistics of the prompt's buffer once it holds
        min_count rewards (this iteration's included), else of the whole batch `rewards`."""
        keys = np.asarray(prompts)
        adv = np.empty(len(rewards), dtype=np.float64)
        for key in np.unique(keys):
            mine = keys == key
            buffer = self.buffers.setdefault(key.item(), deque(maxlen=self.buffer_size))
            buffer.extend(rewards[mine])
            ref = np.asarray(buffer) if len(buffer) >= self.min_count else rewards
            adv[mine] = (rewards[mine] - ref.mean()) / (ref.std() + 1e-6)
        return adv


def ppo_loss(new_log_prob: torch.Tensor, old_log_prob: torch.Tensor, adv: torch.Tensor, clip_range: float):
    ratio = torch.exp(new_log_prob - old_log_prob)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped).mean(), ratio


def ppo_update(model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Schedule, traj: Trajectories,
               adv: torch.Tensor, eta: float, clip_range: float, minibatch_size: int, max_grad_norm: float,
               generator: torch.Generator, par: DataParallel | None = None) -> dict[str, float]:
    """One pass over the batch in shuffled minibatches; returns mean loss and fraction of clipped ratios.

    With `par` (several processes, each holding the whole batch) each process takes its rows of every
    minibatch and the gradients are averaged over the processes before the optimizer step."""
    model.train()
    n = traj.states.shape[1]
    timesteps = schedule.timesteps.to(traj.states.device)
    perm = torch.randperm(n, generator=generator)
    losses, clipped = [], []
    for start in range(0, n, minibatch_size):
        idx = perm[start:start + minibatch_size]
        if par is not None:
            (idx,) = par.rows((idx,), len(idx), "ddpo.minibatch_size")
        cond = None if traj.cond is None else traj.cond[idx]
        optimizer.zero_grad(set_to_none=True)
        for j, t in enumerate(schedule.timesteps):
            x_t, x_prev = traj.states[j, idx], traj.states[j + 1, idx]
            eps = _call(model, x_t, timesteps[j].expand(len(idx)), cond)
            _, lp = ddim_step_with_logprob(schedule, eps, int(t), x_t, eta, prev_sample=x_prev)
            if not lp.requires_grad:  # a deterministic step: no policy there
                continue
            loss, ratio = ppo_loss(lp, traj.log_probs[j, idx], adv[idx], clip_range)
            (loss / len(schedule.timesteps)).backward()
            frac = ((ratio - 1).abs() > clip_range).float().mean()
            losses.append((loss if par is None else par.mean(loss)).item())
            clipped.append((frac if par is None else par.mean(frac)).item())
        if par is not None:
            par.average_gradients(model)
        nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
    model.eval()
    return {"loss": float(np.mean(losses)), "clip_fraction": float(np.mean(clipped))}


def train_ddpo(model: nn.Module, schedule: Schedule, shape: tuple[int, ...], reward: Callable,
               prompt_batch: Callable[[int], tuple[list | None, torch.Tensor | None, np.ndarray]], cfg,
               eta: float, generator: torch.Generator, on_checkpoint: Callable[[int, nn.Module], None],
               progress: str | None = None) -> list[dict]:
    """Run until the last of cfg.checkpoints reward evaluations; call on_checkpoint(evaluations, model).

    `prompt_batch(i)` gives iteration i's (prompts, cond rows, group ids) for its B trajectories;
    `reward(x0, prompts)` scores them. Advantages: per prompt over iterations (cfg.stat_tracking, buffer_size > 0)
    or per group of the batch (buffer_size 0). Returns one log record per iteration.

    The model runs on its own device. Under `accelerate launch` with P processes (finetune.parallel) each
    process samples and scores B/P of the trajectories (the same random stream as one process), the
    trajectories and rewards are gathered, and each PPO minibatch is split over the processes with the
    gradients averaged: the batch, minibatches and optimizer steps are those of the params.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.learning_rate)
    batch = cfg.prompts_per_batch * cfg.samples_per_prompt
    device = device_of(model)
    par = parallel.launched(device)
    rows = slice(None) if par is None else par.row_slice(batch, "ddpo.prompts_per_batch x ddpo.samples_per_prompt")
    iterations = range(cfg.checkpoints[-1] // batch)
    if progress and is_main_process():
        from tqdm import tqdm

        iterations = tqdm(iterations, desc=progress, unit="iter", leave=False)
    track = cfg.stat_tracking
    tracker = PerPromptStatTracker(track.buffer_size, track.min_count) if track.buffer_size else None
    log, evaluations = [], 0
    for i in iterations:
        prompts, cond, groups = prompt_batch(i)
        model.eval()
        traj = sample_trajectories(model, schedule, torch.randn((batch, *shape), generator=generator), cond, eta,
                                   generator, rows)
        r = np.asarray(reward(traj.states[-1].cpu().numpy(), None if prompts is None else prompts[rows]),
                       dtype=np.float64)
        if par is not None:  # every process gets the whole batch: its trajectories and rewards
            r = par.gather(torch.as_tensor(r, device=device)).cpu().numpy()
            traj = Trajectories(par.gather(traj.states.transpose(0, 1)).transpose(0, 1),
                                par.gather(traj.log_probs.transpose(0, 1)).transpose(0, 1),
                                None if cond is None else cond.to(device))
        evaluations += batch
        if tracker is None:
            adv = advantages(r, groups, cfg.adv_clip_max)
        else:  # keyed by prompt (by group where a domain has no prompts)
            adv = np.clip(tracker.advantages(groups if prompts is None else prompts, r), -cfg.adv_clip_max,
                          cfg.adv_clip_max)
        adv = torch.as_tensor(adv, dtype=torch.float32).to(device)
        stats = {}
        for _ in range(cfg.inner_epochs):
            stats = ppo_update(model, optimizer, schedule, traj, adv, eta, cfg.clip_range, cfg.minibatch_size,
                               cfg.max_grad_norm, generator, par)
        log.append({"iteration": i, "reward_evaluations": evaluations, "reward_mean": float(r.mean()), **stats})
        if evaluations in cfg.checkpoints:
            on_checkpoint(evaluations, model)
    return log
