"""Document layouts (PubLayNet-like box sets): a transformer denoiser, alignment/overlap rewards, maxIoU, FD."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from pgraft.domains.base import Cond, DiffusionDomain
from pgraft.domains.layout_data import CLASSES, NUM_FEATURES, decode, encode, generate_layouts, load_coco
from pgraft.params_base import PretrainParams, Strict

FEATURES_WEIGHTS = "layout_features.safetensors"
FEATURES_CONFIG = "layout_features.json"
_KIND = "layout_encoder"
#: colours of the classes in galleries (text, title, list, table, figure)
COLOURS = ("#4c72b0", "#c44e52", "#dd8452", "#55a868", "#8172b3")


class LayoutDataParams(Strict):
    path: str | None = None
    num_layouts: int = Field(20000, ge=10)
    max_boxes: int = Field(16, ge=2, le=128)
    seed: int = Field(0, ge=0)
    test_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0)


class LayoutModelParams(Strict):
    d_model: int = Field(48, ge=4)
    layers: int = Field(1, ge=1, le=16)
    heads: int = Field(2, ge=1)
    ff: int = Field(96, ge=4)

    @model_validator(mode="after")
    def _heads_divide(self) -> "LayoutModelParams":
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} must be a multiple of heads {self.heads}")
        return self


class LayoutRewardWeights(Strict):
    alignment: float = Field(1.0, ge=0.0)
    overlap: float = Field(1.0, ge=0.0)


class LayoutRewardParams(Strict):
    name: Literal["alignment", "overlap", "combined"] = "combined"
    weights: LayoutRewardWeights = LayoutRewardWeights()


class LayoutFeatureParams(Strict):
    steps: int = Field(400, ge=1)
    batch_size: int = Field(128, ge=2)
    d_model: int = Field(64, ge=4)
    layers: int = Field(2, ge=1, le=16)
    feature_dim: int = Field(32, ge=2)


class LayoutMetricParams(Strict):
    max_iou_layouts: int = Field(200, ge=1)
    max_iou_candidates: int = Field(50, ge=1)


class LayoutsParams(Strict):
    data: LayoutDataParams = LayoutDataParams()
    model: LayoutModelParams = LayoutModelParams()
    pretrain: PretrainParams = PretrainParams(steps=3000, batch_size=256, learning_rate=1e-3)
    reward: LayoutRewardParams = LayoutRewardParams()
    features: LayoutFeatureParams = LayoutFeatureParams()
    metrics: LayoutMetricParams = LayoutMetricParams()


class LayoutsDomain(DiffusionDomain):
    name = "layouts"
    Params = LayoutsParams
    gallery_size = 12
    table_metrics = ("alignment", "overlap", "num_boxes", "max_iou", "fd")

    def __init__(self, params):
        super().__init__(params)
        self._parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._aux_dir: Path | None = None  # where load_auxiliary found the FD feature network
        self._encoder = None  # that network, read on first use
        self._test_features: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.params.data.max_boxes, NUM_FEATURES)

    # --- data ---

    def layouts(self, part: str) -> tuple[np.ndarray, np.ndarray]:
        """The "train" or "test" layouts: classes (n, L) (-1 = padding) and boxes (n, L, 4) in [0, 1].

        data.path null: pages from the seeded generator, the test pages (a test_fraction of num_layouts) from
        their own stream of data.seed, so a stage that needs only one part generates only that part. Else
        the pages of that COCO JSON, split by a permutation seeded with data.split_seed. Built once per part.
        """
        if part not in ("train", "test"):
            raise ValueError(f"layouts part {part!r}: expected 'train' or 'test'")
        if part not in self._parts:
            d = self.params.data
            if d.path is None:
                n_test = max(1, int(round(d.test_fraction * d.num_layouts)))
                n = n_test if part == "test" else d.num_layouts - n_test
                if n < 1:
                    raise ValueError(f"layouts: data.num_layouts {d.num_layouts} leaves no training page after "
                                     f"test_fraction {d.test_fraction}")
                self._parts[part] = generate_layouts(n, d.max_boxes, seed=[d.seed, int(part == "test")])
            else:
                self._parts.update(self._split_file())
        return self._parts[part]

    def _split_file(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        d = self.params.data
        classes, boxes = load_coco(d.path, d.max_boxes)
        order = np.random.default_rng(d.split_seed).permutation(len(classes))
        n_test = max(1, int(round(d.test_fraction * len(classes))))
        if n_test >= len(classes):
            raise ValueError(f"{d.path}: {len(classes)} usable pages leave none for training after "
                             f"layouts.data.test_fraction {d.test_fraction}")
        test, train = order[:n_test], order[n_test:]
        return {"train": (classes[train], boxes[train]), "test": (classes[test], boxes[test])}

    def sample_data(self, n: int, generator):
        import torch

        x = torch.as_tensor(encode(*self.layouts("train")))
        return x[torch.randint(len(x), (n,), generator=generator)]

    # --- base model ---

    def build_model(self):
        from pgraft.models.layout_transformer import LayoutDenoiser

        m = self.params.model
        return LayoutDenoiser(NUM_FEATURES, d_model=m.d_model, layers=m.layers, heads=m.heads, ff=m.ff)

    def model_from_config(self, config: dict):
        from pgraft.models.layout_transformer import LayoutDenoiser

        return LayoutDenoiser(**config)

    # --- reward and metrics ---

    def reward(self, x: np.ndarray, cond: Cond = None) -> np.ndarray:
        """−(alignment), −(overlap) or −(w_a·alignment + w_o·overlap) of the decoded layouts (reward.name)."""
        from pgraft.rewards.layout import layout_reward

        r = self.params.reward
        _, boxes, mask = decode(x)
        return layout_reward(r.name, boxes, mask, r.weights.alignment, r.weights.overlap)

    def extra_metrics(self, x: np.ndarray, cond: Cond = None) -> dict[str, float]:
        """Layout metrics (docs/METRICS.md): mean alignment and overlap (lower is better) and maxIoU against
        all test layouts (with the fraction of layouts it pairs), as the LayoutGAN++ code computes them; the
        alignment the reward uses (alignment_no_padding) and the best-match maxIoU of the first
        metrics.max_iou_layouts layouts (max_iou_best_match, with its matched fraction); the mean number of
        boxes; and, once the feature network is loaded (load_auxiliary), the Fréchet distance to the test
        layouts in its feature space."""
        from pgraft.metrics.layout_metrics import alignment, alignment_no_padding, max_iou, max_iou_best_match
        from pgraft.rewards.layout import overlap

        classes, boxes, mask = decode(x)
        test_classes, test_boxes = self.layouts("test")
        test_mask = test_classes >= 0
        m = self.params.metrics
        miou, matched = max_iou(classes, boxes, mask, test_classes, test_boxes, test_mask)
        best, best_matched = max_iou_best_match(classes, boxes, mask, test_classes, test_boxes, test_mask,
                                                max_layouts=m.max_iou_layouts, max_candidates=m.max_iou_candidates)
        out = {"alignment": float(alignment(boxes, mask).mean()),
               "alignment_no_padding": float(alignment_no_padding(boxes, mask).mean()),
               "overlap": float(overlap(boxes, mask).mean()), "num_boxes": float(mask.sum(1).mean()),
               "max_iou": miou, "max_iou_matched": matched,
               "max_iou_best_match": best, "max_iou_best_match_matched": best_matched}
        if self._aux_dir is not None and len(x) >= 2:
            from pgraft.metrics.layout_metrics import frechet_distance

            out["fd"] = frechet_distance(self._features(classes, boxes), self.test_features())
        return out

    # --- auxiliary: the feature network of the Fréchet distance ---

    def train_auxiliary(self, out_dir: Path, generator) -> dict[str, float]:
        """Train the layout encoder on the train split, save it in out_dir (safetensors + JSON), and return
        its real-vs-corrupted accuracy on the test split."""
        import torch

        from pgraft.io import save_weights, write_json
        from pgraft.models.layout_features import real_accuracy, train_layout_encoder

        f = self.params.features
        (cls_tr, box_tr), (cls_te, box_te) = self.layouts("train"), self.layouts("test")
        net = train_layout_encoder(torch.as_tensor(cls_tr), torch.as_tensor(box_tr), len(CLASSES), f.steps,
                                   generator, batch_size=f.batch_size, d_model=f.d_model, layers=f.layers,
                                   feature_dim=f.feature_dim)
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_weights(out_dir / FEATURES_WEIGHTS, net.state_dict(), metadata={"kind": _KIND})
        write_json(out_dir / FEATURES_CONFIG, {"kind": _KIND, "model": net.config})
        acc = real_accuracy(net, torch.as_tensor(cls_te), torch.as_tensor(box_te), generator)
        return {"features_test_accuracy": acc}

    def load_auxiliary(self, aux_dir: Path) -> None:
        """Note where the feature network saved by train_auxiliary lies; it is read (with torch) only when
        extra_metrics first needs it, so the reward stage stays light. A missing file is reported now."""
        from pgraft.errors import ArtifactError

        aux_dir = Path(aux_dir)
        for name in (FEATURES_CONFIG, FEATURES_WEIGHTS):
            if not (aux_dir / name).is_file():
                raise ArtifactError(f"{aux_dir / name}: file not found (the layouts pretrain stage writes the "
                                    f"feature network there; rerun pretrain)")
        self._aux_dir, self._encoder, self._test_features = aux_dir, None, None

    def encoder(self):
        """The FD feature network from load_auxiliary's directory (None when none was given)."""
        if self._encoder is None and self._aux_dir is not None:
            from pgraft.errors import ArtifactError
            from pgraft.io import load_weights, read_json
            from pgraft.models.layout_features import model_from_config

            cfg = read_json(self._aux_dir / FEATURES_CONFIG)
            if not isinstance(cfg, dict) or cfg.get("kind") != _KIND or not isinstance(cfg.get("model"), dict):
                raise ArtifactError(f"{self._aux_dir / FEATURES_CONFIG}: not a layout-encoder config ({cfg!r:.200})")
            net = model_from_config(cfg["model"])
            try:
                net.load_state_dict(load_weights(self._aux_dir / FEATURES_WEIGHTS))
            except RuntimeError as err:
                raise ArtifactError(f"{self._aux_dir / FEATURES_WEIGHTS}: weights do not fit the model "
                                    f"({err})") from err
            self._encoder = net.eval().requires_grad_(False)
        return self._encoder

    def test_features(self) -> np.ndarray:
        if self._test_features is None:
            self._test_features = self._features(*self.layouts("test"))
        return self._test_features

    def _features(self, classes: np.ndarray, boxes: np.ndarray, batch: int = 1024) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = [self.encoder().features(torch.as_tensor(classes[s:s + batch]),
                                          torch.as_tensor(boxes[s:s + batch], dtype=torch.float32))
                   for s in range(0, len(classes), batch)]
        return torch.cat(out).numpy().astype(np.float64)

    # --- gallery ---

    def draw(self, ax, x: np.ndarray, cond: Cond = None, *, columns: int = 6) -> None:
        """Pages tiled in rows of `columns`: one rectangle per box, coloured by class, on a page outline."""
        from matplotlib.patches import Patch, Rectangle

        classes, boxes, mask = decode(x)
        aspect, pad = 1.3, 0.15  # page height / width (PubLayNet pages are portrait), gap between pages
        for i in range(len(x)):
            ox, oy = (i % columns) * (1 + pad), (i // columns) * (aspect + pad)
            ax.add_patch(Rectangle((ox, oy), 1, aspect, fill=False, edgecolor="0.3", linewidth=0.8))
            for c, (xc, yc, w, h) in zip(classes[i][mask[i]], boxes[i][mask[i]]):
                left, right = np.clip([xc - w / 2, xc + w / 2], 0, 1)  # drawn within the page
                top, bottom = np.clip([yc - h / 2, yc + h / 2], 0, 1)
                ax.add_patch(Rectangle((ox + left, oy + top * aspect), right - left, (bottom - top) * aspect,
                                       facecolor=COLOURS[c], edgecolor=COLOURS[c], alpha=0.45, linewidth=0.8))
        rows = max(1, -(-len(x) // columns))
        ax.set_xlim(-pad, min(len(x), columns) * (1 + pad))
        ax.set_ylim(rows * (aspect + pad), -pad)  # y grows downwards, as on a page
        ax.set_aspect("equal")
        ax.axis("off")
        ax.legend(handles=[Patch(color=COLOURS[i], alpha=0.6, label=n) for i, n in enumerate(CLASSES)],
                  loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(CLASSES), fontsize="small", frameon=False)


def save_gallery(domain: LayoutsDomain, x: np.ndarray, path: str | Path, title: str | None = None) -> Path:
    """Draw layouts with `domain.draw` and write them as a PNG at `path` (atomically)."""
    from matplotlib.figure import Figure  # no pyplot: no global backend state

    from pgraft.io import atomic_path

    fig = Figure(figsize=(12, 2.6 * max(1, -(-len(x) // 6))))
    ax = fig.add_subplot()
    domain.draw(ax, x)
    if title:
        ax.set_title(title)
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    return path
