"""aesthetic_shadow_v2 scorer on its offline stand-in (tiny_aesthetic): same classes, same code."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from animagine_batch.errors import ConfigError
from animagine_batch.scorers.aesthetic import (IMAGE_MEAN, IMAGE_STD, AestheticScorer,
                                               ensure_aesthetic)


def images(n=5, size=64):
    rng = np.random.default_rng(3)
    return [Image.fromarray(rng.integers(0, 255, (size, size + 8 * i, 3), dtype=np.uint8))
            for i in range(n)]


@pytest.fixture(scope="module")
def scorer():
    return AestheticScorer("tiny_aesthetic", {"embedded": "tiny", "batch_size": 2}, "cpu")


def test_columns_types_and_ranges(scorer):
    out = scorer(images(), [{}] * 5)
    assert AestheticScorer.columns({}) == {"aesthetic_score": "float32", "aesthetic_tag": "string"}
    s = np.array(out["aesthetic_score"])
    assert s.shape == (5,) and ((s >= 0) & (s <= 1)).all() and len(set(s.round(6))) > 1
    assert set(out["aesthetic_tag"]) <= {"very aesthetic", "aesthetic", "displeasing",
                                         "very displeasing"}


def test_batching_does_not_change_scores(scorer):
    one = AestheticScorer("t", {"embedded": "tiny", "batch_size": 1}, "cpu")
    assert np.allclose(one.scores(images()), scorer.scores(images()), atol=1e-6)


def test_score_is_looked_up_by_label_not_position(scorer, tmp_path):
    from transformers import ViTForImageClassification

    model = ViTForImageClassification.from_pretrained(ensure_aesthetic())
    model.config.id2label = {0: "lq", 1: "hq"}
    model.config.label2id = {"lq": 0, "hq": 1}
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight.flip(0))
        model.classifier.bias.copy_(model.classifier.bias.flip(0))
    model.save_pretrained(tmp_path / "swapped")
    swapped = AestheticScorer("x", {"path": str(tmp_path / "swapped")}, "cpu")
    assert swapped.hq_index == 1 and scorer.hq_index == 0
    assert np.allclose(swapped.scores(images()), scorer.scores(images()), atol=1e-6)


def test_bucket_boundaries(scorer, monkeypatch):
    monkeypatch.setattr(scorer, "scores", lambda ims: np.array([0.27, 0.2701, 0.45, 0.4501, 0.71,
                                                                0.7101, 0.0, 1.0]))
    out = scorer([None] * 8, [{}] * 8)
    assert out["aesthetic_tag"] == ["very displeasing", "displeasing", "displeasing", "aesthetic",
                                    "aesthetic", "very aesthetic", "very displeasing",
                                    "very aesthetic"]


def test_preprocessing_is_the_specs(scorer):
    p = scorer.processor
    assert list(p.image_mean) == IMAGE_MEAN and list(p.image_std) == IMAGE_STD
    assert p.resample == 2 and p.size == {"height": 64, "width": 64}  # the model's image_size
    assert p.rescale_factor == pytest.approx(1 / 255)
    x = p(images=[Image.new("RGB", (100, 30), (255, 255, 255))], return_tensors="pt")["pixel_values"]
    assert x.shape == (1, 3, 64, 64)
    assert np.allclose(x[0, :, 0, 0].numpy(), (1 - np.array(IMAGE_MEAN)) / np.array(IMAGE_STD),
                       atol=1e-5)


def test_missing_weights_name_the_scorer_and_the_override(tmp_path):
    with pytest.raises(ConfigError) as e:
        AestheticScorer("aesthetic_shadow_v2", {"path": str(tmp_path / "none")}, "cpu")
    assert "scorer 'aesthetic_shadow_v2'" in str(e.value)
    assert "scorer.aesthetic_shadow_v2.path=" in str(e.value)
    with pytest.raises(ConfigError, match="cannot load the aesthetic classifier"):
        AestheticScorer("aesthetic_shadow_v2", {"id": "NeoChen1024/aesthetic-shadow-v2-backup"}, "cpu")
    broken = tmp_path / "broken"
    shutil.copytree(ensure_aesthetic(), broken)
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ConfigError, match="scorer 'x'"):
        AestheticScorer("x", {"path": str(broken)}, "cpu")
