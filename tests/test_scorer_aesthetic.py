"""aesthetic_shadow_v2 scorer on its offline stand-in (tiny_aesthetic): same classes, same code."""

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from animagine_batch.errors import ConfigError
from animagine_batch.scorers.aesthetic import AestheticScorer, ensure_aesthetic


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


# aesthetic-shadow-v2's ViTImageProcessor settings, restated from SPEC.md section 4
SPEC_MEAN = [0.65463551, 0.60715182, 0.61108185]
SPEC_STD = [0.32903292, 0.32726001, 0.31909652]


def test_scores_are_p_hq_of_the_specs_preprocessing(scorer):
    """The scores equal the model's P(hq) on pixels prepared independently: squash-resized to
    the model's size with PIL's bilinear filter, scaled to 0-1 and normalised by the SPEC's
    numbers, by hand and by transformers' own ViTImageProcessor."""
    from transformers import ViTImageProcessor

    ims = images()  # none of them square: the resize squashes
    side = scorer.model.config.image_size
    reference = ViTImageProcessor(do_resize=True, size={"height": side, "width": side},
                                  resample=Image.BILINEAR, do_rescale=True, rescale_factor=1 / 255,
                                  do_normalize=True, image_mean=SPEC_MEAN, image_std=SPEC_STD)
    pixels = reference(images=ims, return_tensors="pt")["pixel_values"]
    by_hand = np.stack([((np.asarray(im.resize((side, side), Image.BILINEAR), np.float32) / 255
                          - SPEC_MEAN) / SPEC_STD).transpose(2, 0, 1) for im in ims])
    # within one 8-bit level: transformers' resize rounds a few pixels unlike PIL's own
    assert np.abs(pixels.numpy() - by_hand).max() <= 1.01 / 255 / min(SPEC_STD)
    assert np.abs(pixels.numpy() - by_hand).mean() < 1e-3
    with torch.no_grad():
        p = torch.softmax(scorer.model(pixel_values=pixels).logits, dim=-1)
    hq = {v: int(k) for k, v in scorer.model.config.id2label.items()}["hq"]
    assert np.allclose(scorer.scores(ims), p[:, hq].numpy(), atol=1e-6)
    assert scorer.preprocessing["mean"] == SPEC_MEAN and scorer.preprocessing["std"] == SPEC_STD


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
