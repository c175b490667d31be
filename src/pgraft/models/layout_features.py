"""A layout encoder whose summary token is the layout Fréchet distance's feature space (as LayoutGAN++'s FID net)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from pgraft.models.layout_transformer import SetBlock


class LayoutEncoder(nn.Module):
    """SetBlocks (a transformer) over the present boxes (class one-hot + box) plus a learned summary token, whose output
    (`features`, feature_dim) feeds two heads: a real-vs-corrupted logit and a reconstruction of the layout
    in reading order (per slot: class or padding, and box), as LayoutGAN++'s FID network does."""

    def __init__(self, num_classes: int = 5, max_boxes: int = 16, d_model: int = 64, layers: int = 2,
                 heads: int = 4, feature_dim: int = 32):
        super().__init__()
        self.config = {"num_classes": num_classes, "max_boxes": max_boxes, "d_model": d_model, "layers": layers,
                       "heads": heads, "feature_dim": feature_dim}
        self.num_classes, self.max_boxes = num_classes, max_boxes
        self.inp = nn.Linear(num_classes + 4, d_model)
        self.summary = nn.Parameter(torch.zeros(1, 1, d_model))
        self.blocks = nn.ModuleList(SetBlock(d_model, heads, 2 * d_model) for _ in range(layers))
        self.proj = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, feature_dim))
        self.real_head = nn.Linear(feature_dim, 1)
        self.slots = nn.Parameter(0.02 * torch.randn(max_boxes, d_model))
        self.decoder = nn.Sequential(nn.Linear(feature_dim + d_model, d_model), nn.SiLU(),
                                     nn.Linear(d_model, num_classes + 1 + 4))

    def features(self, classes: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """(n, L) class ids (-1: padding) and (n, L, 4) boxes in [0, 1] -> (n, feature_dim).

        The summary token is never masked, so a layout with no box still has features."""
        present = classes >= 0
        onehot = F.one_hot(classes.clamp(min=0), self.num_classes).float() * present[..., None]
        tokens = self.inp(torch.cat([onehot, boxes.float()], dim=-1))
        h = torch.cat([self.summary.expand(len(tokens), -1, -1), tokens], dim=1)
        pad = torch.cat([torch.zeros_like(present[:, :1]), ~present], dim=1)
        for block in self.blocks:
            h = block(h, padding=pad)
        return self.proj(h[:, 0])

    def forward(self, classes: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Real-vs-corrupted logits (n,) and the reconstruction (n, max_boxes, classes + 1 + 4): logits of
        each slot's class (the last one: padding) and its box."""
        f = self.features(classes, boxes)
        slots = torch.cat([f[:, None].expand(-1, self.max_boxes, -1),
                           self.slots[None].expand(len(f), -1, -1)], dim=-1)
        return self.real_head(f).squeeze(-1), self.decoder(slots)


def corrupt(classes: torch.Tensor, boxes: torch.Tensor, num_classes: int,
            generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupted copies of real layouts: every box jittered by Gaussian noise of a per-layout scale drawn
    uniformly in [0.01, 0.1] page units, and each box relabelled to a random class with probability 0.1."""
    n = len(classes)
    scale = 0.01 + 0.09 * torch.rand((n, 1, 1), generator=generator)
    boxes = (boxes + scale * torch.randn(boxes.shape, generator=generator)).clamp(0.0, 1.0)
    relabel = (torch.rand(classes.shape, generator=generator) < 0.1) & (classes >= 0)
    other = torch.randint(0, num_classes, classes.shape, generator=generator)
    return torch.where(relabel, other, classes), boxes


def train_layout_encoder(classes: torch.Tensor, boxes: torch.Tensor, num_classes: int, steps: int,
                         generator: torch.Generator, batch_size: int = 128, lr: float = 2e-3,
                         **config) -> LayoutEncoder:
    """Train a LayoutEncoder (Adam, cosine schedule) on real layouts (classes (n, L), boxes (n, L, 4), in
    reading order): tell them from `corrupt`ed copies, and reconstruct them from their features.
    Parameter init is drawn from `generator`. Returns the network in eval mode, frozen."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # init from `generator`; the global RNG is left untouched
        model = LayoutEncoder(num_classes=num_classes, max_boxes=classes.shape[1], **config)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    model.train()
    half = max(1, batch_size // 2)
    real = torch.cat([torch.ones(half), torch.zeros(half)])
    for _ in range(steps):
        idx = torch.randint(0, len(classes), (2 * half,), generator=generator)
        c_real, b_real = classes[idx[:half]], boxes[idx[:half]]
        c_fake, b_fake = corrupt(classes[idx[half:]], boxes[idx[half:]], num_classes, generator)
        logit, rec = model(torch.cat([c_real, c_fake]), torch.cat([b_real, b_fake]))
        rec, present = rec[:half], c_real >= 0
        target = torch.where(present, c_real, num_classes)  # the last class is "padding"
        loss = (F.binary_cross_entropy_with_logits(logit, real)
                + F.cross_entropy(rec[..., :num_classes + 1].reshape(-1, num_classes + 1), target.reshape(-1))
                + 10.0 * F.mse_loss(rec[..., num_classes + 1:][present], b_real[present]))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    model.requires_grad_(False)
    return model


@torch.no_grad()
def real_accuracy(model: LayoutEncoder, classes: torch.Tensor, boxes: torch.Tensor,
                  generator: torch.Generator) -> float:
    """Accuracy of the real-vs-corrupted head on held-out layouts and corrupted copies of them."""
    c_fake, b_fake = corrupt(classes, boxes, model.num_classes, generator)
    hits = (model(classes, boxes)[0] > 0).float().sum() + (model(c_fake, b_fake)[0] <= 0).float().sum()
    return float(hits / (2 * len(classes)))


def model_from_config(config: dict) -> LayoutEncoder:
    return LayoutEncoder(**config)
