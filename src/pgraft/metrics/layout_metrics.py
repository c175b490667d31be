"""Layout-set metrics: alignment and maximum IoU as LayoutGAN++ computes them, today's variants, Fréchet distance."""

from __future__ import annotations

import numpy as np

from pgraft.rewards.layout import _edges  # the six box coordinates, shared with the reward's alignment
from pgraft.rewards.layout import alignment as reward_alignment

_CHUNK = 2048  # layouts per vectorised block of alignment (about _CHUNK·L²·6 floats)
#: gen-rows x ref-columns x boxes² IoU values computed at once by max_iou (bounds its memory to about 100 MB)
_IOU_BLOCK = 1 << 22


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


def alignment(boxes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-layout alignment as the LayoutGAN++ code computes it (const_layout `metric.py` compute_alignment,
    LayoutDM's "alignment-LayoutGAN++"; after Attribute-conditioned Layout GAN §3.6.4), lower is better:

        align(B) = (1/N) Σ_{i present} g( min_{j≠i} min_{a ∈ {L, Cx, R, T, Cy, B}} |a_i − a_j| ),
        g(d) = −log(1 − d),

    over the N present boxes of a layout (boxes (n, L, 4) as (xc, yc, w, h) in page units, mask (n, L)).
    The partners j are all the other L − 1 slots, padding included, and a padding slot is the zero box
    (0, 0, 0, 0), as in the reference's batches (torch_geometric's to_dense_batch pads with zeros): a box
    thus also aligns with the page's top-left corner, d ≤ min(left, top), whatever the padding slots hold.
    A nearest distance of 1 counts 0, the reference's masking value (so a one-box layout without padding
    slots scores 0; with centres in [0, 1], d never exceeds 1). No box: 0 (LayoutDM's convention; the
    reference divides 0 by 0). The published tables print 100 × the mean over layouts.
    """
    mask = np.asarray(mask, dtype=bool)
    boxes = np.where(mask[..., None], np.asarray(boxes, dtype=np.float64), 0.0)
    slots = np.arange(boxes.shape[1])
    out = np.zeros(len(boxes))
    for s in range(0, len(boxes), _CHUNK):
        e = _edges(boxes[s:s + _CHUNK])
        d = np.abs(e[:, :, :, None] - e[:, :, None, :]).min(axis=1)  # (n, L_i, L_j): best of the 6 alignments
        d[:, slots, slots] = 1.0  # a box is not its own partner
        d = d.min(axis=2)
        d = np.where(mask[s:s + _CHUNK] & (d < 1.0), d, 0.0)
        out[s:s + _CHUNK] = (-np.log1p(-d)).sum(1)
    n_boxes = mask.sum(1)
    return np.divide(out, n_boxes, out=np.zeros_like(out), where=n_boxes > 0)


def alignment_no_padding(boxes: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The same score with present boxes only as partners (0 for a layout of 0 or 1 boxes): the alignment
    that the layouts reward uses (pgraft.rewards.layout.alignment), reported so that the optimised quantity
    is seen next to the published one, which also rewards boxes on the page's top or left edge."""
    return reward_alignment(boxes, mask)


def _by_multiset(classes: np.ndarray, boxes: np.ndarray, mask: np.ndarray) -> dict[tuple, np.ndarray]:
    """Layouts with at least one box grouped by class multiset: sorted classes -> boxes (k, n, 4) in that order."""
    groups: dict[tuple, list[np.ndarray]] = {}
    for c, b, m in zip(classes, boxes, mask):
        if m.any():
            order = np.argsort(c[m], kind="stable")
            groups.setdefault(tuple(c[m][order].tolist()), []).append(b[m][order])
    return {key: np.stack(v).astype(np.float64) for key, v in groups.items()}


