"""wd14 scorer on its offline stand-in (tiny_wd14: generated ONNX graph + selected_tags.csv)."""

import csv

import numpy as np
import pytest
from PIL import Image

from animagine_batch.errors import ConfigError
from animagine_batch.scorers.wd14 import (WD14Scorer, danbooru, ensure_wd14, preprocess,
                                          prompted_rating)


@pytest.fixture(scope="module")
def scorer():
    return WD14Scorer("tiny_wd14", {"embedded": "tiny"}, "cpu")


def test_preprocessing_pads_white_bgr_0_255_nhwc():
    red = Image.new("RGB", (40, 20), (255, 0, 0))
    x = preprocess(red, 40)  # no resize: the exact padding is visible
    assert x.shape == (40, 40, 3) and x.dtype == np.float32
    assert (x[:10] == 255).all() and (x[30:] == 255).all()  # white bands above and below
    assert x[20, 20].tolist() == [0.0, 0.0, 255.0]  # red in BGR order
    y = preprocess(red, 64)
    assert y.shape == (64, 64, 3) and y.min() >= 0 and y.max() <= 255
    assert y[32, 32].tolist() == [0.0, 0.0, 255.0] and y[2, 32].tolist() == [255.0, 255.0, 255.0]
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert (preprocess(rgba, 8) == 255).all()  # transparency becomes white


def test_stand_in_has_the_real_contract(scorer):
    folder = ensure_wd14()
    with open(folder / "selected_tags.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["tag_id", "name", "category", "count"]
    assert [r["name"] for r in rows[:4]] == ["general", "sensitive", "questionable", "explicit"]
    assert {r["category"] for r in rows[:4]} == {"9"}
    assert scorer.size == 64  # read from the model's input shape
    p = scorer.probabilities([Image.new("RGB", (30, 50), (10, 200, 30))] * 3)
    assert p.shape == (3, len(rows)) and ((p >= 0) & (p <= 1)).all()


def test_columns(scorer, monkeypatch):
    index = scorer.index
    p = np.zeros(len(scorer.tags), np.float32)
    for tag, value in {"1girl": 0.9, "solo": 0.5, "smile": 0.2, "hatsune_miku": 0.9,
                       "sensitive": 0.7, "general": 0.2}.items():
        p[index[tag]] = value
    monkeypatch.setattr(scorer, "probabilities", lambda ims: np.stack([p, p]))
    rows = [
        {"content_prompt": "1girl, hatsune miku, vocaloid, solo, smile, cat ears",
         "character": "hatsune_miku", "series": "vocaloid",
         "prompt": "masterpiece, 1girl, hatsune miku, vocaloid, solo, smile, cat ears, sensitive"},
        {"content_prompt": "1girl, solo", "character": None, "series": None, "prompt": "1girl, solo"},
    ]
    out = scorer([None, None], rows)
    # prompt general tags: 1girl, solo, smile, cat_ears; cat_ears is outside the vocabulary
    assert out["wd14_tag_coverage"][0] == pytest.approx(3 / 4)
    assert out["wd14_tag_recall"][0] == pytest.approx(2 / 3)  # smile at 0.2 < 0.35
    assert out["wd14_character_hit"] == [True, None]
    assert out["wd14_rating"] == ["sensitive", "sensitive"]
    assert out["wd14_rating_match"] == [True, None]
    assert out["wd14_tags"][0] == ["hatsune_miku", "1girl", "solo"]
    assert out["wd14_tag_recall"][1] == 1.0


def test_character_threshold_and_rating_mapping(scorer, monkeypatch):
    p = np.zeros(len(scorer.tags), np.float32)
    p[scorer.index["hatsune_miku"]] = 0.8  # over general, under character threshold
    p[scorer.index["explicit"]] = 0.6
    monkeypatch.setattr(scorer, "probabilities", lambda ims: p[None])
    out = scorer([None], [{"content_prompt": "1girl", "character": "hatsune_miku",
                           "prompt": "1girl, hatsune miku, explicit, nsfw"}])
    assert out["wd14_character_hit"] == [False] and out["wd14_rating"] == ["explicit"]
    assert out["wd14_rating_match"] == [True] and out["wd14_tags"] == [[]]
    assert prompted_rating("a, nsfw") == "questionable" and prompted_rating("a, safe") == "general"
    assert danbooru(r"naruto \(series\)") == "naruto_(series)" and danbooru("^_^") == "^_^"


def test_missing_model_names_the_scorer(tmp_path):
    with pytest.raises(ConfigError) as e:
        WD14Scorer("wd14", {"path": str(tmp_path)}, "cpu")
    assert "scorer 'wd14'" in str(e.value) and "scorer.wd14.path=" in str(e.value)
    with pytest.raises(ConfigError, match="SmilingWolf/wd-vit-tagger-v3"):
        WD14Scorer("wd14", {"id": "SmilingWolf/wd-vit-tagger-v3"}, "cpu")


def test_rows_read_back_by_pandas_with_no_character_or_series(scorer, monkeypatch):
    """A rescore reads rows through pandas, which turns a null string into NaN (truthy)."""
    import pyarrow as pa

    p = np.zeros(len(scorer.tags), np.float32)
    p[scorer.index["solo"]] = p[scorer.index["hatsune_miku"]] = 0.9
    monkeypatch.setattr(scorer, "probabilities", lambda ims: np.stack([p, p]))
    rows = pa.table({
        "content_prompt": ["1boy, solo, smile", "1girl, hatsune miku, vocaloid, solo"],
        "character": pa.array([None, "hatsune_miku"], pa.string()),
        "series": pa.array([None, "vocaloid"], pa.string()),
        "prompt": ["1boy, solo, smile", "1girl, hatsune miku, vocaloid, solo"],
    }).to_pandas().to_dict("records")
    assert not isinstance(rows[0]["character"], str)  # what pandas gives for a null
    out = scorer([None, None], rows)
    assert out["wd14_character_hit"] == [None, True]
    # 1boy, solo, smile against 1girl, solo (character and series are not general tags)
    assert out["wd14_tag_recall"] == [pytest.approx(1 / 3), pytest.approx(1 / 2)]
