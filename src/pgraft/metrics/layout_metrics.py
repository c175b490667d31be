"""Layout-set metrics: maximum IoU against real layouts (LayoutGAN++) and the Fréchet distance of feature sets."""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (..., n, 4) with every box in b (..., m, 4), boxes as (xc, yc, w, h) -> (..., n, m)."""
    a, b = a[..., :, None, :], b[..., None, :, :]
    iw = np.minimum(a[..., 0] + a[..., 2] / 2, b[..., 0] + b[..., 2] / 2) - \
        np.maximum(a[..., 0] - a[..., 2] / 2, b[..., 0] - b[..., 2] / 2)
    ih = np.minimum(a[..., 1] + a[..., 3] / 2, b[..., 1] + b[..., 3] / 2) - \
        np.maximum(a[..., 1] - a[..., 3] / 2, b[..., 1] - b[..., 3] / 2)
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def layout_max_iou(classes: np.ndarray, boxes: np.ndarray, candidates: list[np.ndarray]) -> float:
    """Best matched IoU of one layout against candidate layouts with the same class multiset.

    For one pair (LayoutGAN++'s per-layout maxIoU): per class, match the boxes one-to-one by the Hungarian
    algorithm (scipy's linear_sum_assignment, maximising IoU); sum the matched IoUs over all classes and
    divide by the number of boxes. The result is the best pair over `candidates` (rows of boxes (k, n, 4)
    ordered like this layout's classes, see `max_iou`).
    """
    from scipy.optimize import linear_sum_assignment

    cand = np.asarray(candidates)  # (k, n, 4), candidate boxes grouped in the same class order
    total = np.zeros(len(cand))
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        ious = box_iou(boxes[idx][None], cand[:, idx])  # (k, n_c, n_c)
        for j, m in enumerate(ious):
            rows, cols = linear_sum_assignment(m, maximize=True)
            total[j] += m[rows, cols].sum()
    return float(total.max() / len(classes))


def max_iou(gen_classes: np.ndarray, gen_boxes: np.ndarray, gen_mask: np.ndarray, ref_classes: np.ndarray,
            ref_boxes: np.ndarray, ref_mask: np.ndarray, max_layouts: int = 200, max_candidates: int = 50,
            seed: int = 0) -> tuple[float, float]:
    """Maximum IoU of generated layouts against reference (test) layouts, after LayoutGAN++ (Kikuchi et al. 2021).

    Each of the first `max_layouts` generated layouts with at least one box is compared with the reference
    layouts that have exactly its class multiset: a seeded subsample of at most `max_candidates` of them
    (all, when fewer). Its score is the best `layout_max_iou` among them. LayoutGAN++ instead matches the
    two sets one-to-one within each multiset group; taking each layout's best match over a subsample is a
    cheaper, set-size-free variant of the same per-layout IoU. Layouts whose multiset no reference layout
    has are left out, as in LayoutGAN++. Returns (mean score of the matched layouts, matched fraction);
    (0, 0) when none matches.
    """
    rng = np.random.default_rng(seed)
    groups: dict[tuple, list[np.ndarray]] = {}
    for c, b, m in zip(ref_classes, ref_boxes, ref_mask):
        order = np.argsort(c[m], kind="stable")
        groups.setdefault(tuple(c[m][order]), []).append(b[m][order])
    scores, tried = [], 0
    for c, b, m in zip(gen_classes, gen_boxes, gen_mask):
        if tried == max_layouts:
            break
        if not m.any():
            continue
        tried += 1
        order = np.argsort(c[m], kind="stable")
        key = tuple(c[m][order])
        if key not in groups:
            continue
        cands = groups[key]
        if len(cands) > max_candidates:
            cands = [cands[i] for i in rng.choice(len(cands), max_candidates, replace=False)]
        scores.append(layout_max_iou(np.asarray(key), b[m][order], cands))
    if not scores:
        return 0.0, 0.0
    return float(np.mean(scores)), len(scores) / tried


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """Fréchet distance of Gaussians fitted to two feature sets (FID's formula, Heusel et al. 2017):

        |μ1 − μ2|² + tr Σ1 + tr Σ2 − 2 tr (Σ1^{1/2} Σ2 Σ1^{1/2})^{1/2},

    the trace term from the eigenvalues of the symmetric PSD matrix Σ1^{1/2} Σ2 Σ1^{1/2} (same value as
    tr (Σ1 Σ2)^{1/2}, numerically stable without scipy.linalg.sqrtm). 0 for identical feature sets.
    """
    f1 = np.asarray(f1, dtype=np.float64).reshape(len(f1), -1)
    f2 = np.asarray(f2, dtype=np.float64).reshape(len(f2), -1)
    if len(f1) < 2 or len(f2) < 2:
        raise ValueError(f"the Fréchet distance needs at least 2 samples per set, got {len(f1)} and {len(f2)}")
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.atleast_2d(np.cov(f1, rowvar=False)), np.atleast_2d(np.cov(f2, rowvar=False))
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    trace_sqrt = np.sqrt(np.clip(inner, 0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt, 0.0))
