"""The INC path at full-scale shape: an image folder and a diffusers-format UNet checkpoint from a local
directory (a tiny model the test builds and saves), through exactly the stage commands of the pipeline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pgraft.config import parse_params
from pgraft.domains import build
from pgraft.stages import correct, evaluate_flow, invert, pretrain

from pipeline_helpers import shrink, write_params


@pytest.fixture
def folder_setup(tmp_path, real_params, monkeypatch):
    from diffusers import UNet2DModel
    from PIL import Image

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(30):
            pixels = rng.integers(0, 255, size=(12, 12, 3), dtype=np.uint8)
            pixels[:, : 6 if label == "a" else 2] = 255
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    unet = UNet2DModel(sample_size=16, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=8)
    unet.save_pretrained(tmp_path / "ckpt", safe_serialization=True)
    p = shrink(real_params)
    p["digits_flow"]["data"].update(path=str(tmp_path / "images"), image_size=16, channels=3)
    p["digits_flow"]["model"]["checkpoint"] = str(tmp_path / "ckpt")
    write_params(tmp_path / "params.yaml", p)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PGRAFT_STATE_DIR", str(tmp_path / ".pgraft"))
    return tmp_path, p, unet


@pytest.mark.parametrize("architecture", ["mlp", "unet"])
def test_image_folder_and_local_checkpoint_run_the_inc_stages(folder_setup, architecture):
    work, p, unet = folder_setup
    p["inc"]["corrector"].update(architecture=architecture, unet_channels=[8, 16])
    write_params(work / "params.yaml", p)
    domain = build("digits_flow", parse_params(p))
    x, y = domain.dataset()
    assert x.shape == (60, 3, 16, 16) and x.min() >= -1 and x.max() <= 1 and set(y) == {0, 1}
    assert pretrain.main(["--domain", "digits_flow", "--out", "base", "--metrics", "m/pre.json",
                          "--features", "features"]) == 0
    assert json.loads((work / "m/pre.json").read_text())["steps"] == 0  # the checkpoint is the base as it is
    from pgraft.stages.common import load_model

    base = load_model(work / "base", domain)
    z, t = torch.randn(2, 3, 16, 16), torch.full((2,), 0.3)
    assert torch.allclose(base(z, t), unet(z, t * 999).sample, atol=1e-6)  # same weights as the checkpoint
    n = p["inc"]["corrected_steps"][0]
    assert invert.main(["--domain", "digits_flow", "--n", str(n), "--model", "base", "--out", "inv.npz",
                        "--metrics", "m/inv.json"]) == 0
    assert correct.main(["--domain", "digits_flow", "--seed", "0", "--n", str(n), "--inverted", "inv.npz",
                         "--out", f"inc/n{n}/corrector"]) == 0
    assert evaluate_flow.main(["--domain", "digits_flow", "--seed", "0", "--model", "base", "--features",
                               "features", "--correctors-dir", "inc", "--out", "m/inc.json"]) == 0
    saved = json.loads((work / f"inc/n{n}/corrector/config.json").read_text())
    assert ("unet" in saved["model"]) == (architecture == "unet"), saved["model"]
    res = json.loads((work / "m/inc.json").read_text())
    assert np.isfinite(res[f"inc_n{n}"]["fid"]) and res[f"inc_n{n}"]["flops_per_image"] > res[f"base_n{n}"]["flops_per_image"]


def test_missing_image_folder_is_a_clear_error(folder_setup, capsys):
    work, p, _ = folder_setup
    p["digits_flow"]["data"]["path"] = str(work / "nowhere")
    write_params(work / "params.yaml", p)
    assert pretrain.main(["--domain", "digits_flow", "--out", "base", "--metrics", "m.json"]) == 2
    err = capsys.readouterr().err
    assert "nowhere" in err and "not a directory" in err and not (work / "base").exists()


def test_flow_domain_is_refused_in_the_reward_sweep(real_params):
    from pgraft.config import ConfigError

    p = shrink(real_params)
    p["domains"] = ["digits_flow"]  # listed in domains, a flow domain runs INC only
    params = parse_params(p)
    assert params.reward_domains == [] and params.inc.domains == ["digits_flow"] and params.ddpo.domains == []
    p["ddpo"]["domains"] = ["digits_flow"]
    with pytest.raises(ConfigError, match="prompt-conditioned"):
        parse_params(p)


def test_missing_checkpoint_is_a_clear_error(folder_setup, capsys):
    work, p, _ = folder_setup
    p["digits_flow"]["model"]["checkpoint"] = str(work / "no_ckpt")
    write_params(work / "params.yaml", p)
    assert pretrain.main(["--domain", "digits_flow", "--out", "base", "--metrics", "m.json"]) == 2
    assert "no_ckpt" in capsys.readouterr().err and not (work / "base").exists()
