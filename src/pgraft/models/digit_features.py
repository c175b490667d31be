"""A small CNN classifier for 8x8 digits in [-1, 1]; its 64-d penultimate layer is the FID feature space."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class DigitClassifier(nn.Module):
    """conv-conv-avgpool-fc(64)-fc(num_classes) on (n, 1, 8, 8) images; `config` is saved next to the weights."""

    def __init__(self, num_classes: int = 10, channels: int = 16, feature_dim: int = 64, image_size: int = 8):
        super().__init__()
        self.config = {"num_classes": num_classes, "channels": channels, "feature_dim": feature_dim,
                       "image_size": image_size}
        self.image_size = image_size
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, padding=1)
        self.fc = nn.Linear(2 * channels * (image_size // 2) ** 2, feature_dim)
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The `feature_dim`-d ReLU activations before the classification head."""
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        h = F.avg_pool2d(h, 2).flatten(1)
        return F.relu(self.fc(h))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def train_digit_classifier(images: torch.Tensor, labels: torch.Tensor, steps: int = 500, lr: float = 2e-3,
                           batch_size: int = 64, generator: torch.Generator | None = None,
                           num_classes: int | None = None) -> DigitClassifier:
    """Train a DigitClassifier with Adam on float images (n, 1, 8, 8) in [-1, 1]; return it in eval mode."""
    images = torch.as_tensor(images, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must be (n, 1, H, W), got {tuple(images.shape)}")
    n_cls = int(num_classes if num_classes is not None else int(labels.max()) + 1)
    return fit_classifier(lambda: DigitClassifier(num_classes=n_cls, image_size=images.shape[-1]), images, labels,
                          steps, lr, batch_size, generator)


def fit_classifier(build, images: torch.Tensor, labels: torch.Tensor, steps: int, lr: float = 2e-3,
                   batch_size: int = 64, generator: torch.Generator | None = None) -> nn.Module:
    """Build a classifier with `build()` (its init drawn from `generator`), fit it with Adam and a cosine
    schedule on cross-entropy, return it frozen in eval mode."""
    images = torch.as_tensor(images, dtype=torch.float32)
    labels = torch.as_tensor(labels, dtype=torch.long)
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # parameter init drawn from `generator`, global RNG left untouched
        model = build()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(steps, 1))
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(images), (min(batch_size, len(images)),), generator=generator)
        loss = F.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class PixelMLPClassifier(nn.Module):
    """A two-hidden-layer MLP on the flattened pixels: a judge of a different architecture from the CNN."""

    def __init__(self, num_classes: int = 10, image_size: int = 8, hidden: int = 128):
        super().__init__()
        self.config = {"num_classes": num_classes, "image_size": image_size, "hidden": hidden}
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(image_size * image_size, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def model_from_config(config: dict) -> DigitClassifier:
    return DigitClassifier(**config)
