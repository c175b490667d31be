"""The layouts domain: rewards on hand-made layouts, the COCO loader, maxIoU and Fréchet oracles, seeding."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from pgraft.domains.layout_data import CLASSES, NUM_FEATURES, decode, encode, generate_layouts, load_coco
from pgraft.domains.layouts import LayoutsDomain, LayoutsParams, save_gallery
from pgraft.io import ArtifactError
from pgraft.metrics.layout_metrics import frechet_distance, max_iou
from pgraft.rewards.layout import alignment, layout_reward, overlap


def layout(*boxes, size: int = 4):
    """One layout (batch of 1) from (xc, yc, w, h) boxes, padded to `size` slots with junk boxes."""
    b = np.full((1, size, 4), 0.5)  # padding slots hold a box that would overlap everything
    m = np.zeros((1, size), dtype=bool)
    for i, box in enumerate(boxes):
        b[0, i], m[0, i] = box, True
    return b, m


def test_two_left_aligned_boxes_have_zero_alignment():
    b, m = layout((0.3, 0.2, 0.4, 0.1), (0.4, 0.6, 0.6, 0.2))  # both left edges at x = 0.1
    assert alignment(b, m)[0] == pytest.approx(0.0, abs=1e-12)


def test_alignment_of_unaligned_boxes_follows_the_formula():
    # boxes [0.1, 0.3] x [0.1, 0.2] and [0.55, 0.85] x [0.5, 0.8]; gaps per coordinate type: left 0.45,
    # x-centre 0.5, right 0.55, top 0.4, y-centre 0.5, bottom 0.6 -> min 0.4 for both boxes, mean g(0.4)
    b, m = layout((0.2, 0.15, 0.2, 0.1), (0.7, 0.65, 0.3, 0.3))
    assert alignment(b, m)[0] == pytest.approx(-math.log(1 - 0.4))


def test_two_overlapping_boxes_have_the_hand_computed_overlap():
    # A = [0.1, 0.5]^2, B = [0.3, 0.7]^2: intersection 0.2 x 0.2 = 0.04, each area 0.16
    # overlap = (1/2) (0.04/0.16 + 0.04/0.16) = 0.25
    b, m = layout((0.3, 0.3, 0.4, 0.4), (0.5, 0.5, 0.4, 0.4))
    assert overlap(b, m)[0] == pytest.approx(0.25)
    # unequal areas: A = [0, 0.4] x [0, 0.2] (0.08), B = [0.2, 0.6] x [0.1, 0.5] (0.16), intersection 0.02
    b, m = layout((0.2, 0.1, 0.4, 0.2), (0.4, 0.3, 0.4, 0.4))
    assert overlap(b, m)[0] == pytest.approx((0.02 / 0.08 + 0.02 / 0.16) / 2)


def test_disjoint_and_touching_boxes_do_not_overlap():
    b, m = layout((0.2, 0.2, 0.2, 0.2), (0.7, 0.7, 0.2, 0.2), (0.4, 0.2, 0.2, 0.2))  # third touches the first
    assert overlap(b, m)[0] == 0.0


@pytest.mark.parametrize("count", [0, 1])
def test_layouts_with_no_or_one_box_score_finite_zero(count):
    b, m = layout(*[(0.5, 0.5, 0.3, 0.3)] * count)
    for fn in (alignment, overlap):
        assert fn(b, m)[0] == 0.0
    for name in ("alignment", "overlap", "combined"):
        assert np.isfinite(layout_reward(name, b, m))


def test_combined_reward_is_the_negative_weighted_sum():
    b, m = layout((0.2, 0.15, 0.2, 0.1), (0.7, 0.65, 0.3, 0.3), (0.25, 0.2, 0.2, 0.2))
    expected = -(2.0 * alignment(b, m) + 0.5 * overlap(b, m))
    assert layout_reward("combined", b, m, 2.0, 0.5) == pytest.approx(expected)
    with pytest.raises(ValueError, match="combined"):
        layout_reward("nope", b, m)


def test_generated_train_and_test_pages_are_seeded_streams():
    params = LayoutsParams.model_validate({"data": {"num_layouts": 50, "test_fraction": 0.2}})
    a, b = LayoutsDomain(params), LayoutsDomain(params)
    assert len(a.layouts("train")[0]) == 40 and len(a.layouts("test")[0]) == 10
    for part in ("train", "test"):
        assert np.array_equal(a.layouts(part)[1], b.layouts(part)[1])
    assert not np.array_equal(a.layouts("train")[1][:10], a.layouts("test")[1])


def test_generator_is_seeded_and_regular():
    c1, b1 = generate_layouts(50, 16, seed=3)
    c2, b2 = generate_layouts(50, 16, seed=3)
    c3, _ = generate_layouts(50, 16, seed=4)
    assert np.array_equal(c1, c2) and np.array_equal(b1, b2) and not np.array_equal(c1, c3)
    mask = c1 >= 0
    assert mask.sum(1).min() >= 2 and (b1[mask] >= 0).all() and (b1[mask] <= 1).all()
    # generated pages are aligned and overlap-free (shared column edges, stacked blocks with gaps)
    assert alignment(b1, mask).max() < 1e-6 and overlap(b1, mask).max() < 1e-6


def test_encoding_round_trips():
    c, b = generate_layouts(20, 16, seed=0)
    x = encode(c, b)
    assert x.shape == (20, 16, NUM_FEATURES) and x.min() >= -1 and x.max() <= 1
    c2, b2, m = decode(x)
    assert np.array_equal(c2, c) and np.allclose(b2[m], b[m], atol=1e-6) and np.array_equal(m, c >= 0)


def write_coco(path, annotations, with_annotations=True):
    coco = {"images": [{"id": 1, "width": 200, "height": 400}, {"id": 2, "width": 100, "height": 100},
                       {"id": 3, "width": 100, "height": 100}],
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(CLASSES)]}
    if with_annotations:
        coco["annotations"] = annotations
    path.write_text(json.dumps(coco))
    return path


def test_coco_loader_reads_publaynet_style_json(tmp_path):
    anns = [{"image_id": 1, "category_id": 1, "bbox": [20, 200, 160, 100]},   # text, lower
            {"image_id": 1, "category_id": 2, "bbox": [20, 40, 160, 40]},     # title, on top
            {"image_id": 2, "category_id": 5, "bbox": [10, 10, 50, 30]}]      # image 3 has none: skipped
    classes, boxes = load_coco(write_coco(tmp_path / "layouts.json", anns), max_boxes=4)
    assert classes.shape == (2, 4) and boxes.shape == (2, 4, 4)
    assert classes[0].tolist() == [CLASSES.index("title"), CLASSES.index("text"), -1, -1]  # reading order
    assert boxes[0, 0] == pytest.approx([0.5, 0.15, 0.8, 0.1])   # centre x (20+80)/200, y (40+20)/400
    assert boxes[0, 1] == pytest.approx([0.5, 0.625, 0.8, 0.25])
    assert classes[1].tolist() == [CLASSES.index("figure"), -1, -1, -1]
    assert boxes[1, 0] == pytest.approx([0.35, 0.25, 0.5, 0.3])


def test_coco_loader_names_what_is_wrong(tmp_path):
    with pytest.raises(ArtifactError, match="annotations"):
        load_coco(write_coco(tmp_path / "a.json", [], with_annotations=False), max_boxes=4)
    with pytest.raises(ArtifactError, match="not found"):
        load_coco(tmp_path / "missing.json", max_boxes=4)
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "chart"}]}))
    with pytest.raises(ArtifactError, match="chart"):
        load_coco(bad, max_boxes=4)


def test_domain_reads_the_coco_path_from_params(tmp_path):
    anns = [{"image_id": i, "category_id": 1 + (i % 5), "bbox": [10, 10 + i, 50, 20]} for i in (1, 2, 3)]
    path = write_coco(tmp_path / "layouts.json", anns)
    domain = LayoutsDomain(LayoutsParams.model_validate(
        {"data": {"path": str(path), "max_boxes": 4, "test_fraction": 0.34}}))
    assert len(domain.layouts("train")[0]) == 2 and len(domain.layouts("test")[0]) == 1
    assert domain.sample_data(5, torch.Generator().manual_seed(0)).shape == (5, 4, NUM_FEATURES)


def test_max_iou_of_a_layout_against_itself_is_one():
    c, b = generate_layouts(30, 16, seed=1)
    m = c >= 0
    score, matched = max_iou(c, b, m, c, b, m)
    assert score == pytest.approx(1.0) and matched == 1.0
    # a shifted copy matches less well; a layout whose class multiset is absent is left out
    score, _ = max_iou(c[:1], b[:1] + 0.02, m[:1], c[:1], b[:1], m[:1])
    assert 0.0 < score < 1.0
    assert max_iou(c[:1], b[:1], m[:1], np.full_like(c[:1], -1), b[:1], np.zeros_like(m[:1])) == (0.0, 0.0)


def test_max_iou_matches_boxes_of_a_class_in_any_order():
    c = np.asarray([[0, 0, 1, -1]])
    b = np.asarray([[[0.2, 0.2, 0.2, 0.2], [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1], [0, 0, 0, 0]]])
    swapped = b[:, [1, 0, 2, 3]]
    score, _ = max_iou(c, b, c >= 0, c, swapped, c >= 0)
    assert score == pytest.approx(1.0)


def test_frechet_distance_oracles():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(500, 8))
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-8)
    # two Gaussians with equal covariance: the distance is |mu1 - mu2|^2 (up to sampling error)
    shifted = f + np.asarray([3.0] + [0.0] * 7)
    assert frechet_distance(f, shifted) == pytest.approx(9.0, rel=1e-6)
    # 1-d closed form: (m1 - m2)^2 + (s1 - s2)^2
    a, b = rng.normal(0, 1, size=(20000, 1)), rng.normal(1, 2, size=(20000, 1))
    assert frechet_distance(a, b) == pytest.approx(1.0 + 1.0, rel=0.05)


@pytest.fixture
def tiny_domain():
    return LayoutsDomain(LayoutsParams.model_validate(
        {"data": {"num_layouts": 200}, "model": {"d_model": 16, "layers": 1, "heads": 2, "ff": 16},
         "features": {"steps": 5, "d_model": 16, "layers": 1, "feature_dim": 8},
         "metrics": {"max_iou_layouts": 20, "max_iou_candidates": 5}}))


def test_auxiliary_feature_network_round_trips(tiny_domain, tmp_path):
    metrics = tiny_domain.train_auxiliary(tmp_path / "auxiliary", torch.Generator().manual_seed(0))
    assert 0.0 <= metrics["features_test_accuracy"] <= 1.0
    assert sorted(p.name for p in (tmp_path / "auxiliary").iterdir()) == ["layout_features.json",
                                                                          "layout_features.safetensors"]
    x = tiny_domain.sample_data(40, torch.Generator().manual_seed(1)).numpy()
    assert "fd" not in tiny_domain.extra_metrics(x)  # no feature network loaded yet
    tiny_domain.load_auxiliary(tmp_path / "auxiliary")
    out = tiny_domain.extra_metrics(x)
    assert set(out) == {"alignment", "alignment_no_padding", "overlap", "num_boxes", "max_iou", "max_iou_matched",
                        "max_iou_best_match", "max_iou_best_match_matched", "fd"}
    assert all(np.isfinite(v) for v in out.values())
    again = LayoutsDomain(tiny_domain.params)
    again.load_auxiliary(tmp_path / "auxiliary")
    assert again.extra_metrics(x)["fd"] == pytest.approx(out["fd"])
    with pytest.raises(ArtifactError, match="not found"):
        again.load_auxiliary(tmp_path / "elsewhere")


def test_metrics_of_degenerate_samples_are_finite(tiny_domain):
    x = np.zeros((3, *tiny_domain.shape), dtype=np.float32)
    x[..., -1] = -1.0  # no box at all
    x[0, 0] = encode(np.asarray([[0]]), np.asarray([[[0.5, 0.5, 0.2, 0.2]]]))[0, 0]  # one box
    assert np.isfinite(tiny_domain.reward(x)).all()
    assert all(np.isfinite(v) for v in tiny_domain.extra_metrics(x).values())


def test_gallery_draws_pages(tiny_domain, tmp_path):
    x = tiny_domain.sample_data(tiny_domain.gallery_size, torch.Generator().manual_seed(0)).numpy()
    path = save_gallery(tiny_domain, x, tmp_path / "gallery.png", title="layouts")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
