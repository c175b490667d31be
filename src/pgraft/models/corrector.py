"""The INC corrector's network (docs/METHOD.md §4): a velocity field v(z, t) on the base's noise space, built from
`inc.corrector` (a residual MLP over the flattened noise, or a small UNet2DModel over the noise as an image) and
rebuilt from the config it was saved with."""

from __future__ import annotations

from torch import nn

from pgraft.errors import ConfigError


def build(cfg, shape: tuple[int, ...]) -> nn.Module:
    """The corrector of `cfg` (CorrectorParams) for noises of per-sample `shape`."""
    from pgraft.models.mlp import VelocityMLP

    if cfg.architecture == "mlp":
        return VelocityMLP(list(shape), cfg.hidden, cfg.layers)
    from pgraft.models.flow_unet import build_unet

    channels = list(cfg.unet_channels)
    levels = 2 ** (len(channels) - 1)
    if len(shape) != 3 or shape[1] != shape[2] or shape[1] % levels:
        raise ConfigError(f"inc.corrector.unet_channels {channels}: a UNet corrector needs square images whose side "
                          f"is divisible by {levels} (one halving per extra block); the noise shape is {list(shape)}")
    return build_unet(shape[1], shape[0], channels, layers_per_block=1)


def from_config(config: dict) -> nn.Module:
    """The corrector a saved config describes (its weights are loaded by the caller)."""
    if "unet" in config:
        from pgraft.models.flow_unet import from_config as unet_from_config

        return unet_from_config(config)
    from pgraft.models.mlp import VelocityMLP

    return VelocityMLP(**config)
