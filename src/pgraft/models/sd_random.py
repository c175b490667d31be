"""Random-weight Stable Diffusion 2 components (tiny or at SD2's real width): tests and benchmarks, no download.

The tokenizer is a character-level CLIP BPE (every byte a token, no merges), built from a vocabulary written
here, so prompts still map to distinct token rows. Saved with `save_pretrained` in the diffusers layout
(unet/, vae/, text_encoder/, tokenizer/, scheduler/), it loads through exactly the code that loads the real
stabilityai/stable-diffusion-2-1-base.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: architecture sizes: "tiny" runs in milliseconds on a CPU; "sd2" has SD2's real UNet, VAE and text-encoder widths
SIZES = {
    "tiny": {"unet": dict(block_out_channels=(16, 32), layers_per_block=1, attention_head_dim=(2, 4), norm_num_groups=8,
                          cross_attention_dim=32, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                          up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")),
             "vae": dict(block_out_channels=(8, 8, 16, 16), layers_per_block=1, norm_num_groups=8),
             "text": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4),
             "max_tokens": 32},
    "sd2": {"unet": dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
                         attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, norm_num_groups=32,
                         down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                         up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3),
            "vae": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
            "text": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16),
            "max_tokens": 77},
}


def random_tokenizer(max_tokens: int):
    """A CLIP tokenizer over single characters: ids 0/1 are start/end (end also pads)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in chars:
            vocab[c + suffix] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_tokens)


def random_components(size: str = "tiny", resolution: int = 64, seed: int = 0) -> dict:
    """unet, vae, text_encoder, tokenizer and scheduler (SD2's noise schedule) with seeded random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    if size not in SIZES:
        raise ValueError(f"size {size!r}: expected one of {sorted(SIZES)}")
    if resolution % 8:
        raise ValueError(f"resolution {resolution}: must be a multiple of 8 (the VAE downsamples by 8)")
    s = SIZES[size]
    tokenizer = random_tokenizer(s["max_tokens"])
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(sample_size=resolution // 8, in_channels=4, out_channels=4, use_linear_projection=True,
                                **s["unet"])
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, sample_size=resolution,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                        **s["vae"])
    text_encoder = CLIPTextModel(CLIPTextConfig(vocab_size=len(tokenizer), max_position_embeddings=s["max_tokens"],
                                                bos_token_id=0, eos_token_id=1, pad_token_id=1, **s["text"]))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return {"unet": unet.eval(), "vae": vae.eval(), "text_encoder": text_encoder.eval(), "tokenizer": tokenizer,
            "scheduler": scheduler}


def save_random_sd2(out_dir: str | Path, size: str = "tiny", resolution: int = 64, seed: int = 0) -> Path:
    """Write a random-weight StableDiffusionPipeline directory (no safety checker) and return its path."""
    from diffusers import StableDiffusionPipeline

    out_dir = Path(out_dir)
    pipe = StableDiffusionPipeline(**random_components(size, resolution, seed), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out_dir)
    return out_dir
