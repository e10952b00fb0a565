"""Scorers of real size for the GPU probe: the project's own scorer classes (the same
preprocessing, batching and columns as a run) on random weights of the real architectures, so
that the probe's end-to-end figure carries the real scoring cost.

- aesthetic-shadow-v2: `ViTForImageClassification`, hidden 1536, 48 layers, 16 heads,
  intermediate 4192, image 1024, patch 64, 1.09 B parameters (SPEC.md section 4), bf16 on a GPU;
- CLIP: open_clip `ViT-H-14` (224 px) built with `pretrained=None` (random weights), fp16 on a GPU;
- WD tagger: a ViT-B/16 at 448 px (the shape of `wd-vit-tagger-v3`) with a sigmoid head over
  10,861 tags, exported to ONNX and run by `WD14Scorer` in onnxruntime (the CUDA provider when
  the installed onnxruntime has it, else the CPU: the step records which).

`quick` shrinks each to a tiny config of the same class (the project's stand-in sizes).
"""

from __future__ import annotations

import csv
import time
import warnings
from pathlib import Path

AESTHETIC = {"hidden_size": 1536, "num_hidden_layers": 48, "num_attention_heads": 16,
             "intermediate_size": 4192, "image_size": 1024, "patch_size": 64}
AESTHETIC_QUICK = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                   "intermediate_size": 37, "image_size": 64, "patch_size": 16}
WD = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
      "intermediate_size": 3072, "image_size": 448, "patch_size": 16, "tags": 10861}
WD_QUICK = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 37, "image_size": 64, "patch_size": 16, "tags": 64}
CLIP, CLIP_QUICK = "ViT-H-14", None  # None: the project's tiny open_clip config
PROMPT_TAGS = ["1girl", "solo", "upper_body", "smile", "looking_at_viewer", "outdoors"]


def params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def aesthetic(device: str, quick: bool):
    """An `AestheticScorer` holding a random-weight aesthetic-shadow-v2-sized ViT."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    from animagine_batch.jobspec.tags import AESTHETIC_CUTS
    from animagine_batch.scorers.aesthetic import AestheticScorer, make_processor

    config = ViTConfig(**(AESTHETIC_QUICK if quick else AESTHETIC), qkv_bias=True,
                       layer_norm_eps=1e-12, id2label={0: "hq", 1: "lq"},
                       label2id={"hq": 0, "lq": 1})
    scorer = AestheticScorer.__new__(AestheticScorer)  # the class's scoring, weights built here
    scorer.name, scorer.batch_size, scorer.cuts = "aesthetic_shadow_v2", 8, tuple(AESTHETIC_CUTS)
    scorer.device = device
    scorer.dtype = torch.float32 if device == "cpu" else torch.bfloat16
    with torch.device(device):
        scorer.model = ViTForImageClassification(config).to(scorer.dtype).eval()
    scorer.hq_index = 0
    scorer.processor = make_processor(config.image_size)
    return scorer, {"class": "ViTForImageClassification", "params": params(scorer.model),
                    "input_px": config.image_size, "dtype": str(scorer.dtype)[6:]}


def clip(device: str, quick: bool):
    """A `ClipScorer` on open_clip ViT-H-14 (or the tiny config) with random weights."""
    import torch

    from animagine_batch.scorers.clip import ClipScorer, register_tiny_clip

    name = register_tiny_clip() if quick else CLIP
    with torch.device(device):
        scorer = ClipScorer("clip", {"model": name, "pretrained": None, "batch_size": 16,
                                     "store_embeddings": True}, device)
    size = getattr(scorer.model.visual, "image_size", None)
    return scorer, {"class": f"open_clip {name}", "params": params(scorer.model),
                    "input_px": size[0] if isinstance(size, (tuple, list)) else size,
                    "dtype": str(scorer.dtype)[6:]}


def export_tagger(folder: Path, quick: bool) -> dict:
    """model.onnx (NHWC float32 BGR 0-255 in, per-tag sigmoid out, the WD tagger contract) and
    selected_tags.csv (four ratings first, then general and character tags)."""
    import torch
    from transformers import ViTConfig, ViTModel

    size = dict(WD_QUICK if quick else WD)
    tags = size.pop("tags")
    config = ViTConfig(**size)
    config._attn_implementation = "eager"  # plain ops for the TorchScript exporter

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.vit = ViTModel(config, add_pooling_layer=False)
            self.head = torch.nn.Linear(config.hidden_size, tags)

        def forward(self, x):  # [batch, H, W, 3] BGR 0-255
            x = x.permute(0, 3, 1, 2).flip(1) / 127.5 - 1.0
            hidden = self.vit(pixel_values=x).last_hidden_state
            return torch.sigmoid(self.head(hidden.mean(1)))

    torch.manual_seed(0)
    model = Tagger().eval()
    side = config.image_size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, side, side, 3),), str(folder / "model.onnx"),
                          input_names=["input"], output_names=["output"], opset_version=17,
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                          dynamo=False)
    with open(folder / "selected_tags.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["tag_id", "name", "category", "count"])
        names = [("general", 9), ("sensitive", 9), ("questionable", 9), ("explicit", 9),
                 ("hatsune_miku", 4)] + [(t, 0) for t in PROMPT_TAGS]
        names += [(f"tag_{i:05d}", 0) for i in range(tags - len(names))]
        for i, (tag, category) in enumerate(names):
            w.writerow([i, tag, category, 1000 + tags - i])
    return {"class": "ONNX ViT-B/16-like", "params": params(model), "input_px": side,
            "tags": tags}


def wd14(device: str, quick: bool, folder: Path):
    from animagine_batch.scorers.wd14 import WD14Scorer

    info = export_tagger(folder, quick)
    scorer = WD14Scorer("wd14", {"path": str(folder), "batch_size": 16}, device)
    info["providers"] = scorer.session.get_providers()
    return scorer, info


def rows(n: int, prompt: str) -> list[dict]:
    return [{"prompt": prompt, "content_prompt": prompt, "character": "hatsune miku",
             "series": "vocaloid"} for _ in range(n)]


def build_and_time(names, device: str, quick: bool, folder: Path, images: list,
                   prompt: str) -> tuple[list, dict]:
    """Build the named scorers and time each on `images` (PIL) after one warm-up call; returns
    the scorers and {name: build seconds, seconds per image, architecture}."""
    builders = {"aesthetic": lambda: aesthetic(device, quick), "clip": lambda: clip(device, quick),
                "wd14": lambda: wd14(device, quick, folder)}
    unknown = sorted(set(names) - set(builders))
    if unknown:
        raise ValueError(f"--scorers: {', '.join(unknown)} not one of {', '.join(builders)}")
    scorers, report = [], {}
    for name in names:
        start = time.perf_counter()
        scorer, info = builders[name]()
        info["build_s"] = round(time.perf_counter() - start, 2)
        scorer(images[:1], rows(1, prompt))  # warm-up (allocations, autotuning)
        _sync(device)
        start = time.perf_counter()
        out = scorer(images, rows(len(images), prompt))
        _sync(device)
        info["s_per_image"] = round((time.perf_counter() - start) / len(images), 4)
        info["columns"] = sorted(out)
        scorers.append(scorer)
        report[name] = info
    return scorers, report


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
