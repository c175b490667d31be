"""Stable Diffusion 2 with LoRA: prompt-conditioned latents, rewards on the VAE-decoded images (VQAScore by default).

Samples x are SD latents (4, H/8, W/8) from the sampler, before the VAE scaling factor; rewards, metrics and
galleries decode them with the VAE. The network is models.sd_lora.Sd2LoraModel: the frozen UNet with
classifier-free guidance over the frozen CLIP text encoder, plus one LoRA adapter per fine-tuned model.
The base is `sd2.model.pretrained` (a hub id or a local diffusers directory); the pretrain stage only
records it. Prompts come from `sd2.prompts.path` (a text file, one prompt a line, or GenAI-Bench-style
JSON) or a small built-in list, split into training and held-out prompts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from pgraft.domains.base import Cond, DiffusionDomain, prompts_of
from pgraft.errors import ConfigError
from pgraft.params_base import FilterParams, FinetuneParams, SamplerParams, Strict

GALLERY_REPEATS = 2  # samples per gallery prompt
DATA_STEPS = 5  # DDIM steps of sample_data (base samples stand for the data of a published model)
BUILTIN_PROMPTS = [
    "a red apple on a wooden table", "a blue car parked next to a yellow house", "two cats sleeping on a sofa",
    "a lighthouse on a cliff at sunset", "three green bottles on a shelf", "a dog wearing a red scarf",
    "a snowy mountain above a calm lake", "a teapot to the left of a cup", "an astronaut riding a horse",
    "a bowl of oranges under a lamp", "a white boat on a dark sea", "a small robot holding a flower",
    "a bicycle leaning against a brick wall", "a black and white photo of a bridge", "four candles on a cake",
    "a purple umbrella in the rain",
]


class Sd2ModelParams(Strict):
    pretrained: str = Field("stabilityai/stable-diffusion-2-1-base", min_length=1)
    resolution: int = Field(512, ge=8, le=2048)
    precision: Literal["fp16", "bf16", "fp32"] = "fp16"
    device: Literal["auto", "cuda", "cpu"] | None = "auto"  # None: the top-level `device`
    guidance_scale: float = Field(7.5, ge=0.0)
    lora_rank: int = Field(4, ge=1, le=256)
    lora_alpha: float = Field(4.0, gt=0.0)

    @field_validator("resolution")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            raise ValueError("must be a multiple of 8 (the VAE downsamples by 8)")
        return v


class Sd2PromptParams(Strict):
    path: str | None = None
    heldout_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    split_seed: int = Field(0, ge=0)


class Sd2RewardParams(Strict):
    name: str = "vqascore"
    vqa_model: str = Field("clip-flant5-xxl", min_length=1)
    command: list[str] = Field(default_factory=list)
    timeout_s: float = Field(3600.0, gt=0.0)
    batch_size: int = Field(16, ge=1)
    chunk_size: int = Field(512, ge=1)

    @field_validator("name")
    @classmethod
    def _registered(cls, v: str) -> str:
        from pgraft.rewards.t2i import REWARDS

        REWARDS.get(v)  # raises ValueError listing the valid names
        return v


class Sd2Params(Strict):
    model: Sd2ModelParams = Sd2ModelParams()
    prompts: Sd2PromptParams = Sd2PromptParams()
    reward: Sd2RewardParams = Sd2RewardParams()
    metrics: list[str] = Field(default_factory=list)
    finetune: FinetuneParams | None = None
    filter: FilterParams | None = None

    @field_validator("metrics")
    @classmethod
    def _registered(cls, v: list[str]) -> list[str]:
        from pgraft.rewards.t2i import REWARDS

        for name in v:
            REWARDS.get(name)
        return v


def read_prompts(path: str) -> list[str]:
    """Prompts of a text file (one a line) or a GenAI-Bench-style JSON (a list, or {id: {...}}, of {"prompt": ...})."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"sd2.prompts.path={path!r}: cannot read the prompt file ({err})") from err
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as err:
            raise ConfigError(f"sd2.prompts.path={path!r}: not valid JSON ({err})") from err
        items = list(data.values()) if isinstance(data, dict) else data
        if not isinstance(items, list) or not all(isinstance(i, str) or (isinstance(i, dict) and "prompt" in i)
                                                  for i in items):
            raise ConfigError(f"sd2.prompts.path={path!r}: expected a list or mapping of {{\"prompt\": ...}} items")
        prompts = [i if isinstance(i, str) else str(i["prompt"]) for i in items]
    else:
        prompts = text.splitlines()
    prompts = list(dict.fromkeys(q.strip() for q in prompts if q.strip()))  # distinct, in file order
    if len(prompts) < 2:
        raise ConfigError(f"sd2.prompts.path={path!r}: needs at least 2 distinct prompts (train and held-out)")
    return prompts