def _pair_scores(key: tuple, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) per-pair maxIoU of layouts a (N, n, 4) and b (M, n, 4) sharing the sorted class multiset `key`:
    per class, the boxes matched one-to-one maximising their summed IoU (scipy's linear_sum_assignment);
    those sums added over the classes and divided by the number of boxes n."""
    from scipy.optimize import linear_sum_assignment

    key = np.asarray(key)
    total = np.zeros((len(a), len(b)))
    for c in np.unique(key):
        idx = np.flatnonzero(key == c)
        rows = max(1, _IOU_BLOCK // (len(b) * len(idx) ** 2))
        for s in range(0, len(a), rows):
            iou = box_iou(a[s:s + rows, None, idx], b[None, :, idx])  # (rows, M, n_c, n_c)
            if len(idx) == 1:
                total[s:s + rows] += iou[..., 0, 0]
                continue
            flat = iou.reshape(-1, len(idx), len(idx))
            best = [m[linear_sum_assignment(m, maximize=True)].sum() for m in flat]
            total[s:s + rows] += np.reshape(best, iou.shape[:2])
    return total / len(key)


def max_iou(gen_classes: np.ndarray, gen_boxes: np.ndarray, gen_mask: np.ndarray, ref_classes: np.ndarray,
            ref_boxes: np.ndarray, ref_mask: np.ndarray) -> tuple[float, float]:
    """Maximum IoU of a generated set against a reference set of layouts as the LayoutGAN++ code computes it
    (Kikuchi et al. 2021; const_layout `metric.py` compute_maximum_iou, reused by LayoutDM), higher is better.

    Layouts are grouped by class multiset. In a group that both sets have, every generated layout is scored
    against every reference layout (`_pair_scores`), and the two groups are matched one-to-one maximising
    the summed score (scipy's linear_sum_assignment), which pairs min(N, M) layouts. The result is the mean
    score over the pairs of all groups: layouts whose multiset the other set lacks, and the surplus of the
    larger side of a group, do not count. Layouts without a box are left out (the reference divides by zero
    there). The reference code builds a group's (N, M) score matrix from np.meshgrid's (M, N) order, which is
    the (transposed) pair matrix only when N = M; for N ≠ M its assignment does not pair layouts one-to-one.
    Here the pairs are always one-to-one, equal to the reference whenever every shared group has the same size
    in both sets (as in LayoutGAN++'s protocol, one generated layout per test layout's classes).
    Returns (mean score, pairs / generated layouts with a box); (0, 0) without any pair.
    """
    from scipy.optimize import linear_sum_assignment

    gen, ref = _by_multiset(gen_classes, gen_boxes, gen_mask), _by_multiset(ref_classes, ref_boxes, ref_mask)
    scores = []
    for key in sorted(gen.keys() & ref.keys()):
        pair = _pair_scores(key, gen[key], ref[key])
        scores.append(pair[linear_sum_assignment(pair, maximize=True)])
    if not scores:
        return 0.0, 0.0
    scores = np.concatenate(scores)
    return float(scores.mean()), len(scores) / sum(len(v) for v in gen.values())


def layout_max_iou(classes: np.ndarray, boxes: np.ndarray, candidates: list[np.ndarray]) -> float:
    """Best matched IoU of one layout against candidate layouts with the same class multiset.

    For one pair (LayoutGAN++'s per-layout maxIoU): per class, match the boxes one-to-one by the Hungarian
    algorithm (scipy's linear_sum_assignment, maximising IoU); sum the matched IoUs over all classes and
    divide by the number of boxes. The result is the best pair over `candidates` (rows of boxes (k, n, 4)
    ordered like this layout's classes, see `max_iou_best_match`).
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


def max_iou_best_match(gen_classes: np.ndarray, gen_boxes: np.ndarray, gen_mask: np.ndarray,
                       ref_classes: np.ndarray, ref_boxes: np.ndarray, ref_mask: np.ndarray, max_layouts: int = 200,
                       max_candidates: int = 50, seed: int = 0) -> tuple[float, float]:
    """Mean best-match IoU of generated layouts against reference (test) layouts: a cheaper variant of
    LayoutGAN++'s maxIoU (`max_iou`), kept because earlier results of this pipeline report it, whose cost
    does not grow with the set sizes.

    Each of the first `max_layouts` generated layouts with at least one box is compared with the reference
    layouts that have exactly its class multiset: a seeded subsample of at most `max_candidates` of them
    (all, when fewer). Its score is the best `layout_max_iou` among them: no one-to-one matching between
    the sets, so several generated layouts may take the same reference layout and the score runs higher
    than `max_iou`'s on sets of equal size. Layouts whose multiset no reference layout has are left out,
    as in LayoutGAN++. Returns (mean score of the matched layouts, matched fraction); (0, 0) when none
    matches.
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
