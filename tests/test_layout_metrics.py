"""Layout metrics as the LayoutGAN++ code computes them (alignment with padding partners, one-to-one maxIoU),
checked against values worked out by hand, next to today's variants (alignment_no_padding, max_iou_best_match)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pgraft.metrics.layout_metrics import alignment, alignment_no_padding, max_iou, max_iou_best_match


def g(d: float) -> float:
    """The alignment penalty of a nearest distance d."""
    return -math.log(1 - d)


def page(*boxes, size: int = 4, junk: float = 0.5):
    """One layout (batch of 1) from (xc, yc, w, h) boxes, padded to `size` slots holding `junk` boxes."""
    b = np.full((1, size, 4), junk)
    m = np.zeros((1, size), dtype=bool)
    for i, box in enumerate(boxes):
        b[0, i], m[0, i] = box, True
    return b, m


def layouts(*pages, size: int = 3):
    """A set of layouts from pages given as [(class, (xc, yc, w, h)), ...]: classes, boxes, mask (junk padding)."""
    classes = np.full((len(pages), size), -1)
    boxes = np.full((len(pages), size, 4), 0.5)
    for i, p in enumerate(pages):
        for j, (c, box) in enumerate(p):
            classes[i, j], boxes[i, j] = c, box
    return classes, boxes, classes >= 0


# --- alignment ---

def test_a_single_box_aligns_with_the_padding_zero_box():
    # box [0.4, 0.6] x [0.3, 0.5]: left 0.4, x-centre 0.5, right 0.6, top 0.3, y-centre 0.4, bottom 0.5.
    # Its only partners are the padding slots, the zero box (every coordinate 0): nearest distance
    # min(0.4, 0.5, 0.6, 0.3, 0.4, 0.5) = 0.3 -> alignment g(0.3) = -log 0.7 = 0.3567.
    b, m = page((0.5, 0.4, 0.2, 0.2))
    assert alignment(b, m)[0] == pytest.approx(g(0.3))
    assert alignment_no_padding(b, m)[0] == 0.0  # no partner at all: 0


def test_a_single_box_without_padding_slots_scores_zero():
    # one slot only: no partner j != i, the reference's masking value 1 remains -> counted as 0
    b, m = page((0.5, 0.4, 0.2, 0.2), size=1)
    assert alignment(b, m)[0] == 0.0


def test_a_box_on_the_top_left_margin_is_aligned_with_the_padding():
    # box [0, 0.4] x [0.3, 0.5]: left edge 0 equals the zero box's coordinates -> distance 0 -> 0
    b, m = page((0.2, 0.4, 0.4, 0.2))
    assert alignment(b, m)[0] == pytest.approx(0.0, abs=1e-12)


def test_left_aligned_boxes_score_zero_with_or_without_padding():
    # both left edges at x = 0.1: each box's nearest distance is 0 (the padding can only lower it)
    b, m = page((0.3, 0.2, 0.4, 0.1), (0.4, 0.6, 0.6, 0.2))
    assert alignment(b, m)[0] == pytest.approx(0.0, abs=1e-12)
    assert alignment_no_padding(b, m)[0] == pytest.approx(0.0, abs=1e-12)


def test_unaligned_boxes_take_the_nearer_of_box_and_padding():
    # A = [0.1, 0.3] x [0.1, 0.2] (left 0.1, xc 0.2, right 0.3, top 0.1, yc 0.15, bottom 0.2),
    # B = [0.55, 0.85] x [0.5, 0.8] (left 0.55, xc 0.7, right 0.85, top 0.5, yc 0.65, bottom 0.8).
    # A-B per coordinate: 0.45, 0.5, 0.55, 0.4, 0.5, 0.6 -> 0.4 for both.
    # To the zero box: A min(0.1, ..., 0.2) = 0.1, B min(0.55, 0.7, 0.85, 0.5, 0.65, 0.8) = 0.5.
    # Nearest: A 0.1, B min(0.4, 0.5) = 0.4 -> (g(0.1) + g(0.4)) / 2 = 0.3081.
    b, m = page((0.2, 0.15, 0.2, 0.1), (0.7, 0.65, 0.3, 0.3))
    assert alignment(b, m)[0] == pytest.approx((g(0.1) + g(0.4)) / 2)
    # without padding partners both boxes have only each other: g(0.4) = 0.5108
    assert alignment_no_padding(b, m)[0] == pytest.approx(g(0.4))
    # two slots, both present: no padding, the two definitions agree
    b2, m2 = page((0.2, 0.15, 0.2, 0.1), (0.7, 0.65, 0.3, 0.3), size=2)
    assert alignment(b2, m2)[0] == pytest.approx(g(0.4))


def test_alignment_reads_padding_as_zero_boxes_whatever_the_slots_hold():
    # same page, junk of 0.5 / 0.9 / 0 in the padding slots: the padding is always the zero box
    values = [alignment(*page((0.2, 0.15, 0.2, 0.1), (0.7, 0.65, 0.3, 0.3), junk=j))[0] for j in (0.5, 0.9, 0.0)]
    assert values == pytest.approx([(g(0.1) + g(0.4)) / 2] * 3)


def test_alignment_of_an_empty_page_is_zero_and_pages_are_scored_independently():
    b0, m0 = page()
    b1, m1 = page((0.5, 0.4, 0.2, 0.2))
    out = alignment(np.concatenate([b0, b1]), np.concatenate([m0, m1]))
    assert out[0] == 0.0 and out[1] == pytest.approx(g(0.3))


# --- maximum IoU ---

P = (0.5, 0.5, 0.4, 0.4)    # [0.3, 0.7]^2, area 0.16
Q = (0.6, 0.5, 0.4, 0.4)    # [0.4, 0.8] x [0.3, 0.7]; P ∩ Q = 0.3 x 0.4 = 0.12, union 0.20 -> IoU(P, Q) = 0.6
FAR = (0.1, 0.1, 0.1, 0.1)  # [0.05, 0.15]^2: disjoint from P and Q
S = (0.5, 0.9, 0.8, 0.1)    # a second class's box


def test_max_iou_of_one_pair_of_single_box_layouts_is_their_iou():
    gen, ref = layouts([(0, Q)]), layouts([(0, P)])
    assert max_iou(*gen, *ref) == pytest.approx((0.6, 1.0))


def test_max_iou_averages_over_the_classes_boxes():
    # per class: text boxes Q vs P -> 0.6, title boxes S vs S -> 1; (0.6 + 1) / 2 boxes = 0.8
    gen, ref = layouts([(0, Q), (1, S)]), layouts([(1, S), (0, P)])
    assert max_iou(*gen, *ref)[0] == pytest.approx(0.8)


def test_max_iou_matches_the_boxes_of_a_class_one_to_one():
    # gen (P, FAR), ref (FAR, Q), all one class. Box matchings: P-FAR + FAR-Q = 0 + 0, or P-Q + FAR-FAR
    # = 0.6 + 1 -> 1.6 / 2 boxes = 0.8 (a box may not be used twice: P-Q twice would give 0.6)
    gen, ref = layouts([(0, P), (0, FAR)]), layouts([(0, FAR), (0, Q)])
    assert max_iou(*gen, *ref)[0] == pytest.approx(0.8)


def test_max_iou_matches_the_two_sets_one_to_one_unlike_the_best_match_variant():
    # gen {P, Q}, ref {P, FAR} (single-box layouts of one class). Pair scores gen x ref: [[1, 0], [0.6, 0]].
    # One-to-one: P-P + Q-FAR = 1 + 0 or P-FAR + Q-P = 0 + 0.6 -> the first, mean (1 + 0) / 2 = 0.5.
    # Best match: P -> P (1), Q -> P (0.6), both may take P -> (1 + 0.6) / 2 = 0.8.
    gen, ref = layouts([(0, P)], [(0, Q)]), layouts([(0, P)], [(0, FAR)])
    assert max_iou(*gen, *ref) == pytest.approx((0.5, 1.0))
    assert max_iou_best_match(*gen, *ref) == pytest.approx((0.8, 1.0))


def test_max_iou_of_sets_of_different_size_pairs_the_smaller_side():
    # gen {P, Q}, ref {Q}: pair scores [[0.6], [1]] -> one pair, Q-Q = 1; mean 1, 1 of 2 generated paired.
    gen, ref = layouts([(0, P)], [(0, Q)]), layouts([(0, Q)])
    assert max_iou(*gen, *ref) == pytest.approx((1.0, 0.5))
    # the other way round: one generated layout, Q, takes the better of P (0.6) and Q (1)
    assert max_iou(*ref, *gen) == pytest.approx((1.0, 1.0))


def test_max_iou_groups_by_class_multiset_and_ignores_padding_and_empty_layouts():
    # gen: [text P], [title P], [text Q, title S], an empty page; ref: [text Q], [title S, text P].
    # Groups: (text) P-Q = 0.6; (title) none in ref; (text, title) Q-P 0.6 and S-S 1 -> 0.8.
    # Mean over the 2 pairs (0.6 + 0.8) / 2 = 0.7; 2 of 3 non-empty generated layouts paired.
    gen = layouts([(0, P)], [(1, P)], [(0, Q), (1, S)], [])
    ref = layouts([(0, Q)], [(1, S), (0, P)])
    assert max_iou(*gen, *ref) == pytest.approx((0.7, 2 / 3))
    # junk in the padding slots changes nothing
    classes, boxes, mask = gen
    assert max_iou(classes, np.where(mask[..., None], boxes, 0.9), mask, *ref) == pytest.approx((0.7, 2 / 3))


def test_max_iou_without_a_shared_multiset_is_zero():
    assert max_iou(*layouts([(0, P)]), *layouts([(1, P)])) == (0.0, 0.0)
    assert max_iou(*layouts([]), *layouts([(0, P)])) == (0.0, 0.0)
