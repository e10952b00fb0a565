"""Embedded models built offline: seeded SDXL pipelines (`tiny`, `sdxl_random`).

Pipelines are built from the component configs in `configs/` with a fixed seed, saved once with
`save_pretrained` into the cache folder and then loaded with the same `from_pretrained` code as
real models.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..cache import build_once, cache_dir
from ..jobspec.job import EMBEDDED_MODELS as EMBEDDED
from .tokenizers import make_tokenizer

BUILDER_VERSION = 1  # bump when the build changes the weights
CONFIG_ROOT = Path(__file__).parent / "configs"


def _config(kind: str, component: str) -> dict:
    return json.loads((CONFIG_ROOT / kind / f"{component}.json").read_text())


def model_dir(name: str, seed: int = 0) -> Path:
    """Cache folder of an embedded model; its name carries a hash of configs, seed and builder."""
    kind = EMBEDDED[name]
    blob = json.dumps(
        {c.stem: json.loads(c.read_text()) for c in sorted((CONFIG_ROOT / kind).glob("*.json"))}
        | {"seed": seed, "builder": BUILDER_VERSION},
        sort_keys=True,
    )
    digest = hashlib.sha256(blob.encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{name}-seed{seed}-{digest}"


def build_pipeline(name: str, seed: int = 0, dtype=None):
    """A seeded SDXL pipeline from the shipped component configs (not saved)."""
    import torch
    from diffusers import (AutoencoderKL, EulerAncestralDiscreteScheduler,
                           StableDiffusionXLPipeline, UNet2DConditionModel)
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    kind = EMBEDDED[name]
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**_config(kind, "unet"))
        torch.manual_seed(seed + 1)
        vae = AutoencoderKL(**_config(kind, "vae"))
        torch.manual_seed(seed + 2)
        te1 = CLIPTextModel(CLIPTextConfig(**_config(kind, "text_encoder")))
        torch.manual_seed(seed + 3)
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**_config(kind, "text_encoder_2")))
    finally:
        torch.random.set_rng_state(gen_state)
    with torch.device("cpu"):  # its tables stay on the CPU under a caller's device context
        scheduler = EulerAncestralDiscreteScheduler.from_config(_config(kind, "scheduler"))
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=te1, text_encoder_2=te2, tokenizer=make_tokenizer("<|endoftext|>"),
        tokenizer_2=make_tokenizer("!"), unet=unet, scheduler=scheduler,
        add_watermarker=False,
    )
    if dtype is not None:
        pipe.to(dtype=dtype)
    return pipe


def ensure_model(name: str, seed: int = 0) -> Path:
    """Build the embedded model into the cache once; return its diffusers folder."""

    def build(folder: Path):
        import diffusers
        import torch
        import transformers

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
        dtype = torch.float16 if name == "sdxl_random" else None  # 7 GB instead of 14 GB on disk
        build_pipeline(name, seed, dtype).save_pretrained(folder, safe_serialization=True)

    return build_once(model_dir(name, seed), build)
