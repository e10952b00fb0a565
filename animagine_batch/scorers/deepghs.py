"""deepghs image classifiers (ONNX models on the hub) through onnxruntime: the loading,
preprocessing and stand-in builder shared by the quality-tier and era scorers.

Repository layout (the files dghs-imgutils reads): `<model_name>/model.onnx`, input `input`
(float32, NCHW) and output `output` (one probability per class), and `<model_name>/meta.json`,
whose `labels` name the classes in output order (`anime_aesthetic` lists them best first, so
classes are looked up by label, never by position). Preprocessing, as dghs-imgutils'
classifiers do it: transparency onto white, RGB, squash-resize to the model's input size
(bilinear), scale to 0-1, normalise with mean 0.5 and std 0.5.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from ..cache import build_once, cache_dir
from ..errors import ConfigError
from . import base
from .base import batches, load_error, onnx_session, require_cached

MEAN, STD = 0.5, 0.5


def preprocess(image: Image.Image, width: int, height: int) -> np.ndarray:
    """One image -> float32 [3, height, width], RGB, (x / 255 - 0.5) / 0.5."""
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", image.size, (255, 255, 255, 255)), image)
    image = image.convert("RGB").resize((width, height), Image.BILINEAR)
    x = np.asarray(image, dtype=np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1).copy()


class DeepghsClassifier:
    """One deepghs classifier as a scorer. A subclass sets `kind`, `labels` (its classes,
    lowest first), `default_model`, `default_size`, `stand_in` (its offline builder) and
    `columns` / `__call__` over the class probabilities."""

    version = "1"
    labels: tuple[str, ...] = ()
    default_model = ""
    default_size = 384
    options = {**base.COMMON, "id": base.hub_id, "revision": base.text, "path": base.text,
               "model_name": base.text}
    reference_tolerance = 1e-3  # fp32 ONNX: CPU and CUDA agree far closer than this

    @staticmethod
    def stand_in() -> Path:
        raise NotImplementedError

    @staticmethod
    def hint(name: str) -> str:
        return (f"Point at a local copy of the model's folder (model.onnx and meta.json) with "
                f"scorer.{name}.path=/dir")

    @classmethod
    def check(cls, name: str, options: dict) -> None:
        if options.get("embedded") or options.get("path"):
            return
        if not options.get("model_name"):
            raise ConfigError(f"scorer.{name}.model_name: a hub repository holds several "
                              f"models; name one (for {options['id']}: {cls.default_model})")
        require_cached(name, options["id"], (f"{options.get('model_name')}/model.onnx",),
                       options.get("revision"), cls.hint(name))

    def __init__(self, name: str, options: dict, device: str):
        self.name = name
        self.batch_size = int(options.get("batch_size", 16))
        what = options.get("path") or f"{options.get('id')}/{options.get('model_name')}"
        try:
            folder = self._files(options)
            self.session = onnx_session(folder / "model.onnx", device)
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            file_labels = [str(v) for v in meta["labels"]]
        except Exception as e:  # noqa: BLE001 - any load failure is reported the same way
            raise load_error(name, f"the classifier {what!r}", e, self.hint(name)) from None
        if sorted(file_labels) != sorted(self.labels):
            raise load_error(name, f"the classifier {what!r}", ValueError(
                f"its labels {file_labels} are not the classes {list(self.labels)}"),
                "Use a model of the repository this scorer is made for.")
        self.order = [file_labels.index(label) for label in self.labels]
        inp = self.session.get_inputs()[0]  # [batch, 3, height, width]
        self.input_name = inp.name
        fallback = int(meta.get("img_size") or self.default_size)
        self.height, self.width = (int(v) if isinstance(v, int) else fallback
                                   for v in inp.shape[2:4])

    def _files(self, options: dict) -> Path:
        if options.get("embedded"):
            return self.stand_in()
        if options.get("path"):
            folder = Path(options["path"]).expanduser()
            if not (folder / "model.onnx").is_file():
                raise FileNotFoundError(f"{folder}/model.onnx not found")
            return folder
        from huggingface_hub import hf_hub_download

        repo, sub, rev = options["id"], options["model_name"], options.get("revision")
        model = hf_hub_download(repo, f"{sub}/model.onnx", revision=rev)
        hf_hub_download(repo, f"{sub}/meta.json", revision=rev)
        return Path(model).parent

    @property
    def preprocessing(self) -> dict:
        return {"resize": "squash", "size": [self.width, self.height], "resample": "bilinear",
                "background": "white", "channels": "RGB", "layout": "NCHW", "scale": "0-1",
                "mean": MEAN, "std": STD}

    def probabilities(self, images) -> np.ndarray:
        """Class probabilities, one row per image, columns in `labels` order."""
        out = []
        for chunk in batches(images, self.batch_size):
            x = np.stack([preprocess(im, self.width, self.height) for im in chunk])
            out.append(self.session.run(None, {self.input_name: x})[0][:, self.order])
        p = np.concatenate(out) if out else np.zeros((0, len(self.labels)), np.float32)
        if len(p) and (p.min() < -1e-6 or np.abs(p.sum(axis=1) - 1).max() > 1e-3):
            raise ValueError(f"scorer {self.name!r}: the model's outputs are not class "
                             "probabilities (a row does not sum to 1)")
        return p

    reference_outputs = probabilities

    def expected_index(self, p: np.ndarray) -> np.ndarray:
        """Probability-weighted class index (0 = the lowest class)."""
        return p @ np.arange(len(self.labels), dtype=np.float64)


def build_stand_in(name: str, file_labels: list[str], size: int, seed: int) -> Path:
    """A tiny classifier with the real contract: `model.onnx` (a 4x4 strided convolution, ReLU,
    spatial mean, a linear layer and a softmax; input `input` [batch, 3, size, size], output
    `output` [batch, classes]) and `meta.json` listing `file_labels` in output order."""

    def build(folder: Path):
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        n = len(file_labels)
        weights = {"conv_w": rng.normal(0, 0.25, (4, 3, 4, 4)), "conv_b": np.zeros(4),
                   "fc_w": rng.normal(0, 1.0, (4, n)), "fc_b": rng.normal(0, 0.5, n)}
        nodes = [
            helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["conv"], strides=[4, 4]),
            helper.make_node("Relu", ["conv"], ["relu"]),
            helper.make_node("ReduceMean", ["relu"], ["pooled"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["pooled", "fc_w"], ["logits0"]),
            helper.make_node("Add", ["logits0", "fc_b"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["output"], axis=1),
        ]
        graph = helper.make_graph(
            nodes, name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, size, size])],
            [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", n])],
            initializer=[numpy_helper.from_array(v.astype(np.float32), k)
                         for k, v in weights.items()])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        onnx.save(model, folder / "model.onnx")
        (folder / "meta.json").write_text(json.dumps({"labels": file_labels, "img_size": size,
                                                      "name": name}))

    return build_once(cache_dir() / "scorers" / f"{name}-seed{seed}-v1", build)
