"""CLIP score with open_clip: `clip_score` = 100 * max(cos, 0) between the image and its
CONTENT prompt (no special tags, preset tails or emphasis), plus the raw cosine and whether the
text was truncated at CLIP's 77-token context. Optionally keeps float16 image embeddings
(`clip_image_embedding`, raw bytes) for diversity analysis.

`resize_mode` (open_clip's `image_resize_mode`: `shortest`, its default for most models, resizes
the short side and centre-crops; `longest` pads; `squash` stretches) sets how a non-square image
reaches the model.

Sources: an open_clip model name with a pretrained tag (`ViT-H-14` / `laion2b_s32b_b79k`), a
local weights file (`pretrained: /path/open_clip_model.safetensors`), or `model: local-dir:/path`.
"""

from __future__ import annotations

import numpy as np

from .. import offline_scorers
from ..errors import ConfigError
from . import base
from .base import batches, load_error, require_cached

PRECISIONS = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}  # open_clip's names
RESIZE_MODES = ("shortest", "longest", "squash")  # open_clip's image_resize_mode


def resolve_precision(name: str, options: dict, device: str | None) -> str:
    """`precision`: auto (fp32 on the CPU, fp16 on a GPU), fp32, fp16 or bf16."""
    precision = str(options.get("precision") or "auto")
    if precision == "auto":
        return "fp32" if device in (None, "cpu") else "fp16"
    if precision not in PRECISIONS:
        raise ConfigError(f"scorer.{name}.precision: {precision!r} is not one of "
                          f"auto, {', '.join(PRECISIONS)}")
    return precision


class ClipScorer:
    kind = "clip"
    version = "1"
    higher_is_better = {"clip_score": True, "clip_cosine": True}
    options = {**base.COMMON, "model": base.text, "pretrained": base.text,
               "store_embeddings": base.switch,
               "precision": lambda v: None if v in ("auto", *PRECISIONS) else
               f"is not one of auto, {', '.join(PRECISIONS)}",
               "resize_mode": lambda v: None if v in RESIZE_MODES else
               f"is not one of {', '.join(RESIZE_MODES)}"}
    reference_tolerance = 0.02  # embedding entries, fp16 on a GPU against fp32 on the CPU

    @staticmethod
    def columns(options: dict) -> dict[str, str]:
        cols = {"clip_score": "float32", "clip_cosine": "float32", "clip_truncated": "bool"}
        if options.get("store_embeddings"):
            cols["clip_image_embedding"] = "binary"
        return cols

    @staticmethod
    def hint(name: str) -> str:
        return (f"Give local weights with scorer.{name}.pretrained=/path/to/file "
                f"or scorer.{name}.model=local-dir:/path/to/folder")

    @classmethod
    def check(cls, name: str, options: dict) -> None:
        """With the hub offline, a pretrained tag's weights must be cached (open_clip, slow to
        import, is imported only for a hub tag)."""
        resolve_precision(name, options, None)
        model, tag = str(options.get("model") or ""), options.get("pretrained")
        if options.get("embedded") or not tag or model.startswith("local-dir:"):
            return
        if "/" in str(tag) or str(tag).endswith((".pt", ".bin", ".safetensors")):
            return  # a file: checked when loaded
        import open_clip

        hub = (open_clip.get_pretrained_cfg(model, tag) or {}).get("hf_hub", "")
        if hub:
            repo = hub.rstrip("/")
            require_cached(name, repo, ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
                           None, cls.hint(name))

    def __init__(self, name: str, options: dict, device: str):
        import open_clip
        import torch

        self.name = name
        self.device = device
        self.batch_size = int(options.get("batch_size", 16))
        self.store_embeddings = bool(options.get("store_embeddings"))
        model_name, pretrained = options.get("model"), options.get("pretrained")
        if options.get("embedded"):
            pretrained = str(offline_scorers.ensure_tiny_clip())
            model_name = offline_scorers.register_tiny_clip()
        precision = resolve_precision(name, options, device)
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, device=device, precision=precision,
                image_resize_mode=options.get("resize_mode"))
        except Exception as e:  # noqa: BLE001 - any load failure is reported the same way
            raise load_error(name, f"open_clip model {model_name!r} with weights {pretrained!r}", e,
                             self.hint(name)) from None
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.context = int(getattr(self.tokenizer, "context_length", 77))
        # open_clip's fp16/bf16 keep the embeddings and norms in float32 (the first parameter
        # says float32), while the convolutions and linear layers take the input: cast to theirs
        self.dtype = getattr(torch, PRECISIONS[precision])
        self._torch = torch

    @property
    def preprocessing(self) -> dict:
        """open_clip's image preprocessing of this model (size, resize mode, interpolation,
        mean, std)."""
        cfg = getattr(self.model.visual, "preprocess_cfg", None) or {}
        return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()} or \
            {"transforms": repr(self.preprocess)}

    def reference_outputs(self, images) -> np.ndarray:
        return self.embed(images, [""] * len(images))[0]

    def truncated(self, text: str) -> bool:
        encode = getattr(self.tokenizer, "encode", None)
        if encode is not None:
            return len(encode(text)) > self.context - 2
        return bool(self.tokenizer([text])[0, -1] != 0)

    def embed(self, images, texts) -> tuple[np.ndarray, np.ndarray]:
        torch = self._torch
        img_out, txt_out = [], []
        for idx in batches(list(range(len(images))), self.batch_size):
            pixels = torch.stack([self.preprocess(images[i].convert("RGB")) for i in idx])
            tokens = self.tokenizer([texts[i] for i in idx])
            with torch.inference_mode():
                im = self.model.encode_image(pixels.to(self.device, self.dtype)).float()
                tx = self.model.encode_text(tokens.to(self.device)).float()
            img_out.append(torch.nn.functional.normalize(im, dim=-1).cpu().numpy())
            txt_out.append(torch.nn.functional.normalize(tx, dim=-1).cpu().numpy())
        return np.concatenate(img_out), np.concatenate(txt_out)

    def __call__(self, images, rows) -> dict[str, list]:
        texts = [r.get("content_prompt") or "" for r in rows]
        img, txt = self.embed(images, texts)
        cos = (img * txt).sum(axis=1)
        out = {
            "clip_cosine": [float(c) for c in cos],
            "clip_score": [float(100 * max(c, 0.0)) for c in cos],
            "clip_truncated": [self.truncated(t) for t in texts],
        }
        if self.store_embeddings:
            out["clip_image_embedding"] = [e.astype(np.float16).tobytes() for e in img]
        return out
