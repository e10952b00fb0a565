"""aesthetic-shadow-v2: the ViT classifier Animagine's aesthetic tags were made with.

`aesthetic_score` is the softmax probability of the label `hq` (looked up by label, not position);
`aesthetic_tag` is the model card's bucket of that score with half-open bins. The weights are
CC-BY-NC-4.0 (non-commercial): the licence is recorded in the run's provenance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cache import build_once, cache_dir
from ..jobspec.tags import AESTHETIC_CUTS, aesthetic_tag
from . import base
from .base import batches, load_error, local_or_hub, require_cached

# ViTImageProcessor settings of aesthetic-shadow-v2 (SPEC.md section 4)
IMAGE_MEAN = [0.65463551, 0.60715182, 0.61108185]
IMAGE_STD = [0.32903292, 0.32726001, 0.31909652]
BILINEAR = 2


def _cuts(value) -> str | None:
    ok = (isinstance(value, (list, tuple)) and len(value) == 3
          and all(base.probability(v) is None for v in value) and list(value) == sorted(value))
    return None if ok else "must be three increasing numbers from 0 to 1 (the card's buckets)"


def make_processor(image_size: int):
    from transformers import ViTImageProcessor

    return ViTImageProcessor(do_resize=True, size={"height": image_size, "width": image_size},
                             resample=BILINEAR, do_rescale=True, rescale_factor=1 / 255,
                             do_normalize=True, image_mean=IMAGE_MEAN, image_std=IMAGE_STD)


def ensure_aesthetic(seed: int = 0) -> Path:
    """The offline stand-in: a tiny `ViTForImageClassification` with seeded random weights and
    the same processor, saved like a hub checkpoint."""
    def build(folder: Path):
        import torch
        from transformers import ViTConfig, ViTForImageClassification

        config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           intermediate_size=37, image_size=64, patch_size=16,
                           id2label={0: "hq", 1: "lq"}, label2id={"hq": 0, "lq": 1})
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            model = ViTForImageClassification(config)
        finally:
            torch.random.set_rng_state(state)
        model.save_pretrained(folder)
        make_processor(config.image_size).save_pretrained(folder)

    return build_once(cache_dir() / "scorers" / f"tiny-aesthetic-seed{seed}-v1", build)


class AestheticScorer:
    kind = "aesthetic"
    version = "1"
    higher_is_better = {"aesthetic_score": True}
    options = {**base.COMMON, "id": base.hub_id, "revision": base.text, "path": base.text,
               "cuts": _cuts}

    @staticmethod
    def columns(options: dict) -> dict[str, str]:
        return {"aesthetic_score": "float32", "aesthetic_tag": "string"}

    @staticmethod
    def hint(name: str) -> str:
        return (f"Point at a local copy with scorer.{name}.path=/dir (a folder with config.json "
                f"and model.safetensors), or pick another mirror with scorer.{name}.id=")

    @classmethod
    def check(cls, name: str, options: dict) -> None:
        """Cheap check before any work: local weights exist, or hub weights are cached."""
        if options.get("embedded") or options.get("path"):
            return
        require_cached(name, options["id"], ("config.json",), options.get("revision"),
                       cls.hint(name))

    def __init__(self, name: str, options: dict, device: str):
        import torch
        from transformers import ViTForImageClassification

        self.name = name
        self.batch_size = int(options.get("batch_size", 8))
        self.cuts = tuple(options.get("cuts") or AESTHETIC_CUTS)
        self.device = device
        self.dtype = torch.float32 if device == "cpu" else torch.bfloat16
        try:
            if options.get("embedded"):
                source, revision = str(ensure_aesthetic()), None
            else:
                source, revision = local_or_hub(options)
            self.model = ViTForImageClassification.from_pretrained(
                source, revision=revision, torch_dtype=self.dtype).to(device).eval()
        except Exception as e:  # noqa: BLE001 - any load failure is reported the same way
            raise load_error(name, "the aesthetic classifier "
                             f"{options.get('path') or options.get('id')!r}", e,
                             self.hint(name)) from None
        label2id = {v.lower(): int(k) for k, v in self.model.config.id2label.items()}
        if "hq" not in label2id:
            raise load_error(name, "the aesthetic classifier", ValueError(
                f"its labels {sorted(label2id)} have no 'hq'"), "Use an aesthetic-shadow checkpoint.")
        self.hq_index = label2id["hq"]
        self.processor = make_processor(int(self.model.config.image_size))

    reference_tolerance = 0.02  # bf16 on a GPU against fp32 on the CPU

    @property
    def preprocessing(self) -> dict:
        size = self.processor.size
        return {"resize": "squash", "size": [size["width"], size["height"]],
                "resample": "bilinear", "channels": "RGB", "scale": "0-1",
                "mean": list(self.processor.image_mean), "std": list(self.processor.image_std)}

    def reference_outputs(self, images) -> np.ndarray:
        return self.scores(images)

    def scores(self, images) -> np.ndarray:
        import torch

        out = []
        for chunk in batches(images, self.batch_size):
            pixels = self.processor(images=list(chunk), return_tensors="pt")["pixel_values"]
            with torch.inference_mode():
                logits = self.model(pixel_values=pixels.to(self.device, self.dtype)).logits
            out.append(torch.softmax(logits.float(), dim=-1)[:, self.hq_index].cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    def __call__(self, images, rows) -> dict[str, list]:
        s = self.scores(images)
        return {"aesthetic_score": [float(v) for v in s],
                "aesthetic_tag": [aesthetic_tag(float(v), self.cuts) for v in s]}
