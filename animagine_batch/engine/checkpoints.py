"""SDXL pipelines as one `.safetensors` file in the original (SGM) key layout.

That is the layout Animagine XL and other SDXL checkpoints are published in, and the one diffusers'
`from_single_file` reads: `model.diffusion_model.*` (UNet), `first_stage_model.*` (VAE),
`conditioner.embedders.0.transformer.*` (CLIP text encoder) and `conditioner.embedders.1.model.*`
(OpenCLIP text encoder with projection). `to_original` maps a pipeline's weights into it;
`save_single_file` writes a diffusers folder as such a file.
"""

from __future__ import annotations

import re
from pathlib import Path

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP = "conditioner.embedders.0.transformer."
OPEN_CLIP = "conditioner.embedders.1.model."

_RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0",
           "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_UNET_FIXED = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_OPEN_CLIP_LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc",
                    "mlp.fc2": "mlp.c_proj", "self_attn.out_proj": "attn.out_proj"}


def _rename(rest: str, table: dict[str, str]) -> str:
    for new, old in table.items():
        if rest == new or rest.startswith(new + "."):
            return old + rest[len(new):]
    return rest


def unet_to_original(sd: dict, layers_per_block: int, up_attention: list[bool]) -> dict:
    """UNet weights in the original layout (keys without the `model.diffusion_model.` prefix).

    `up_attention[b]` says whether up block `b` has attention layers: the upsampler then sits at
    index 2 of its last layer instead of 1."""
    per = layers_per_block + 1
    out = {}
    for key, value in sd.items():
        if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            new = (f"input_blocks.{1 + b * per + j}."
                   + (f"0.{_rename(rest, _RESNET)}" if kind == "resnets" else f"1.{rest}"))
        elif m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            new = f"input_blocks.{1 + int(m[1]) * per + layers_per_block}.0.op.{m[2]}"
        elif m := re.fullmatch(r"mid_block\.resnets\.(\d)\.(.+)", key):
            new = f"middle_block.{2 * int(m[1])}.{_rename(m[2], _RESNET)}"
        elif m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
            new = f"middle_block.1.{m[1]}"
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            new = (f"output_blocks.{b * per + j}."
                   + (f"0.{_rename(rest, _RESNET)}" if kind == "resnets" else f"1.{rest}"))
        elif m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            b = int(m[1])
            new = f"output_blocks.{b * per + layers_per_block}.{2 if up_attention[b] else 1}.conv.{m[2]}"
        else:
            new = _rename(key, _UNET_FIXED)
            if new == key:
                raise ValueError(f"unet: no original name for {key!r}")
        out[new] = value
    return out


def vae_to_original(sd: dict, num_up_blocks: int) -> dict:
    """VAE weights in the original layout (keys without the `first_stage_model.` prefix)."""
    out = {}
    for key, value in sd.items():
        new = key.replace("conv_norm_out", "norm_out")
        if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3].replace('conv_shortcut', 'nin_shortcut')}"
        elif m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.(.+)", key):
            new = f"encoder.down.{m[1]}.downsample.{m[2]}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            new = (f"decoder.up.{num_up_blocks - 1 - int(m[1])}.block.{m[2]}."
                   f"{m[3].replace('conv_shortcut', 'nin_shortcut')}")
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
            new = f"decoder.up.{num_up_blocks - 1 - int(m[1])}.upsample.{m[2]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d)\.(.+)", key):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
            new = f"{m[1]}.mid.attn_1.{_rename(m[2], _VAE_ATTN)}"
            if value.ndim == 2:  # the original attention projections are 1x1 convolutions
                value = value[:, :, None, None]
        out[new] = value
    return out


def clip_to_original(sd: dict) -> dict:
    """CLIPTextModel weights in the original layout (HF names under `text_model.`)."""
    return {k if k.startswith("text_model.") else f"text_model.{k}": v
            for k, v in sd.items() if not k.endswith("position_ids")}


def open_clip_to_original(sd: dict) -> dict:
    """CLIPTextModelWithProjection weights in OpenCLIP's layout (fused q/k/v, transposed projection)."""
    import torch

    sd = {k.removeprefix("text_model."): v for k, v in sd.items() if not k.endswith("position_ids")}
    out = {"positional_embedding": sd.pop("embeddings.position_embedding.weight"),
           "token_embedding.weight": sd.pop("embeddings.token_embedding.weight"),
           "text_projection": sd.pop("text_projection.weight").T.contiguous()}
    for key, value in sd.items():
        if m := re.fullmatch(r"encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key):
            if m[2] == "q":
                fused = [sd[f"encoder.layers.{m[1]}.self_attn.{p}_proj.{m[3]}"] for p in "qkv"]
                out[f"transformer.resblocks.{m[1]}.attn.in_proj_{m[3]}"] = torch.cat(fused)
        elif m := re.fullmatch(r"encoder\.layers\.(\d+)\.(.+)", key):
            out[f"transformer.resblocks.{m[1]}.{_rename(m[2], _OPEN_CLIP_LAYER)}"] = value
        elif key.startswith("final_layer_norm."):
            out[key.replace("final_layer_norm", "ln_final")] = value
        else:
            raise ValueError(f"text_encoder_2: no original name for {key!r}")
    return out


def to_original(pipe) -> dict:
    """All weights of an SDXL pipeline under their original single-file names."""
    unet = pipe.unet.config
    up_attention = [t.startswith("CrossAttn") for t in unet.up_block_types]
    parts = [
        (UNET, unet_to_original(pipe.unet.state_dict(), unet.layers_per_block, up_attention)),
        (VAE, vae_to_original(pipe.vae.state_dict(), len(pipe.vae.config.up_block_types))),
        (CLIP, clip_to_original(pipe.text_encoder.state_dict())),
        (OPEN_CLIP, open_clip_to_original(pipe.text_encoder_2.state_dict())),
    ]
    return {prefix + k: v.contiguous() for prefix, sd in parts for k, v in sd.items()}


def save_single_file(folder: str | Path, target: str | Path) -> Path:
    """Write the SDXL pipeline of a diffusers folder as one original-layout `.safetensors` file."""
    from diffusers import StableDiffusionXLPipeline
    from safetensors.torch import save_file

    pipe = StableDiffusionXLPipeline.from_pretrained(str(folder), use_safetensors=True)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(to_original(pipe), str(target))
    return target


def open_clip_text_encoder(path: str, config: str | None, dtype=None):
    """`text_encoder_2` of an original-layout SDXL file, built from its OpenCLIP weights alone;
    None when the file has none.

    diffusers' `from_single_file` tells the two text encoders apart by key names and width, and
    gives text_encoder_2 the first encoder's weights when both have the same width (as in small
    test models); built from the `conditioner.embedders.1.model.` keys only, it cannot."""
    from diffusers.loaders.single_file_utils import (create_diffusers_clip_model_from_ldm,
                                                     load_single_file_checkpoint)
    from transformers import CLIPTextModelWithProjection

    if path.lower().endswith(".safetensors"):
        from safetensors import safe_open

        with safe_open(path, "pt") as f:
            weights = {k: f.get_tensor(k) for k in f.keys() if k.startswith(OPEN_CLIP)}
    else:  # pickle: read by diffusers with torch's weights_only unpickler
        weights = {k: v for k, v in load_single_file_checkpoint(path).items()
                   if k.startswith(OPEN_CLIP)}
    if not weights:
        return None
    return create_diffusers_clip_model_from_ldm(CLIPTextModelWithProjection, weights,
                                                subfolder="text_encoder_2", config=config,
                                                torch_dtype=dtype)
