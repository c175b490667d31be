"""FID with a local digit classifier through torch-fidelity (offline), and FLOP counting oracles."""

from __future__ import annotations

import os
import time
import urllib.request

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

from pgraft.metrics import fid as fidmod
from pgraft.metrics.flops import flops_per_call, flops_per_image
from pgraft.models.digit_features import train_digit_classifier


@pytest.fixture(scope="module")
def one_thread():
    """Tiny convs run fastest (and steadiest on a shared box) on one intra-op thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 8.0 - 1.0  # 0..16 -> [-1, 1]
    y = torch.tensor(d.target)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.3, random_state=0, stratify=y)
    return xtr, xte, ytr, yte


@pytest.fixture(scope="module")
def trained(digits, one_thread):
    xtr, xte, ytr, yte = digits
    t0 = time.perf_counter()
    model = train_digit_classifier(xtr, ytr, steps=500, lr=2e-3, batch_size=64,
                                   generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        acc = float((model(xte).argmax(1) == yte).float().mean())
    return model, acc, seconds


@pytest.fixture(scope="module")
def extractor_dir(trained, tmp_path_factory):
    return fidmod.save_extractor(trained[0], tmp_path_factory.mktemp("digits_extractor"))


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to download during the test fails loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"download attempted: {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def test_classifier_reaches_90_percent_held_out(trained):
    model, acc, seconds = trained
    print(f"held-out accuracy {acc:.4f} after {seconds:.1f} s of training")
    assert acc > 0.90
    assert seconds < 30
    assert not model.training
    assert model.features(torch.zeros(3, 1, 8, 8)).shape == (3, 64)


def test_extractor_round_trips_through_safetensors(trained, extractor_dir):
    assert sorted(p.name for p in extractor_dir.iterdir()) == ["config.json", "model.safetensors"]
    loaded = fidmod.load_extractor(extractor_dir)
    x = torch.rand(5, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(loaded(x), trained[0](x))


def test_registration_is_idempotent():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    fidmod.register()
    fidmod.register()
    assert FEATURE_EXTRACTORS_REGISTRY[fidmod.EXTRACTOR_NAME] is fidmod.DigitFeatureExtractor


def test_to_uint8_and_preprocessing(extractor_dir):
    x = torch.tensor([-1.0, -2.0, 0.0, 1.0, 3.0])
    assert fidmod.to_uint8(x).tolist() == [0, 0, 128, 255, 255]
    ext = fidmod.DigitFeatureExtractor(fidmod.EXTRACTOR_NAME, ["features"],
                                       feature_extractor_weights_path=str(extractor_dir))
    img = fidmod.to_uint8(torch.rand(4, 1, 8, 8) * 2 - 1)
    gray = ext(img)[0]
    rgb = ext(img.expand(-1, 3, -1, -1).contiguous())[0]  # equal RGB channels -> same grayscale
    torch.testing.assert_close(rgb, gray)
    big = ext(img.repeat_interleave(4, 2).repeat_interleave(4, 3))[0]  # 32x32 nearest-upscaled -> resized
    assert big.shape == (4, 64) and torch.isfinite(big).all()


def test_fid_matches_scipy_on_the_same_features(digits, extractor_dir, offline, one_thread):
    xtr, xte, _, _ = digits
    real, fake = fidmod.to_uint8(xte), fidmod.to_uint8(xtr)
    value = fidmod.fid(real, fake, extractor_dir)
    ref = fidmod.fid_from_features(fidmod.extract_features(real, extractor_dir),
                                   fidmod.extract_features(fake, extractor_dir))
    print(f"FID(test, train) torch-fidelity {value:.6f}  scipy {ref:.6f}")
    assert value == pytest.approx(ref, rel=1e-3)


def test_fid_separates_digits_from_noise(digits, extractor_dir, offline, one_thread):
    xtr, xte, _, _ = digits
    real, train = fidmod.to_uint8(xte), fidmod.to_uint8(xtr)
    noise = fidmod.to_uint8(torch.rand(len(xte), 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    real_train = fidmod.fid(real, train, extractor_dir)
    real_noise = fidmod.fid(real, noise, extractor_dir)
    self_fid = fidmod.fid(real, real, extractor_dir)
    print(f"FID(test, train) {real_train:.4f}  FID(test, noise) {real_noise:.4f}  FID(test, test) {self_fid:.2e}")
    assert real_noise > 10 * real_train
    assert abs(self_fid) < 1e-3 * max(real_train, 1.0)


def test_fid_kid_agrees_with_fid_and_kid_separates_digits_from_noise(digits, extractor_dir, offline, one_thread):
    """fid_kid's FID is fid()'s; KID (unbiased MMD²) is near 0 for two real sets of different sizes and far above
    it for noise; the KID subset size shrinks to the smaller set."""
    xtr, xte, _, _ = digits
    real, train = fidmod.to_uint8(xte), fidmod.to_uint8(xtr)
    noise = fidmod.to_uint8(torch.rand(len(xte), 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1)
    both = fidmod.fid_kid(real, train, extractor_dir, kid_subsets=20)
    far = fidmod.fid_kid(real, noise, extractor_dir, kid_subsets=20)
    print(f"real vs train {both}  real vs noise {far}")
    assert both["fid"] == pytest.approx(fidmod.fid(real, train, extractor_dir), rel=1e-6)
    assert abs(both["kid"]) < 0.05 * far["kid"] and far["kid"] > 0 and both["kid_std"] >= 0


def test_fid_refuses_bad_input(extractor_dir, tmp_path):
    imgs = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match="uint8"):
        fidmod.fid(imgs.float(), imgs, extractor_dir)
    with pytest.raises(fidmod.ArtifactError):
        fidmod.fid(imgs, imgs, tmp_path / "missing")


def test_flops_of_linear_are_exact():
    lin = torch.nn.Linear(10, 20)
    assert flops_per_call(lin, torch.randn(4, 10)) == 2 * 4 * 10 * 20


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(6, 16)
        self.b = torch.nn.Linear(16, 6)

    def forward(self, x, t):
        return self.b(torch.relu(self.a(x) + t[:, None].float()))


def test_flops_per_image_is_linear_in_steps():
    model, x, t = _Tiny(), torch.randn(8, 6), torch.zeros(8, dtype=torch.long)
    per_call = 2 * 8 * (6 * 16 + 16 * 6)
    assert flops_per_call(model, x, t) == per_call
    one = flops_per_image(model, x, t, n_steps=1, batch=8)
    assert one == per_call / 8
    for n in (2, 10, 50):
        assert flops_per_image(model, x, t, n_steps=n, batch=8) == pytest.approx(n * one)
    assert np.isclose(flops_per_image(model, x, t, n_steps=0, batch=8), 0.0)


def test_training_flops_against_a_hand_count():
    """A 3 -> 4 -> 2 MLP: one forward is 2·(3·4 + 4·2) = 40 FLOPs a sample (biases and ReLU are not counted).
    Its measured backward is the convention's 2 forwards less the input gradient of the first layer (not needed)."""
    from torch.utils.flop_counter import FlopCounterMode

    from pgraft.metrics.flops import BACKWARD_FORWARDS, ddpo_training_flops, graft_training_flops

    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    forward = flops_per_call(net, torch.zeros(1, 3))
    assert forward == 40 and flops_per_call(net, torch.zeros(5, 3)) == 5 * forward
    counter = FlopCounterMode(display=False)
    with counter:
        net(torch.zeros(5, 3)).sum().backward()
    assert counter.get_total_flops() - 5 * forward == 5 * (BACKWARD_FORWARDS * forward - 2 * 3 * 4)
    # DDPO, 8 trajectories of N = 3 steps (2 of them stochastic), 2 PPO epochs: 8·(3 + 2·(3 + 2·2)) forwards
    assert ddpo_training_flops(forward, evaluations=8, num_steps=3, policy_steps=2, inner_epochs=2) == 8 * 17 * 40
    # GRAFT, 2 rounds of 16 samples x 3 steps, then 5 optimizer steps of 4 samples (forward + backward)
    assert graft_training_flops(forward, rounds=2, samples_per_round=16, num_steps=3, optimizer_steps=5,
                                batch_size=4) == (2 * 16 * 3 + 5 * 4 * 3) * 40
