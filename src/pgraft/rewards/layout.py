"""Layout quality: alignment and overlap as LayoutGAN++ / LayoutDM define them (lower is better), and rewards."""

from __future__ import annotations

import numpy as np

from pgraft.registry import Registry

_CHUNK = 2048  # layouts per vectorised block (bounds memory at about _CHUNK·L²·6 floats)
_ALMOST_ONE = 1.0 - 1e-6  # keeps -log(1 - d) finite when two coordinates lie a whole page apart


def _edges(boxes: np.ndarray) -> np.ndarray:
    """(n, L, 4) boxes (xc, yc, w, h) -> (n, 6, L): left, x-centre, right, top, y-centre, bottom."""
    xc, yc, w, h = np.moveaxis(boxes, -1, 0)
    return np.stack([xc - w / 2, xc, xc + w / 2, yc - h / 2, yc, yc + h / 2], axis=1)


def alignment(boxes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-layout alignment score (LayoutGAN++, Kikuchi et al. 2021, eq. of §4.3; LayoutDM, Inoue et al. 2023):

        align(B) = (1/N) Σ_i g( min_{j≠i} min_{a ∈ {L, Cx, R, T, Cy, B}} |a_i − a_j| ),  g(d) = −log(1 − d),

    over the N present boxes of a layout, where a_i is box i's left / horizontal-centre / right / top /
    vertical-centre / bottom coordinate in page units [0, 1]. 0 when every box shares an edge or a centre
    line with another box. Padding slots are ignored on both sides of the min (the reference code masks
    only i); a layout with 0 or 1 boxes has no pair and scores 0, as in the reference code.
    """
    boxes, mask = np.asarray(boxes, dtype=np.float64), np.asarray(mask, dtype=bool)
    out = np.zeros(len(boxes))
    n_boxes = mask.sum(1)
    for s in range(0, len(boxes), _CHUNK):
        b, m = boxes[s:s + _CHUNK], mask[s:s + _CHUNK]
        e = _edges(b)
        d = np.abs(e[:, :, :, None] - e[:, :, None, :]).min(axis=1)  # (n, L_i, L_j): best of the 6 alignments
        invalid = ~(m[:, :, None] & m[:, None, :]) | np.eye(b.shape[1], dtype=bool)[None]
        d = np.where(invalid, np.inf, d).min(axis=2)  # nearest partner j ≠ i
        d = np.where(np.isfinite(d) & m, np.minimum(d, _ALMOST_ONE), 0.0)  # no partner: 0
        out[s:s + _CHUNK] = (-np.log1p(-d)).sum(1)
    return np.divide(out, n_boxes, out=np.zeros_like(out), where=n_boxes > 0)


def overlap(boxes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-layout overlap score (LayoutGAN++'s metric, from Attribute-conditioned Layout GAN §3.6.3):

        overlap(B) = (1/N) Σ_i Σ_{j≠i} area(b_i ∩ b_j) / area(b_i)

    over the N present boxes. 0 when no two boxes intersect. Padding slots and boxes of zero area (whose
    ratio the reference code turns from NaN into 0) contribute nothing; 0 or 1 boxes score 0.
    """
    boxes, mask = np.asarray(boxes, dtype=np.float64), np.asarray(mask, dtype=bool)
    out = np.zeros(len(boxes))
    n_boxes = mask.sum(1)
    for s in range(0, len(boxes), _CHUNK):
        b, m = boxes[s:s + _CHUNK], mask[s:s + _CHUNK]
        left, _, right, top, _, bottom = np.moveaxis(_edges(b), 1, 0)  # each (n, L)
        iw = np.minimum(right[:, :, None], right[:, None, :]) - np.maximum(left[:, :, None], left[:, None, :])
        ih = np.minimum(bottom[:, :, None], bottom[:, None, :]) - np.maximum(top[:, :, None], top[:, None, :])
        inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
        valid = (m[:, :, None] & m[:, None, :]) & ~np.eye(b.shape[1], dtype=bool)[None]
        area = (b[..., 2] * b[..., 3])[:, :, None]
        ratio = np.divide(inter, area, out=np.zeros_like(inter), where=valid & (area > 0))
        out[s:s + _CHUNK] = ratio.sum(axis=(1, 2))
    return np.divide(out, n_boxes, out=np.zeros_like(out), where=n_boxes > 0)


def combined(boxes: np.ndarray, mask: np.ndarray, alignment_weight: float = 1.0,
             overlap_weight: float = 1.0) -> np.ndarray:
    """Weighted sum of the two scores (lower is better)."""
    return alignment_weight * alignment(boxes, mask) + overlap_weight * overlap(boxes, mask)


#: name -> score (lower is better); the reward is its negative
SCORES: Registry = Registry("layout reward")
SCORES.register("alignment", lambda boxes, mask, **w: alignment(boxes, mask))
SCORES.register("overlap", lambda boxes, mask, **w: overlap(boxes, mask))
SCORES.register("combined", combined)


def layout_reward(name: str, boxes: np.ndarray, mask: np.ndarray, alignment_weight: float = 1.0,
                  overlap_weight: float = 1.0) -> np.ndarray:
    """Reward = −score (higher is better), finite for every layout (0 or 1 boxes included)."""
    return -SCORES.get(name)(boxes, mask, alignment_weight=alignment_weight, overlap_weight=overlap_weight)
