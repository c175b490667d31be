"""Stable Diffusion 2 as a pgraft ε-network: frozen UNet + CLIP text encoder, LoRA adapters, classifier-free guidance.

One set of frozen components (UNet, VAE, text encoder) is loaded per process and shared by every model
built on it; each fine-tuned model is a named peft LoRA adapter on the attention projections of that one
UNet. A model's forward activates its own adapter (or disables all adapters: the base), so P-GRAFT's
stitched sampler (`stitched_sample`: fine-tuned for the first k steps, base after) runs in one loop over
one UNet. A model's `state_dict` holds its LoRA tensors only (peft names prefixed "unet.", the layout
diffusers' `load_lora_weights` reads): checkpoints are megabytes, the base comes from `pretrained`.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path

import torch
from torch import nn

from pgraft.errors import ConfigError

LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
_UNKNOWN = object()  # adapter state not yet set by us
_PARTS: dict[tuple, "Sd2Parts"] = {}
_NAMES = itertools.count()


def resolve_device(device: str | torch.device) -> torch.device:
    """A device setting (auto | cpu | cuda, pgraft.devices.resolve_device) or an explicit device such as cuda:1."""
    from pgraft.devices import DEVICES
    from pgraft.devices import resolve_device as resolve

    return resolve(device, "sd2.model.device") if device in DEVICES else torch.device(device)


def _source(pretrained: str) -> dict:
    """from_pretrained arguments: a local directory is read offline, a hub id through the HF cache."""
    return {"local_files_only": True} if Path(pretrained).is_dir() else {}


def load_tokenizer(pretrained: str):
    from transformers import CLIPTokenizer

    try:
        return CLIPTokenizer.from_pretrained(pretrained, subfolder="tokenizer", **_source(pretrained))
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"sd2.model.pretrained={pretrained!r}: cannot load the Stable Diffusion 2 tokenizer "
                          f"({type(err).__name__}: {err})") from err


def load_scheduler_config(pretrained: str) -> dict:
    from diffusers import DDIMScheduler

    try:
        config = dict(DDIMScheduler.load_config(pretrained, subfolder="scheduler", **_source(pretrained)))
    except (OSError, ValueError, TypeError) as err:
        raise ConfigError(f"sd2.model.pretrained={pretrained!r}: cannot load the Stable Diffusion 2 scheduler config "
                          f"({type(err).__name__}: {err})") from err
    # the two corrections StableDiffusionPipeline applies to every checkpoint's scheduler
    return {**config, "steps_offset": 1, "clip_sample": False}


class Sd2Parts:
    """The frozen components on one device and dtype, the adapters added to the UNet, and which one is active."""

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler_config: dict, device: torch.device,
                 dtype: torch.dtype):
        from diffusers import DDIMScheduler

        self.device, self.dtype = device, dtype
        for net in (unet, vae, text_encoder):
            net.requires_grad_(False).eval().to(device, dtype)
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.scheduler_config = scheduler_config
        self.alphas_cumprod = DDIMScheduler.from_config(scheduler_config).alphas_cumprod.float()
        self.prediction_type = scheduler_config.get("prediction_type", "epsilon")
        if (self.vae.config.latent_channels, 2 ** (len(self.vae.config.block_out_channels) - 1)) != (4, 8):
            raise ConfigError("sd2.model.pretrained: expected a VAE with 4 latent channels that downsamples by 8 "
                              "(Stable Diffusion's)")
        self.adapters: list[str] = []
        self.active = _UNKNOWN
        self._text: dict = {}

    # --- adapters ---

    def add_adapter(self, rank: int, alpha: float, seed: int = 0) -> str:
        """A new LoRA adapter on the attention projections; A is seeded, B = 0 (the model starts as the base)."""
        from peft import LoraConfig

        name = f"ft{next(_NAMES)}"
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")  # several adapters: by design
            torch.manual_seed(seed)
            self.unet.add_adapter(LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian",
                                             target_modules=LORA_TARGETS), adapter_name=name)
        for _, p in self.lora_parameters(name):
            p.data = p.data.float()  # trainable weights stay fp32 under mixed precision
        self.adapters.append(name)
        self.active = _UNKNOWN
        return name

    def lora_parameters(self, name: str) -> list[tuple[str, nn.Parameter]]:
        """(key, parameter) of an adapter; keys are peft's names without the adapter, prefixed "unet."."""
        tag = f".{name}."
        return [("unet." + n.replace(tag, "."), p) for n, p in self.unet.named_parameters() if tag in n]

    def activate(self, name: str | None) -> None:
        """Run the UNet with adapter `name`, or with no adapter (None: the pretrained base)."""
        if name == self.active:
            return
        if name is None:
            if self.adapters:
                self.unet.disable_adapters()
        else:
            self.unet.set_adapter(name)
            self.unet.enable_adapters()
        self.active = name

    # --- text conditioning ---

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Text-encoder states of token rows (frozen; cached for the last token tensor: a sampling loop passes
        the same one at every step, and recognising it needs no comparison that would wait on the device)."""
        tokens = tokens.to(self.device)  # a no-op when the sampler keeps its batch on the device
        last = self._text.get("cond")
        if last is None or last[0] is not tokens:
            with torch.no_grad():
                last = self._text["cond"] = (tokens, self.text_encoder(tokens)[0])
        return last[1]

    def null_embedding(self, n: int) -> torch.Tensor:
        """States of n empty prompts (encoded as a batch of n, as diffusers' pipeline does)."""
        if self._text.get("null", (None,))[0] != n:
            ids = self.tokenizer([""] * n, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt").input_ids
            with torch.no_grad():
                self._text["null"] = (n, self.text_encoder(ids.to(self.device))[0])
        return self._text["null"][1]

    def tokens(self, prompts: list[str]):
        """Token ids (n, model_max_length) int64 numpy, padded as the pipeline pads them."""
        return self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="np").input_ids.astype("int64")

    # --- images ---

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """uint8 images (n, H, W, 3) of latents (the sampler's x_0, before the VAE scaling factor)."""
        z = latents.to(self.device, self.dtype) / self.vae.config.scaling_factor
        img = self.vae.decode(z).sample.float().clamp(-1, 1)
        return ((img + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def load_parts(pretrained: str, precision: str = "fp16", device: str | torch.device = "auto") -> Sd2Parts:
    """The process's one copy of the frozen components of `pretrained` (loaded on first use)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    device = resolve_device(device)
    key = (str(pretrained), precision, str(device))
    if key in _PARTS:
        return _PARTS[key]
    loaded = {}
    for sub, cls in (("unet", UNet2DConditionModel), ("vae", AutoencoderKL), ("text_encoder", CLIPTextModel)):
        try:
            loaded[sub] = cls.from_pretrained(pretrained, subfolder=sub, **_source(pretrained))
        except (OSError, ValueError, TypeError) as err:
            raise ConfigError(f"sd2.model.pretrained={pretrained!r}: cannot load the Stable Diffusion 2 {sub} "
                              f"({type(err).__name__}: {err})") from err
    # mixed precision on a GPU (fp16/bf16 frozen weights, fp32 LoRA); a CPU computes in fp32
    dtype = DTYPES[precision] if device.type == "cuda" else torch.float32
    _PARTS[key] = Sd2Parts(**loaded, tokenizer=load_tokenizer(pretrained),
                           scheduler_config=load_scheduler_config(pretrained), device=device, dtype=dtype)
    return _PARTS[key]


class Sd2LoraModel(nn.Module):
    """model(x_t, t, tokens) -> ε with classifier-free guidance; the trainable part is one LoRA adapter.

    config: pretrained, precision, device, guidance_scale, lora_rank, lora_alpha, lora (False: the base, no
    adapter). Only the adapter's tensors are parameters of this module (the frozen parts are shared, not
    submodules), so `parameters()`, `requires_grad_`, `state_dict` and optimizers see the LoRA only.
    """

    def __init__(self, parts: Sd2Parts, config: dict):
        super().__init__()
        self.config = dict(config)
        self.parts = parts
        self.adapter = parts.add_adapter(config["lora_rank"], config["lora_alpha"]) if config["lora"] else None
        named = parts.lora_parameters(self.adapter) if self.adapter else []
        self._keys = [k for k, _ in named]
        self.lora = nn.ParameterList([p for _, p in named])

    def forward(self, x: torch.Tensor, t: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        p = self.parts
        p.activate(self.adapter)
        g = float(self.config["guidance_scale"])
        xin, tin = x.to(p.device, p.dtype), t.to(p.device)
        text = p.embed(tokens)
        if g > 1:  # [uncond, cond] in one UNet batch, combined as diffusers' StableDiffusionPipeline does
            out = p.unet(torch.cat([xin, xin]), torch.cat([tin, tin]) if tin.ndim else tin,
                         encoder_hidden_states=torch.cat([p.null_embedding(len(x)), text])).sample
            uncond, cond = out.chunk(2)
            out = uncond + g * (cond - uncond)
        else:
            out = p.unet(xin, tin, encoder_hidden_states=text).sample
        if p.prediction_type == "v_prediction":  # ε = sqrt(ᾱ)·v + sqrt(1-ᾱ)·x_t
            ab = p.alphas_cumprod.to(p.device)[tin.long()].view(-1, *[1] * (x.ndim - 1))
            out = ab.sqrt() * out + (1 - ab).sqrt() * xin
        return out.to(x.device, x.dtype)

    # --- LoRA-only checkpoints ---

    def state_dict(self, *args, **kwargs) -> dict:
        return {k: p.detach() for k, p in zip(self._keys, self.lora)}

    def load_state_dict(self, state: dict, strict: bool = True, assign: bool = False):
        missing, unexpected = sorted(set(self._keys) - set(state)), sorted(set(state) - set(self._keys))
        if missing or unexpected:
            raise RuntimeError(f"LoRA tensors do not match this model (rank {self.config['lora_rank']}, "
                               f"lora={self.config['lora']}): missing {missing[:3]}, unexpected {unexpected[:3]}")
        with torch.no_grad():
            for k, p in zip(self._keys, self.lora):
                p.copy_(state[k])
        return nn.modules.module._IncompatibleKeys([], [])

    def __deepcopy__(self, memo):
        """A copy computing the same function with its own adapter on the SAME frozen UNet (one UNet in memory).

        Copying the base (no adapter) gives a fresh adapter with B = 0, i.e. exactly the base: what the
        fine-tuning stages train."""
        twin = Sd2LoraModel(self.parts, {**self.config, "lora": True})
        if self.adapter is not None:
            twin.load_state_dict(self.state_dict())
        twin.train(self.training)
        return twin


def stitched_sample(finetuned: nn.Module, base: nn.Module, k: int, schedule, latents: torch.Tensor,
                    tokens: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """P-GRAFT inference in ONE loop: LoRA on for the first k steps, off for the rest (k = 0: the base)."""
    from pgraft.samplers.rollout import rollout
    from pgraft.samplers.stitched import Stitched

    return rollout(Stitched(finetuned, base, k), schedule, latents, generator, cond=tokens)[0]
