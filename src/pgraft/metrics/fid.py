"""FID through torch-fidelity in the 64-d feature space of a local digit classifier (nothing is downloaded)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from torch.nn import functional as F
from torch.utils.data import Dataset

from pgraft.errors import ArtifactError
from pgraft.io import load_weights, read_json, save_weights, write_json
from pgraft.models.digit_features import DigitClassifier, model_from_config

EXTRACTOR_NAME = "pgraft-digits"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
_KIND = "digit_classifier"
_DTYPES = {None: torch.float32, "float32": torch.float32, "float64": torch.float64}


def save_extractor(model: DigitClassifier, directory: str | os.PathLike) -> Path:
    """Write `model.safetensors` + `config.json` into `directory` (what `fid(..., extractor_dir)` reads)."""
    directory = Path(directory)
    save_weights(directory / WEIGHTS_FILE, model.state_dict(), metadata={"kind": _KIND})
    write_json(directory / CONFIG_FILE, {"kind": _KIND, "model": model.config})
    return directory


def load_extractor(directory: str | os.PathLike) -> DigitClassifier:
    """Rebuild the classifier from `config.json` and load its safetensors weights (eval mode, frozen)."""
    directory = Path(directory)
    cfg = read_json(directory / CONFIG_FILE)
    if not isinstance(cfg, dict) or cfg.get("kind") != _KIND or not isinstance(cfg.get("model"), dict):
        raise ArtifactError(f"{directory}/{CONFIG_FILE}: not a digit-classifier config ({cfg!r:.200})")
    model = model_from_config(cfg["model"])
    try:
        model.load_state_dict(load_weights(directory / WEIGHTS_FILE))
    except RuntimeError as err:
        raise ArtifactError(f"{directory}/{WEIGHTS_FILE}: weights do not fit the model ({err})") from err
    model.eval()
    model.requires_grad_(False)
    return model


def to_uint8(x) -> torch.Tensor:
    """Float images in [-1, 1] (tensor or array) -> uint8 in [0, 255] (clamped, rounded)."""
    x = torch.as_tensor(x, dtype=torch.float32)
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def _as_images(x) -> torch.Tensor:
    x = torch.as_tensor(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected uint8 images (N, 1|3, H, W), got {x.dtype} {tuple(x.shape)}")
    if len(x) < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {len(x)}")
    return x.contiguous()


class DigitFeatureExtractor(torch_fidelity.FeatureExtractorBase):
    """torch-fidelity extractor: uint8 (N, C, H, W) -> grayscale [-1, 1] at the classifier's size -> features."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None,
                 feature_extractor_internal_dtype=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"feature extractor {name!r} needs feature_extractor_weights_path: a directory "
                             f"written by pgraft.metrics.fid.save_extractor (nothing is downloaded)")
        if feature_extractor_internal_dtype not in _DTYPES:
            raise ValueError(f"feature_extractor_internal_dtype must be one of {sorted(map(str, _DTYPES))}")
        self.dtype = _DTYPES[feature_extractor_internal_dtype]
        self.model = load_extractor(feature_extractor_weights_path).to(self.dtype)
        self.requires_grad_(False)
        self.eval()

    @staticmethod
    def get_provided_features_list():
        return "features", "logits"

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits", "fid": "features", "kid": "features", "prc": "features"}[metric]

    @staticmethod
    def can_be_compiled():
        return True

    @staticmethod
    def get_dummy_input_for_compile():
        return (torch.rand([1, 1, 8, 8]) * 255).to(torch.uint8)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 1|3, H, W) -> the classifier's float input (N, 1, size, size) in [-1, 1]."""
        if not (torch.is_tensor(x) and x.dtype == torch.uint8 and x.dim() == 4 and x.shape[1] in (1, 3)):
            raise ValueError(f"expected uint8 images (N, 1|3, H, W), got {getattr(x, 'dtype', type(x))} "
                             f"{tuple(getattr(x, 'shape', ()))}")
        x = x.to(self.dtype)
        if x.shape[1] == 3:  # ITU-R 601 luma; equal channels map to themselves
            w = torch.tensor([0.299, 0.587, 0.114], dtype=self.dtype, device=x.device)
            x = (x * w[None, :, None, None]).sum(1, keepdim=True)
        x = x / 127.5 - 1.0
        size = self.model.image_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return x

    def forward(self, x):
        feats = self.model.features(self.preprocess(x))
        out = {"features": feats}
        if "logits" in self.features_list:
            out["logits"] = self.model.head(feats)
        return tuple(out[n].to(torch.float32) for n in self.features_list)


