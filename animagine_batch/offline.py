"""Embedded models built offline: CLIP tokenizer files and seeded SDXL pipelines.

The tokenizer files are derived from the real CLIP BPE that ships inside open_clip, so token ids
match real CLIP. Pipelines are built from the component configs in `offline_configs/` with a fixed
seed, saved once with `save_pretrained` into the cache folder and then loaded with the same
`from_pretrained` code as real models.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from functools import lru_cache
from pathlib import Path

from .cache import build_once, cache_dir
from .spec.job import EMBEDDED_MODELS as EMBEDDED

BUILDER_VERSION = 1  # bump when the build changes the weights
CONFIG_ROOT = Path(__file__).parent / "offline_configs"


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable unicode table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


@lru_cache(maxsize=1)
def clip_vocab_and_merges() -> tuple[dict[str, int], list[str]]:
    """CLIP's vocab (49,408 entries) and merges from open_clip's bundled BPE file."""
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    units = list(_bytes_to_unicode().values())
    tokens = units + [u + "</w>" for u in units] + ["".join(m.split()) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(tokens)}, merges


def make_tokenizer(pad_token: str = "<|endoftext|>"):
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab_and_merges()
    return CLIPTokenizer(vocab=dict(vocab), merges=[tuple(m.split()) for m in merges], pad_token=pad_token,
                         model_max_length=77)


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


def tokenizer_dir() -> Path:
    """A saved CLIP tokenizer (identical to SDXL's first tokenizer) for token counting."""
    return build_once(cache_dir() / "tokenizers" / f"clip-v{BUILDER_VERSION}",
                      lambda folder: make_tokenizer().save_pretrained(folder))
