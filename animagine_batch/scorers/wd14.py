"""WD tagger (Danbooru tagger) through onnxruntime: prompt adherence and rating.

Preprocessing (SPEC.md): pad to square on white, resize to the model's input size (bicubic),
RGB -> BGR, float32 0-255, NHWC. Columns: recall of the prompt's general tags at the general
threshold (over those in the tagger's vocabulary), that vocabulary coverage, whether the prompted
character is found at the character threshold, the predicted rating (argmax of the four rating
tags) and whether it matches the prompted rating tag, and the tags over threshold.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from ..cache import build_once, cache_dir
from ..jobspec.tags import WD_RATING_TAG, field_text, normalise_tag, split_tags, strip_emphasis
from ..jobspec.tags import prompted_rating as prompted_rating_tag
from . import base
from .base import batches, load_error, require_cached

RATINGS = ("general", "sensitive", "questionable", "explicit")
# the offline stand-in (`ensure_wd14`): input size and tags, the first four its ratings
TINY_WD14_SIZE = 64
TINY_WD14_TAGS = [
    ("general", 9), ("sensitive", 9), ("questionable", 9), ("explicit", 9),
    ("1girl", 0), ("1boy", 0), ("solo", 0), ("smile", 0), ("twintails", 0), ("outdoors", 0),
    ("upper_body", 0), ("looking_at_viewer", 0), ("long_hair", 0), ("short_hair", 0),
    ("blue_eyes", 0), ("red_hair", 0), ("^_^", 0), ("simple_background", 0),
    ("hatsune_miku", 4), ("uzumaki_naruto", 4), ("souryuu_asuka_langley", 4),
]


def preprocess(image: Image.Image, size: int) -> np.ndarray:
    """One image -> float32 [size, size, 3] BGR in 0-255, padded to a square on white."""
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, image)
    image = image.convert("RGB")
    side = max(image.size)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    if side != size:
        square = square.resize((size, size), Image.BICUBIC)
    return np.asarray(square, dtype=np.float32)[:, :, ::-1].copy()


def danbooru(tag: str) -> str:
    """Prompt form back to a Danbooru name: `naruto (series)` -> `naruto_(series)`."""
    tag = strip_emphasis(tag).strip().lower()
    return tag if " " not in tag else tag.replace(" ", "_")


def prompted_rating(prompt: str) -> str | None:
    """The WD rating a prompt's rating tag asks for (`general` written as a tag counts as
    `safe`), or None when the prompt has none."""
    tags = {t.strip().lower() for t in split_tags(prompt)}
    card = prompted_rating_tag(tags) or ("safe" if "general" in tags else None)
    return None if card is None else {tag: wd for wd, tag in WD_RATING_TAG.items()}[card]


def ensure_wd14(seed: int = 0) -> Path:
    """The offline stand-in: a folder with `model.onnx` (a small ONNX graph with the real
    contract: NHWC float32 BGR 0-255 in, per-tag sigmoid probabilities out) and
    `selected_tags.csv`, like the WD tagger repositories."""

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


class WD14Scorer:
    kind = "wd14"
    version = "1"
    higher_is_better = {"wd14_tag_recall": True, "wd14_tag_coverage": True,
                        "wd14_character_hit": True, "wd14_rating_match": True}
    options = {**base.COMMON, "id": base.hub_id, "revision": base.text, "path": base.text,
               "general_threshold": base.probability, "character_threshold": base.probability}

    @staticmethod
    def columns(options: dict) -> dict[str, str]:
        return {"wd14_tag_recall": "float32", "wd14_tag_coverage": "float32",
                "wd14_character_hit": "bool", "wd14_rating": "string",
                "wd14_rating_match": "bool", "wd14_tags": "list<string>"}

    @staticmethod
    def hint(name: str) -> str:
        return (f"Point at a local folder holding model.onnx and selected_tags.csv with "
                f"scorer.{name}.path=/dir")

    @classmethod
    def check(cls, name: str, options: dict) -> None:
        if options.get("embedded") or options.get("path"):
            return
        require_cached(name, options["id"], ("model.onnx",), options.get("revision"),
                       cls.hint(name))

    def __init__(self, name: str, options: dict, device: str):
        self.name = name
        self.batch_size = int(options.get("batch_size", 16))
        self.general_threshold = float(options.get("general_threshold", 0.35))
        self.character_threshold = float(options.get("character_threshold", 0.85))
        try:
            folder = self._files(options)
            self.session = base.onnx_session(folder / "model.onnx", device)
            self.tags, self.categories = self._read_tags(folder / "selected_tags.csv")
        except Exception as e:  # noqa: BLE001 - any load failure is reported the same way
            raise load_error(name, f"the WD tagger {options.get('path') or options.get('id')!r}", e,
                             self.hint(name)) from None
        shape = self.session.get_inputs()[0].shape  # [batch, H, W, 3]
        self.size = int(shape[1]) if isinstance(shape[1], int) else 448
        self.input_name = self.session.get_inputs()[0].name
        self.index = {t: i for i, t in enumerate(self.tags)}
        self.rating_idx = [i for i, c in enumerate(self.categories) if c == 9][:4]

    @staticmethod
    def _files(options: dict) -> Path:
        if options.get("embedded"):
            return ensure_wd14()
        if options.get("path"):
            folder = Path(options["path"]).expanduser()
            if not (folder / "model.onnx").is_file():
                raise FileNotFoundError(f"{folder}/model.onnx not found")
            return folder
        from huggingface_hub import hf_hub_download

        model = hf_hub_download(options["id"], "model.onnx", revision=options.get("revision"))
        hf_hub_download(options["id"], "selected_tags.csv", revision=options.get("revision"))
        return Path(model).parent

    @staticmethod
    def _read_tags(path: Path) -> tuple[list[str], list[int]]:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return [r["name"] for r in rows], [int(r["category"]) for r in rows]

    reference_tolerance = 1e-3  # fp32 ONNX

    @property
    def preprocessing(self) -> dict:
        return {"resize": "pad to square", "fill": "white", "size": [self.size, self.size],
                "resample": "bicubic", "channels": "BGR", "layout": "NHWC", "scale": "0-255"}

    def reference_outputs(self, images) -> np.ndarray:
        return self.probabilities(images)

    def probabilities(self, images) -> np.ndarray:
        out = []
        for chunk in batches(images, self.batch_size):
            x = np.stack([preprocess(im, self.size) for im in chunk])
            out.append(self.session.run(None, {self.input_name: x})[0])
        return np.concatenate(out) if out else np.zeros((0, len(self.tags)), np.float32)

    def _prompt_general_tags(self, row: dict) -> list[str]:
        skip = {danbooru(normalise_tag(v)) for v in map(field_text, (row.get("character"),
                                                                      row.get("series"))) if v}
        tags = [danbooru(t) for t in split_tags(field_text(row.get("content_prompt")) or "")]
        return [t for t in dict.fromkeys(tags) if t not in skip]

    def __call__(self, images, rows) -> dict[str, list]:
        probs = self.probabilities(images)
        out: dict[str, list] = {c: [] for c in self.columns({})}
        for p, row in zip(probs, rows):
            wanted = self._prompt_general_tags(row)
            known = [t for t in wanted if t in self.index and self.categories[self.index[t]] == 0]
            found = [t for t in known if p[self.index[t]] >= self.general_threshold]
            out["wd14_tag_recall"].append(len(found) / len(known) if known else None)
            out["wd14_tag_coverage"].append(len(known) / len(wanted) if wanted else None)
            character = field_text(row.get("character"))
            char = danbooru(normalise_tag(character)) if character else None
            hit = None
            if char and char in self.index:
                hit = bool(p[self.index[char]] >= self.character_threshold)
            out["wd14_character_hit"].append(hit)
            rating = RATINGS[int(np.argmax(p[self.rating_idx]))] if len(self.rating_idx) == 4 else None
            out["wd14_rating"].append(rating)
            asked = prompted_rating(field_text(row.get("prompt")) or "")
            out["wd14_rating_match"].append(None if asked is None or rating is None else rating == asked)
            over = [(p[i], t) for i, (t, c) in enumerate(zip(self.tags, self.categories))
                    if c != 9 and p[i] >= (self.character_threshold if c == 4 else self.general_threshold)]
            out["wd14_tags"].append([t for _, t in sorted(over, reverse=True)])
        return out