def register() -> None:
    """Register DigitFeatureExtractor under EXTRACTOR_NAME in torch-fidelity (idempotent)."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    existing = FEATURE_EXTRACTORS_REGISTRY.get(EXTRACTOR_NAME)
    if existing is DigitFeatureExtractor:
        return
    if existing is not None:
        if (existing.__module__, existing.__qualname__) != (__name__, DigitFeatureExtractor.__qualname__):
            raise ValueError(f"torch-fidelity extractor {EXTRACTOR_NAME!r} is already taken by {existing!r}")
        FEATURE_EXTRACTORS_REGISTRY[EXTRACTOR_NAME] = DigitFeatureExtractor  # this module was reloaded
        return
    torch_fidelity.register_feature_extractor(EXTRACTOR_NAME, DigitFeatureExtractor)


register()


class ImageDataset(Dataset):
    """A uint8 image tensor (N, C, H, W) as the torch Dataset that torch-fidelity takes as input."""

    def __init__(self, images: torch.Tensor):
        self.images = _as_images(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def fid(real_uint8, fake_uint8, extractor_dir: str | os.PathLike, batch_size: int = 256) -> float:
    """FID between two uint8 image sets (N, 1, 8, 8) or (N, 3, H, W) in the digit classifier's feature space."""
    register()
    directory = Path(extractor_dir)
    for f in (WEIGHTS_FILE, CONFIG_FILE):
        if not (directory / f).exists():
            raise ArtifactError(f"{directory / f}: file not found (write it with save_extractor first)")
    metrics = torch_fidelity.calculate_metrics(
        input1=ImageDataset(real_uint8), input2=ImageDataset(fake_uint8), fid=True,
        feature_extractor=EXTRACTOR_NAME, feature_extractor_weights_path=str(directory),
        cuda=torch.cuda.is_available(), batch_size=batch_size, verbose=False, cache=False,
        save_cpu_ram=True,  # no DataLoader worker processes
    )
    return float(metrics[torch_fidelity.KEY_METRIC_FID])


def fid_kid(real_uint8, fake_uint8, extractor_dir: str | os.PathLike, batch_size: int = 256,
            kid_subset_size: int = 1000, kid_subsets: int = 100) -> dict:
    """FID and KID (torch-fidelity's unbiased polynomial-kernel MMD², mean and std over `kid_subsets` random subsets
    of min(kid_subset_size, both set sizes) images) between two uint8 image sets in the classifier's feature space.
    KID is unbiased in the set sizes, so it compares sets of different sizes fairly; FID is biased upwards for
    small sets."""
    register()
    directory = Path(extractor_dir)
    for f in (WEIGHTS_FILE, CONFIG_FILE):
        if not (directory / f).exists():
            raise ArtifactError(f"{directory / f}: file not found (write it with save_extractor first)")
    real, fake = ImageDataset(real_uint8), ImageDataset(fake_uint8)
    metrics = torch_fidelity.calculate_metrics(
        input1=real, input2=fake, fid=True, kid=True, kid_subsets=kid_subsets,
        kid_subset_size=min(kid_subset_size, len(real), len(fake)),
        feature_extractor=EXTRACTOR_NAME, feature_extractor_weights_path=str(directory),
        cuda=torch.cuda.is_available(), batch_size=batch_size, verbose=False, cache=False, save_cpu_ram=True,
    )
    return {"fid": float(metrics[torch_fidelity.KEY_METRIC_FID]),
            "kid": float(metrics[torch_fidelity.KEY_METRIC_KID_MEAN]),
            "kid_std": float(metrics[torch_fidelity.KEY_METRIC_KID_STD])}


@torch.no_grad()
def extract_features(images_uint8, extractor_dir: str | os.PathLike, batch_size: int = 256) -> np.ndarray:
    """The same features torch-fidelity sees, computed directly (for checks and caching)."""
    extractor = DigitFeatureExtractor(EXTRACTOR_NAME, ["features"], feature_extractor_weights_path=str(extractor_dir))
    images = _as_images(images_uint8)
    out = [extractor(images[s:s + batch_size])[0] for s in range(0, len(images), batch_size)]
    return torch.cat(out).numpy()


def fid_from_features(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (float64, scipy.linalg.sqrtm)."""
    from scipy import linalg

    f1 = np.asarray(f1, dtype=np.float64).reshape(len(f1), -1)
    f2 = np.asarray(f2, dtype=np.float64).reshape(len(f2), -1)
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    with warnings.catch_warnings():  # dead ReLU units make the covariances singular; that is expected
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # near-singular product: regularise as pytorch-fid does
        eye = np.eye(len(s1)) * 1e-6
        covmean = linalg.sqrtm((s1 + eye) @ (s2 + eye))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))
