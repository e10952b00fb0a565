"""Offline stand-ins of the scorer models, built once into the cache with the real classes.

- tiny aesthetic classifier: `ViTForImageClassification` + `ViTImageProcessor` via save_pretrained;
- tiny CLIP: an open_clip model config registered with `add_model_config`, weights in a file;
- tiny WD tagger: a small ONNX graph with the real input/output contract (NHWC float32 BGR 0-255
  in, per-tag sigmoid probabilities out) and a `selected_tags.csv` whose first rows are ratings.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from .cache import build_once, cache_dir

TINY_CLIP_NAME = "animagine-tiny-clip"
TINY_CLIP_CONFIG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}
TINY_WD14_SIZE = 64
TINY_WD14_TAGS = [
    ("general", 9), ("sensitive", 9), ("questionable", 9), ("explicit", 9),
    ("1girl", 0), ("1boy", 0), ("solo", 0), ("smile", 0), ("twintails", 0), ("outdoors", 0),
    ("upper_body", 0), ("looking_at_viewer", 0), ("long_hair", 0), ("short_hair", 0),
    ("blue_eyes", 0), ("red_hair", 0), ("^_^", 0), ("simple_background", 0),
    ("hatsune_miku", 4), ("uzumaki_naruto", 4), ("souryuu_asuka_langley", 4),
]


def ensure_aesthetic(seed: int = 0) -> Path:
    def build(folder: Path):
        import torch
        from transformers import ViTConfig, ViTForImageClassification

        from .scorers.aesthetic import make_processor

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


def register_tiny_clip() -> str:
    """Register the tiny open_clip config (idempotent); returns its model name."""
    import open_clip

    folder = cache_dir() / "scorers" / "open_clip_configs"
    path = folder / f"{TINY_CLIP_NAME}.json"
    if not path.is_file() or json.loads(path.read_text()) != TINY_CLIP_CONFIG:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(TINY_CLIP_CONFIG))
        os.replace(tmp, path)
    if TINY_CLIP_NAME not in open_clip.list_models():
        open_clip.add_model_config(folder)
    return TINY_CLIP_NAME


def ensure_tiny_clip(seed: int = 0) -> Path:
    """Seeded random weights of the tiny CLIP, saved as a file open_clip loads as `pretrained`."""
    name = register_tiny_clip()

    def build(folder: Path):
        import open_clip
        import torch

        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            model = open_clip.create_model(name, pretrained=None)
        finally:
            torch.random.set_rng_state(state)
        torch.save(model.state_dict(), folder / "open_clip_model.pt")

    folder = build_once(cache_dir() / "scorers" / f"tiny-clip-seed{seed}-v1", build)
    return folder / "open_clip_model.pt"


def ensure_wd14(seed: int = 0) -> Path:
    """A folder with `model.onnx` and `selected_tags.csv`, like the WD tagger repositories."""

    def build(folder: Path):
        import numpy as np
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        rng = np.random.default_rng(seed)
        n = len(TINY_WD14_TAGS)
        weight = rng.normal(0, 3.0, (3, n)).astype(np.float32)
        bias = rng.normal(0, 1.0, (n,)).astype(np.float32)
        nodes = [
            helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("ReduceMean", ["nchw"], ["mean"], axes=[2, 3], keepdims=0),
            helper.make_node("Div", ["mean", "scale"], ["unit"]),
            helper.make_node("MatMul", ["unit", "weight"], ["logits0"]),
            helper.make_node("Add", ["logits0", "bias"], ["logits"]),
            helper.make_node("Sigmoid", ["logits"], ["output"]),
        ]
        graph = helper.make_graph(
            nodes, "tiny_wd14",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                           ["batch", TINY_WD14_SIZE, TINY_WD14_SIZE, 3])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n])],
            initializer=[numpy_helper.from_array(np.array(255.0, np.float32), "scale"),
                         numpy_helper.from_array(weight, "weight"),
                         numpy_helper.from_array(bias, "bias")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, folder / "model.onnx")
        with open(folder / "selected_tags.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["tag_id", "name", "category", "count"])
            for i, (tag, category) in enumerate(TINY_WD14_TAGS):
                w.writerow([i, tag, category, 1000 - i])

    return build_once(cache_dir() / "scorers" / f"tiny-wd14-seed{seed}-v1", build)
