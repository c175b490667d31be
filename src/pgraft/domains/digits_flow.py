"""Unconditional flow matching on scikit-learn's digits (or an image folder): the INC domain (docs/METHOD.md §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from pgraft.domains.base import Cond, FlowDomain
from pgraft.params_base import FeatureNetParams, PretrainParams, Strict


class FlowDataParams(Strict):
    path: str | None = None
    image_size: int = Field(8, ge=4, le=1024)
    channels: Literal[1, 3] = 1
    test_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0)


class FlowModelParams(Strict):
    block_out_channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=1)
    layers_per_block: int = Field(1, ge=1)
    checkpoint: str | None = None


class DigitsFlowParams(Strict):
    data: FlowDataParams = FlowDataParams()
    model: FlowModelParams = FlowModelParams()
    pretrain: PretrainParams = PretrainParams(steps=1000, batch_size=64, learning_rate=1e-3)
    features: FeatureNetParams = FeatureNetParams()


class DigitsFlowDomain(FlowDomain):
    name = "digits_flow"
    Params = DigitsFlowParams

    @property
    def shape(self) -> tuple[int, ...]:
        d = self.params.data
        return (d.channels, d.image_size, d.image_size)

    def dataset(self) -> tuple[np.ndarray, np.ndarray]:
        """All images, float32 (n, C, H, W) in [-1, 1], and integer labels: sklearn digits, or the images
        under data.path (labels: the index of each image's sub-folder, as in an ImageFolder layout)."""
        d = self.params.data
        if d.path is None:
            from sklearn.datasets import load_digits

            digits = load_digits()
            x = digits.images.astype(np.float32) / 16.0  # 8x8, values 0..16
            return (x[:, None] * 2 - 1).astype(np.float32), digits.target.astype(np.int64)
        return load_image_folder(Path(d.path), d.image_size, d.channels)

    def _split_index(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        order = np.random.default_rng(self.params.data.split_seed).permutation(n)
        n_test = max(1, int(round(self.params.data.test_fraction * n)))
        return order[n_test:], order[:n_test]

    def split(self) -> tuple[np.ndarray, np.ndarray]:
        """Disjoint train / held-out test images, by a fixed seeded permutation."""
        x, _ = self.dataset()
        train, test = self._split_index(len(x))
        return x[train], x[test]

    def labelled_train(self) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.dataset()
        train, _ = self._split_index(len(x))
        return x[train], y[train]

    def sample_data(self, n: int, generator):
        import torch

        train, _ = self.split()
        idx = torch.randint(len(train), (n,), generator=generator)
        return torch.as_tensor(train)[idx]

    def build_model(self):
        from pgraft.models.flow_unet import build_unet, from_pretrained

        m = self.params.model
        if m.checkpoint is not None:
            return from_pretrained(m.checkpoint)
        d = self.params.data
        return build_unet(d.image_size, d.channels, list(m.block_out_channels), m.layers_per_block)

    def model_from_config(self, config: dict):
        from pgraft.models.flow_unet import from_config

        return from_config(config)

    def reward(self, x: np.ndarray, cond: Cond = None) -> np.ndarray:
        """No reward: INC improves a flow model without one; defined for the protocol (mean intensity)."""
        return np.asarray(x, dtype=np.float64).reshape(len(x), -1).mean(axis=1)


def load_image_folder(path: Path, image_size: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Every PNG/JPEG under `path`, resized to image_size², as float32 (n, C, H, W) in [-1, 1], with the
    index of its sub-folder as label."""
    from PIL import Image, UnidentifiedImageError

    from pgraft.errors import ArtifactError

    if not path.is_dir():
        raise ArtifactError(f"data.path {path}: not a directory of images")
    files = sorted(p for p in path.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        raise ArtifactError(f"data.path {path}: no .png/.jpg/.jpeg images found")
    mode = "L" if channels == 1 else "RGB"
    folders = sorted({f.parent for f in files})
    labels = np.asarray([folders.index(f.parent) for f in files], dtype=np.int64)
    out = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert(mode).resize((image_size, image_size), Image.BILINEAR)
                a = np.asarray(im, dtype=np.float32) / 127.5 - 1.0
        except (UnidentifiedImageError, OSError) as err:
            raise ArtifactError(f"{f}: not a readable image ({err})") from err
        out.append(a[None] if channels == 1 else a.transpose(2, 0, 1))
    return np.stack(out).astype(np.float32), labels
