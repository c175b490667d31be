"""Text-to-image digits: prompts, the VQA-style judges on real canvases, the held-out prompt split."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgraft import domains
from pgraft.config import parse_params
from pgraft.rewards import digit_vqa


@pytest.fixture(scope="module")
def trained(real_params, tmp_path_factory):
    raw = dict(real_params)
    raw["domains"] = ["digits_t2i"]
    raw["digits_t2i"] = {**raw["digits_t2i"], "judges": {"steps": 600}, "features": {"steps": 100}}
    domain = domains.build("digits_t2i", parse_params(raw))
    aux = tmp_path_factory.mktemp("aux")
    metrics = domain.train_auxiliary(aux, torch.Generator().manual_seed(0))
    domain.load_auxiliary(aux)
    return domain, metrics


def test_prompts_parse_and_tokenise():
    prompts = digit_vqa.all_prompts()
    assert len(prompts) == 120 and len({p.text for p in prompts}) == 120
    assert all(digit_vqa.parse(p.text) == p for p in prompts)
    tok = digit_vqa.tokens(["a 3 to the left of a 7", "a bold 1"])
    assert tok.shape == (2, digit_vqa.MAX_TOKENS) and (tok[1, 3:] == 0).all()
    with pytest.raises(ValueError, match="a purple 7"):
        digit_vqa.parse("a purple 7")
    with pytest.raises(ValueError, match="vocabulary"):
        digit_vqa.tokens(["a purple 7"])


def test_judges_beat_chance_by_a_wide_margin(trained):
    _, m = trained
    # 10 digits (chance 0.1) and 20 digit x bold classes (chance 0.05), on the test part neither judge saw
    assert m["judge_digit_accuracy"] > 0.85 and m["independent_judge_digit_accuracy"] > 0.8
    assert m["judge_joint_accuracy"] > 0.6 and m["independent_judge_joint_accuracy"] > 0.5


def test_reward_answers_yes_to_true_prompts_and_no_to_false_ones(trained):
    domain, _ = trained
    rng = torch.Generator().manual_seed(1)
    prompts = [p.text for p in digit_vqa.all_prompts()] * 2
    real = domain.render(prompts, rng)
    true = domain.reward(real, prompts)
    swapped = [p.replace(" to the left of a ", " SWAP ") for p in prompts]
    wrong = []
    for p in swapped:  # the same canvases asked about another digit (or the mirrored composition)
        q = digit_vqa.parse(p.replace(" SWAP ", " to the left of a "))
        if q.kind == "composition":
            wrong.append(f"a {q.digits[1]} to the left of a {q.digits[0]}")
        elif q.kind == "attribute":
            wrong.append(f"a {q.attribute} {(q.digits[0] + 1) % 10}")
        else:
            wrong.append(f"a handwritten {(q.digits[0] + 1) % 10}")
    false = domain.reward(real, wrong)
    assert true.mean() > 0.6 and false.mean() < 0.1
    assert ((true >= 0) & (true <= 1)).all()
    # the independent judge agrees on true prompts: little room for a reward-hacking gap on real data
    m = domain.extra_metrics(real, prompts)
    assert m["judge_score"] > 0.55 and abs(m["reward_hacking_gap"]) < 0.2
    assert m["fid"] < 5.0  # real train-part digits against the test part, in the trained feature space


def test_heldout_prompts_are_attribute_and_composition_prompts_only(trained):
    domain, _ = trained
    held = domain.prompts("heldout")
    kinds = {digit_vqa.parse(p).kind for p in held}
    assert kinds == {"attribute", "composition"}
    assert len(held) == round(0.25 * 20) + round(0.25 * 90)
    gallery = domain.gallery_prompts()
    assert set(gallery) & set(held) and set(gallery) & set(domain.prompts("train"))


def test_pretraining_data_matches_its_prompts(trained):
    domain, _ = trained
    x, prompts = domain.sample_data(300, torch.Generator().manual_seed(2))
    assert x.shape == (300, 1, 8, 16)
    r = domain.reward(x.numpy(), prompts)
    assert r.mean() > 0.6  # real canvases drawn for their prompts
    kinds = {digit_vqa.parse(p).kind for p in prompts}
    assert kinds == {"digit", "attribute", "composition"}
    assert np.isclose(x.numpy()[[i for i, p in enumerate(prompts) if "left" not in p]][..., :4], -1).all()
