"""anime_quality and anime_era on their offline stand-ins (generated ONNX classifiers with the
deepghs contract), through the same loading code as the hub models."""

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from animagine_batch.jobspec import tag_levels
from animagine_batch.errors import ConfigError
from animagine_batch.scorers import anime_era, anime_quality, base
from animagine_batch.scorers.anime_era import AnimeEraScorer
from animagine_batch.scorers.anime_quality import AnimeQualityScorer
from animagine_batch.scorers.deepghs import preprocess


@pytest.fixture(scope="module")
def quality():
    return AnimeQualityScorer("tiny_anime_quality", {"embedded": "tiny"}, "cpu")


@pytest.fixture(scope="module")
def era():
    return AnimeEraScorer("tiny_anime_era", {"embedded": "tiny"}, "cpu")


def test_stand_ins_have_the_deepghs_contract(quality, era):
    import onnx

    for builder, labels in ((anime_quality.ensure_tiny, ["masterpiece", "best", "great", "good",
                                                         "normal", "low", "worst"]),
                            (anime_era.ensure_tiny, list(tag_levels.ERAS))):
        folder = builder()
        assert json.loads((folder / "meta.json").read_text())["labels"] == labels
        graph = onnx.load(folder / "model.onnx").graph
        assert [i.name for i in graph.input] == ["input"]
        assert [o.name for o in graph.output] == ["output"]
        dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        assert dims == ["batch", 3, 32, 32]
    assert (quality.width, quality.height) == (32, 32)  # read from the model's input shape
    p = quality.probabilities([Image.new("RGB", (40, 24), (200, 10, 90))] * 3)
    assert p.shape == (3, 7) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


def test_preprocessing_squashes_and_normalises():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    x = preprocess(image, 16, 8)  # squash: no crop, no padding
    assert x.shape == (3, 8, 16) and x.dtype == np.float32
    assert np.allclose(x[0], 1.0) and np.allclose(x[1:], -1.0)  # (v / 255 - 0.5) / 0.5
    clear = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert np.allclose(preprocess(clear, 8, 8), 1.0)  # transparency becomes white


def test_classes_are_looked_up_by_label_not_position(quality, tmp_path):
    """A copy of the stand-in whose meta.json lists the labels in another order: the same
    outputs land on other classes."""
    folder = tmp_path / "model"
    shutil.copytree(anime_quality.ensure_tiny(), folder)
    meta = json.loads((folder / "meta.json").read_text())
    meta["labels"] = list(reversed(meta["labels"]))  # worst first
    (folder / "meta.json").write_text(json.dumps(meta))
    moved = AnimeQualityScorer("q", {"path": str(folder)}, "cpu")
    images = [Image.new("RGB", (32, 32), (i * 40, 255 - i * 30, 90)) for i in range(4)]
    assert np.allclose(moved.probabilities(images), quality.probabilities(images)[:, ::-1])


def test_quality_columns(quality, monkeypatch):
    p = np.array([[0.05, 0.05, 0.1, 0.1, 0.1, 0.5, 0.1],  # best
                  [0.7, 0.1, 0.1, 0.1, 0, 0, 0]])  # worst
    monkeypatch.setattr(quality, "probabilities", lambda images: p)
    out = quality([None, None], [{}, {}])
    assert out["quality_tier"] == ["best", "worst"]
    assert out["quality_tag"] == ["best quality", "worst quality"]
    assert out["quality_score"] == pytest.approx([0.05 + 0.2 + 0.3 + 0.4 + 2.5 + 0.6, 0.6])
    assert out["quality_p_best"] == pytest.approx([0.5, 0]) and set(out) == set(
        AnimeQualityScorer.columns({}))


def test_era_columns(era, monkeypatch):
    p = np.zeros((3, 7))
    p[0, 6] = 1.0  # 2020s: 2022
    p[1, [4, 5]] = 0.5  # half 2010s (2012), half 2015s (2017): 2014.5 -> early
    p[2, 0] = 1.0  # 1970s-: 1974.5, older than the card's oldest span
    monkeypatch.setattr(era, "probabilities", lambda images: p)
    out = era([None] * 3, [{}] * 3)
    assert out["era"] == ["2020s", "2010s", "1970s-"]
    assert out["era_year"] == pytest.approx([2022, 2014.5, 1974.5])
    assert out["era_year_tag"] == ["newest", "early", "oldest"]
    assert out["era_p_1970s"] == [0, 0, 1] and "era_p_1970s-" not in out


def test_year_tag_mapping_follows_the_card_spans():
    tag = tag_levels.year_tag
    assert [tag(y) for y in (1990, 2008, 2010.4, 2010.6, 2014.4, 2014.6, 2017.6, 2020.4,
                             2020.6, 2030)] == [
        "oldest", "oldest", "oldest", "early", "early", "mid", "recent", "recent", "newest",
        "newest"]
    assert tag(float("nan")) is None
    assert tag_levels.TIER_TAG["great"] == "great quality"
    assert tag_levels.target("year", "mid") == 2016 and tag_levels.target("quality",
                                                                            "masterpiece") == 6


def test_hub_source_loads_from_the_cache_with_its_revision(tmp_path, monkeypatch):
    """id + revision + model_name through huggingface_hub, offline, from a cache holding the
    stand-in's files the way the hub lays them out."""
    import huggingface_hub.constants as hf

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "models--deepghs--anime_aesthetic"
    snap = repo / "snapshots" / commit / "swinv2pv3_v0_448_ls0.2_x"
    shutil.copytree(anime_quality.ensure_tiny(), snap)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path))
    options = {"id": "deepghs/anime_aesthetic", "model_name": "swinv2pv3_v0_448_ls0.2_x"}
    for revision in ("main", commit):
        AnimeQualityScorer.check("anime_quality", {**options, "revision": revision})
        s = AnimeQualityScorer("anime_quality", {**options, "revision": revision}, "cpu")
        assert s.width == 32
    with pytest.raises(ConfigError, match="scorer 'anime_quality'.*scorer.anime_quality.path="):
        AnimeQualityScorer.check("anime_quality", {**options, "model_name": "other_model"})
    with pytest.raises(ConfigError, match="model_name"):
        AnimeQualityScorer.check("anime_quality", {"id": "deepghs/anime_aesthetic"})


def test_cuda_provider_is_asked_for_on_a_gpu(monkeypatch, tmp_path):
    import onnxruntime as ort

    asked = []
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession",
                        lambda path, providers: asked.append(providers))
    base.onnx_session(tmp_path / "model.onnx", "cuda")
    base.onnx_session(tmp_path / "model.onnx", "cpu")
    assert asked == [["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"]]


def test_wrong_classes_and_missing_files_name_the_scorer(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(anime_era.ensure_tiny(), folder)
    with pytest.raises(ConfigError, match="scorer 'q'.*not the classes"):
        AnimeQualityScorer("q", {"path": str(folder)}, "cpu")  # an era model
    with pytest.raises(ConfigError, match="scorer 'e'.*scorer.e.path="):
        AnimeEraScorer("e", {"path": str(tmp_path / "missing")}, "cpu")