class Sd2Domain(DiffusionDomain):
    name = "sd2"
    Params = Sd2Params
    conditional = True
    pretrained = True
    gallery_size = 1  # galleries are drawn per prompt (gallery_prompts)

    def __init__(self, params):
        super().__init__(params)
        r = params.model.resolution
        self.shape = (4, r // 8, r // 8)
        self._tokenizer = None

    # --- the pretrained model ---

    @property
    def device(self) -> str:
        """The UNet's device (sd2.model.device, or the top-level `device` when that is null): sampling batches
        stay there for the whole rollout."""
        from pgraft.devices import resolve_device

        own = self.params.model.device
        return str(resolve_device(self.device_setting if own is None else own,
                                  "device" if own is None else "sd2.model.device"))

    def parts(self):
        from pgraft.models.sd_lora import load_parts

        m = self.params.model
        return load_parts(m.pretrained, m.precision, self.device)

    def schedule(self, sampler):
        from pgraft.models.sd_lora import load_scheduler_config
        from pgraft.samplers.schedule import build_schedule

        return build_schedule(sampler, config=load_scheduler_config(self.params.model.pretrained))

    def build_model(self):
        """The base: the pretrained UNet with no adapter (fine-tuning copies it into a LoRA model)."""
        m = self.params.model
        return self.model_from_config({"pretrained": m.pretrained, "precision": m.precision, "device": m.device,
                                       "guidance_scale": m.guidance_scale, "lora_rank": m.lora_rank,
                                       "lora_alpha": m.lora_alpha, "lora": False})

    def model_from_config(self, config: dict):
        from pgraft.models.sd_lora import Sd2LoraModel

        if config.get("pretrained") != self.params.model.pretrained:
            raise ConfigError(f"sd2.model.pretrained={self.params.model.pretrained!r} but the saved model was built "
                              f"on {config.get('pretrained')!r}; rerun pretrain")
        return Sd2LoraModel(self.parts(), config)

    # --- prompts ---

    def all_prompts(self) -> list[str]:
        path = self.params.prompts.path
        return read_prompts(path) if path else list(BUILTIN_PROMPTS)

    def prompts(self, split: str) -> list[str]:
        if split not in ("train", "heldout"):
            raise ValueError(f"prompt split {split!r}: expected 'train' or 'heldout'")
        everything = self.all_prompts()
        cfg = self.params.prompts
        n_held = min(len(everything) - 1, max(1, int(round(cfg.heldout_fraction * len(everything)))))
        held = set(np.random.default_rng(cfg.split_seed).permutation(len(everything))[:n_held].tolist())
        return [q for i, q in enumerate(everything) if (i in held) == (split == "heldout")]

    def tokens(self, prompts: list[str]) -> np.ndarray:
        if self._tokenizer is None:  # the tokenizer alone: reward-free stages need no UNet for this
            from pgraft.models.sd_lora import load_tokenizer

            self._tokenizer = load_tokenizer(self.params.model.pretrained)
        tok = self._tokenizer
        return tok(list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="np").input_ids.astype(np.int64)

    def sample_data(self, n: int, generator):
        """(latents, prompts): base samples (DATA_STEPS deterministic DDIM steps) for random prompts."""
        import torch

        from pgraft.models.sd_lora import stitched_sample

        pool = self.all_prompts()
        prompts = [pool[int(i)] for i in torch.randint(len(pool), (n,), generator=generator)]
        base = self.build_model()
        x = torch.randn((n, *self.shape), generator=generator).to(self.device)  # the rollout stays on the device
        schedule = self.schedule(SamplerParams(name="ddim", num_steps=DATA_STEPS, eta=0.0))
        tokens = torch.as_tensor(self.tokens(prompts)).to(self.device)
        return stitched_sample(base, base, 0, schedule, x, tokens, generator).cpu(), prompts

    # --- rewards on decoded images ---

    def images(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """uint8 images (n, H, W, 3) of latents x, decoded in batches."""
        import torch

        bs = batch_size or self.params.reward.batch_size
        parts = self.parts()
        return np.concatenate([parts.decode(torch.as_tensor(x[i:i + bs], dtype=torch.float32)).numpy()
                               for i in range(0, len(x), bs)]) if len(x) else np.zeros((0, 8, 8, 3), np.uint8)

    def _score(self, name: str, x: np.ndarray, prompts: list[str]) -> np.ndarray:
        """Reward `name` in chunks of reward.chunk_size images (memory: only one chunk is decoded at a time)."""
        from pgraft.rewards.t2i import REWARDS

        fn, cfg = REWARDS.get(name), self.params.reward
        out = [np.asarray(fn(self.images(x[i:i + cfg.chunk_size]), list(prompts[i:i + cfg.chunk_size]), cfg),
                          dtype=np.float64) for i in range(0, len(x), cfg.chunk_size)]
        return np.concatenate(out) if out else np.zeros(0)

    def reward(self, x: np.ndarray, cond: Cond = None) -> np.ndarray:
        """reward.name of the decoded images with their prompts."""
        return self._score(self.params.reward.name, x, prompts_of(self, x, cond))

    def extra_metrics(self, x: np.ndarray, cond: Cond = None) -> dict[str, float]:
        """The mean of every reward listed in sd2.metrics (e.g. vqascore when training on another reward)."""
        prompts = prompts_of(self, x, cond)
        return {f"{name}_mean": float(self._score(name, x, prompts).mean()) for name in self.params.metrics}

    # --- gallery ---

    def gallery_prompts(self) -> list[str]:
        """Two training and two held-out prompts, GALLERY_REPEATS samples each."""
        chosen = self.prompts("train")[:2] + self.prompts("heldout")[:2]
        return [q for q in chosen for _ in range(GALLERY_REPEATS)]

    def draw(self, ax, x: np.ndarray, cond: Cond = None) -> None:
        """The decoded images side by side, the prompt under each group of repeats."""
        imgs = self.images(x)
        n, h, w = len(imgs), imgs.shape[1], imgs.shape[2]
        sheet = np.full((h, n * (w + 2), 3), 255, dtype=np.uint8)
        for i in range(n):
            sheet[:, i * (w + 2):i * (w + 2) + w] = imgs[i]
        ax.imshow(sheet, interpolation="nearest")
        ax.set_yticks([])
        if cond is not None:
            step = GALLERY_REPEATS
            ax.set_xticks([(i + step / 2) * (w + 2) - 1 for i in range(0, n, step)])
            ax.set_xticklabels([str(cond[i])[:40] for i in range(0, n, step)], fontsize=6, rotation=20)
        else:
            ax.set_xticks([])
