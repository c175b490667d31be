"""Document layouts: a seeded procedural page generator, a PubLayNet-style COCO loader, and the box-set encoding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: element classes, in PubLayNet's category order (ids 1..5)
CLASSES = ("text", "title", "list", "table", "figure")
#: features of one box slot: class one-hot, (x_center, y_center, w, h), presence
NUM_FEATURES = len(CLASSES) + 4 + 1

# generator: (probability, min height, max height) of a block inside a column, page-height units
_BLOCKS = {"text": (0.5, 0.05, 0.25), "title": (0.1, 0.015, 0.03), "list": (0.1, 0.06, 0.18),
           "table": (0.14, 0.1, 0.28), "figure": (0.16, 0.12, 0.32)}
_BLOCK_NAMES = list(_BLOCKS)
_BLOCK_CDF = np.cumsum([_BLOCKS[k][0] for k in _BLOCK_NAMES])[:-1]
_COLUMN_CDF = np.cumsum([0.45, 0.4])  # P(1 column), P(2 columns); 3 columns otherwise
_TEXT, _TITLE, _TABLE, _FIGURE = (CLASSES.index(k) for k in ("text", "title", "table", "figure"))


def generate_layouts(n: int, max_boxes: int, seed: int | list[int]) -> tuple[np.ndarray, np.ndarray]:
    """n synthetic pages: classes (n, L) int64 (-1 = padding) and boxes (n, L, 4) float32 (xc, yc, w, h) in [0, 1].

    Each page has one to three columns between shared left/right margins; blocks are stacked down each
    column with one gap per page, every block of a column shares its left edge (figures may be centred in
    the column), a page title and full-width figures/tables span the text width, and the last block of a
    column is cut to end at the bottom margin. Boxes are listed in reading order (column by column).
    `seed`: an integer or a list of integers (numpy SeedSequence entropy).
    """
    rng = np.random.default_rng(seed)
    classes = np.full((n, max_boxes), -1, dtype=np.int64)
    boxes = np.zeros((n, max_boxes, 4), dtype=np.float32)
    for i in range(n):
        page = _page(rng, max_boxes)
        for j, (c, left, top, w, h) in enumerate(page):
            classes[i, j] = c
            boxes[i, j] = (left + w / 2, top + h / 2, w, h)
    return classes, boxes


def _page(rng: np.random.Generator, max_boxes: int) -> list[tuple[int, float, float, float, float]]:
    u = rng.random  # plain draws in [0, 1): much faster than rng.choice / rng.uniform per call
    cols = 1 + int(np.searchsorted(_COLUMN_CDF, u(), side="right"))
    margin, top, bottom = 0.06 + 0.06 * u(), 0.05 + 0.05 * u(), 0.95 - 0.05 * u()
    gutter, gap = 0.02 + 0.03 * u(), 0.008 + 0.012 * u()
    width = 1 - 2 * margin
    col_w = (width - (cols - 1) * gutter) / cols
    out: list[tuple[int, float, float, float, float]] = []
    y = top
    if u() < 0.4:  # page title, left-aligned on the text block
        h, w = 0.03 + 0.03 * u(), width * (0.5 + 0.5 * u())
        out.append((_TITLE, margin, y, w, h))
        y += h + gap
    if cols > 1 and u() < 0.25:  # a figure or table spanning every column
        h = 0.15 + 0.15 * u()
        out.append((_FIGURE if u() < 0.5 else _TABLE, margin, y, width, h))
        y += h + gap
    for c in range(cols):
        left, yc = margin + c * (col_w + gutter), y
        while len(out) < max_boxes:
            name = _BLOCK_NAMES[int(np.searchsorted(_BLOCK_CDF, u(), side="right"))]
            lo, hi = _BLOCKS[name][1:]
            h = (lo + (hi - lo) * u()) * (1 + 0.3 * (cols - 1))  # narrower columns hold taller blocks
            if yc + h > bottom:  # fill the rest of the column with text, ending at the bottom margin
                if bottom - yc >= 0.04:
                    out.append((_TEXT, left, yc, col_w, bottom - yc))
                break
            w, x = col_w, left
            if name == "title":  # section heading: left-aligned, shorter than the column
                w = col_w * (0.3 + 0.5 * u())
            elif name == "figure" and u() < 0.5:  # a narrower figure centred in its column
                w = col_w * (0.5 + 0.4 * u())
                x = left + (col_w - w) / 2
            out.append((CLASSES.index(name), x, yc, w, h))
            yc += h + gap
    return out[:max_boxes]


def load_coco(path: str | Path, max_boxes: int) -> tuple[np.ndarray, np.ndarray]:
    """Layouts from a PubLayNet-style COCO JSON: `images` (id, width, height), `annotations` (image_id,
    category_id, bbox [x, y, w, h] in pixels from the top-left corner) and `categories` (id, name; names
    from CLASSES). Returns classes (n, L) and boxes (n, L, 4) as `generate_layouts` does. Pages with no
    annotation or with more than `max_boxes` are skipped (as LayoutGAN++ drops pages over its limit)."""
    from pgraft.errors import ArtifactError

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"layouts.data.path {path}: file not found (expected a COCO JSON of layouts)")
    try:
        coco = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{path}: not valid JSON ({err})") from err
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(coco, dict) or k not in coco]
    if missing:
        raise ArtifactError(f"{path}: a COCO layout file needs the lists 'images', 'annotations' and "
                            f"'categories'; missing {missing}")
    try:
        names = {c["id"]: str(c["name"]).lower() for c in coco["categories"]}
    except (KeyError, TypeError) as err:
        raise ArtifactError(f"{path}: malformed 'categories' ({err}); expected entries with id and name") from err
    unknown = sorted(set(names.values()) - set(CLASSES))
    if unknown:
        raise ArtifactError(f"{path}: unknown categories {unknown}; expected names from {list(CLASSES)}")
    try:
        pages = {im["id"]: (float(im["width"]), float(im["height"]), []) for im in coco["images"]}
        for a in coco["annotations"]:
            width, height, items = pages[a["image_id"]]
            x, y, w, h = (float(v) for v in a["bbox"])
            items.append((CLASSES.index(names[a["category_id"]]),
                          ((x + w / 2) / width, (y + h / 2) / height, w / width, h / height)))
    except (KeyError, TypeError, ValueError) as err:
        raise ArtifactError(f"{path}: malformed COCO entry ({type(err).__name__}: {err}); expected images "
                            f"(id, width, height), annotations (image_id, category_id, bbox) and categories "
                            f"(id, name)") from err
    kept = [sorted(items, key=lambda it: (it[1][1], it[1][0]))  # reading order: top to bottom, left to right
            for _, (_, _, items) in sorted(pages.items()) if 0 < len(items) <= max_boxes]
    if not kept:
        raise ArtifactError(f"{path}: no page with 1..{max_boxes} annotations (layouts.data.max_boxes)")
    classes = np.full((len(kept), max_boxes), -1, dtype=np.int64)
    boxes = np.zeros((len(kept), max_boxes, 4), dtype=np.float32)
    for i, items in enumerate(kept):
        for j, (c, box) in enumerate(items):
            classes[i, j], boxes[i, j] = c, np.clip(box, 0.0, 1.0)
    return classes, boxes


def encode(classes: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(n, L) classes and (n, L, 4) boxes in [0, 1] -> (n, L, NUM_FEATURES) float32 in [-1, 1]:
    class one-hot as ±1, box coordinates 2v-1, presence ±1; padding slots are 0 except presence -1."""
    present = classes >= 0
    onehot = np.where(np.arange(len(CLASSES)) == classes[..., None], 1.0, -1.0)
    x = np.concatenate([onehot, 2.0 * boxes - 1.0, np.ones(classes.shape + (1,))], axis=-1)
    x[~present] = 0.0
    x[~present, -1] = -1.0
    return x.astype(np.float32)


def decode(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, L, NUM_FEATURES) -> classes (n, L) (argmax, -1 where absent), boxes (n, L, 4) clipped to [0, 1],
    and the presence mask (n, L): a slot is a box when its presence channel is positive."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[-1] != NUM_FEATURES:
        raise ValueError(f"layouts must have shape (n, L, {NUM_FEATURES}), got {x.shape}")
    k = len(CLASSES)
    mask = x[..., -1] > 0
    classes = np.where(mask, x[..., :k].argmax(-1), -1)
    boxes = np.clip((x[..., k:k + 4] + 1.0) / 2.0, 0.0, 1.0)
    return classes, boxes, mask
