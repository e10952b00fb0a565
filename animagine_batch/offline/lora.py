"""A tiny LoRA for the embedded tiny SDXL UNet, built offline and saved as safetensors the way
diffusers saves LoRAs (`save_lora_weights`), so it loads through `load_lora_weights` like any
LoRA downloaded from a model site."""

from __future__ import annotations

from pathlib import Path

from ..cache import build_once
from ..jobspec.loras import LORA_FILE, embedded_path, embedded_seed
from .models import ensure_model

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
RANK = 4


def ensure_lora(seed: int = 0) -> Path:
    """Build (once) a rank-4 LoRA of the tiny UNet (weights seed 0) with seeded non-zero
    weights; returns the path of its .safetensors file (`spec.loras.embedded_path`)."""
    target = embedded_path(seed).parent
    rank, model_seed = RANK, 0

    def build(folder: Path):
        import torch
        from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
        from peft import LoraConfig, get_peft_model_state_dict

        unet = UNet2DConditionModel.from_pretrained(ensure_model("tiny", model_seed) / "unet")
        state = torch.random.get_rng_state()
        try:
            torch.manual_seed(seed)
            # init_lora_weights=False: A and B both random, so the LoRA changes the output
            unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=TARGETS,
                                        init_lora_weights=False))
        finally:
            torch.random.set_rng_state(state)
        layers = get_peft_model_state_dict(unet)
        StableDiffusionXLPipeline.save_lora_weights(folder, unet_lora_layers=layers,
                                                    weight_name=LORA_FILE, safe_serialization=True)

    return build_once(target, build) / LORA_FILE


def ensure_embedded(text: str) -> None:
    """Build the LoRA an `embedded:` name stands for (a file path needs nothing)."""
    seed = embedded_seed(text)
    if seed is not None:
        ensure_lora(seed)
