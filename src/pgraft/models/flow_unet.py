"""A diffusers UNet2DModel as a velocity field v(x, t) with t in [0, 1] (flow matching, docs/METHOD.md §4)."""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from torch import nn

from pgraft.devices import autocast

TIME_SCALE = 999.0  # the UNet's timestep embedding sees t·999, the range it was designed for


class FlowUNet(nn.Module):
    """v(x, t) = unet(x, t·999).sample; `config` holds the UNet's diffusers config.

    `autocast` (set by Domain.place, not saved): the dtype its forward autocasts to (bf16 on CUDA), None: fp32."""

    autocast: torch.dtype | None = None

    def __init__(self, unet: UNet2DModel):
        super().__init__()
        self.unet = unet
        self.config = {"unet": {k: (list(v) if isinstance(v, tuple) else v) for k, v in unet.config.items()
                                if not k.startswith("_")}}

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        if self.autocast is None:
            return self.unet(x, t * TIME_SCALE).sample
        with autocast(x, self.autocast):
            return self.unet(x, t * TIME_SCALE).sample.float()


def build_unet(image_size: int, channels: int, block_out_channels: list[int], layers_per_block: int) -> FlowUNet:
    n = len(block_out_channels)
    down = ["DownBlock2D"] * (n - 1) + ["AttnDownBlock2D"]
    up = ["AttnUpBlock2D"] + ["UpBlock2D"] * (n - 1)
    unet = UNet2DModel(sample_size=image_size, in_channels=channels, out_channels=channels,
                       block_out_channels=tuple(block_out_channels), down_block_types=tuple(down),
                       up_block_types=tuple(up), layers_per_block=layers_per_block,
                       norm_num_groups=min(8, min(block_out_channels)))
    return FlowUNet(unet)


def from_config(config: dict) -> FlowUNet:
    return FlowUNet(UNet2DModel.from_config(config["unet"]))


def from_pretrained(directory: str) -> FlowUNet:
    """A UNet2DModel checkpoint in diffusers format (safetensors) from a local directory; nothing downloaded."""
    from pathlib import Path

    from pgraft.errors import ArtifactError

    if not Path(directory).is_dir():
        raise ArtifactError(f"model.checkpoint {directory}: not a directory (expected a diffusers UNet2DModel "
                            "saved with save_pretrained)")
    try:
        return FlowUNet(UNet2DModel.from_pretrained(directory, use_safetensors=True, local_files_only=True))
    except (OSError, ValueError) as err:
        raise ArtifactError(f"model.checkpoint {directory}: not a loadable diffusers UNet2DModel ({err})") from err
