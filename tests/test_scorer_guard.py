"""Scorers guard their own validity: reference images with expected outputs, checked when a
scorer is built; the result and the preprocessing go into the provenance."""

import hashlib
import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from animagine_batch import cli
from animagine_batch.errors import ConfigError
from animagine_batch.score import config_hash
from animagine_batch.scorers import (aesthetic, anime_era, anime_quality, clip, reference,
                                     registry, wd14)
from animagine_batch.jobspec.job import ScorerSpec
from conftest import REPO

STAND_INS = ["tiny_aesthetic", "tiny_clip", "tiny_wd14", "tiny_anime_quality", "tiny_anime_era"]


def spec_of(name: str, **options) -> ScorerSpec:
    config = yaml.safe_load((REPO / "conf" / "scorer" / f"{name}.yaml").read_text())
    return ScorerSpec.make(name, {**config, **options})


def test_reference_images_are_fixed():
    """The shipped expectations hold only for these exact pixels."""
    digest = hashlib.sha256(b"".join(im.tobytes() for im in reference.images())).hexdigest()
    assert [im.size for im in reference.images()] == [(96, 64), (64, 96), (80, 80), (72, 72),
                                                      (128, 48)]
    assert digest[:16] == "f8f679a0419d2ce8"


# seed-1 weights of each stand-in, to swap in: (module attribute to patch, builder)
def _seed1(builder):
    return lambda: builder(1)


SWAPS = {
    "tiny_aesthetic": (aesthetic, "ensure_aesthetic", _seed1(aesthetic.ensure_aesthetic)),
    "tiny_clip": (clip, "ensure_tiny_clip", _seed1(clip.ensure_tiny_clip)),
    "tiny_wd14": (wd14, "ensure_wd14", _seed1(wd14.ensure_wd14)),
    "tiny_anime_quality": (anime_quality.AnimeQualityScorer, "stand_in",
                           staticmethod(_seed1(anime_quality.ensure_tiny))),
    "tiny_anime_era": (anime_era.AnimeEraScorer, "stand_in",
                       staticmethod(_seed1(anime_era.ensure_tiny))),
}


@pytest.mark.parametrize("name", STAND_INS)
def test_stand_ins_pass_and_swapped_weights_fail(name, monkeypatch):
    scorer = registry.build(spec_of(name), "cpu")
    check = scorer.provenance["reference_check"]
    assert check["status"] == "passed" and check["reference"] == f"{name}.json"
    assert check["max_drift"] <= check["tolerance"]
    assert scorer.provenance["preprocessing"]
    owner, attr, swapped = SWAPS[name]
    monkeypatch.setattr(owner, attr, swapped)
    with pytest.raises(ConfigError) as e:
        registry.build(spec_of(name), "cpu")
    text = str(e.value)
    assert text.startswith(f"scorer {name!r}: its reference images no longer score as expected")
    assert f"scorer.{name}.reference=record" in text


def test_a_scorer_without_shipped_outputs_records_then_checks(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMAGINE_BATCH_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "wd"
    shutil.copytree(wd14.ensure_wd14(), folder)
    spec = spec_of("wd14", path=str(folder), id=None)
    first = registry.build(spec, "cpu").provenance["reference_check"]
    assert first["status"] == "recorded"
    saved = json.loads(open(first["reference"]).read())
    assert saved["source"]["path"] == str(folder) and len(saved["values"]) == 5
    assert saved["recorded"]["device"] == "cpu" and "onnxruntime" in saved["recorded"]["versions"]
    assert registry.build(spec, "cpu").provenance["reference_check"]["status"] == "passed"
    shutil.copy(wd14.ensure_wd14(1) / "model.onnx", folder / "model.onnx")
    with pytest.raises(ConfigError, match="scorer 'wd14': its reference images"):
        registry.build(spec, "cpu")
    assert registry.build(spec_of("wd14", path=str(folder), id=None, reference="off"),
                          "cpu").provenance["reference_check"] == {"status": "off"}
    again = spec_of("wd14", path=str(folder), id=None, reference="record")
    assert registry.build(again, "cpu").provenance["reference_check"]["status"] == "recorded"
    assert registry.build(spec, "cpu").provenance["reference_check"]["status"] == "passed"
    assert config_hash(again) == config_hash(spec)  # how it is checked is not what it scores


def test_a_run_with_swapped_weights_stops_before_any_output(tmp_path, monkeypatch, capsys):
    """The stand-in's weights in the cache replaced by others: exit 2 naming the scorer, for
    `run` and for `score`, and nothing written."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("ANIMAGINE_BATCH_CACHE", str(cache))
    built = wd14.ensure_wd14()
    shutil.copy(wd14.ensure_wd14(1) / "model.onnx", built / "model.onnx")
    root = tmp_path / "out"
    code = cli.main(["run", str(REPO / "jobs" / "demo.yaml"), f"output.root={root}",
                     "runner=local", "scorers=[tiny_wd14]"])
    err = capsys.readouterr().err
    assert code == 2 and "scorer 'tiny_wd14': its reference images no longer score" in err
    assert not (root / "demo").exists()


def test_score_with_swapped_weights_writes_no_scores(demo_run, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(demo_run, run)
    monkeypatch.setattr(anime_quality.AnimeQualityScorer, "stand_in",
                        staticmethod(lambda: anime_quality.ensure_tiny(1)))
    assert cli.main(["score", str(run), "scorers=[tiny_anime_quality]"]) == 2
    assert "scorer 'tiny_anime_quality': its reference images" in capsys.readouterr().err
    assert not (run / "scores").exists()


def test_the_check_and_the_preprocessing_are_in_the_provenance(demo_run):
    part = sorted((demo_run / "results").glob("part-*.parquet"))[0]
    prov = json.loads(pq.read_schema(part).metadata[b"animagine_batch"])
    job = yaml.safe_load((demo_run / "job.yaml").read_text())["provenance"]
    for name in ("tiny_aesthetic", "tiny_clip", "tiny_wd14"):
        for where in (prov, job):
            scorer = where["scorers"][name]
            assert scorer["reference_check"]["status"] == "passed"
            assert scorer["reference_check"]["reference"] == f"{name}.json"
    assert prov["scorers"]["tiny_clip"]["preprocessing"]["resize_mode"] == "shortest"
    assert prov["scorers"]["tiny_wd14"]["preprocessing"]["size"] == [64, 64]
    assert prov["scorers"]["tiny_aesthetic"]["preprocessing"]["resample"] == "bilinear"
    assert "clip_score" in prov["scorers"]["tiny_clip"]["columns"]


def test_shipped_outputs_match_the_stand_ins_bit_for_bit_on_the_cpu():
    """A check of the check: the shipped values are what the stand-ins give here."""
    for name in STAND_INS:
        ref = json.loads((reference.SHIPPED / f"{name}.json").read_text())
        version = registry.scorer_class(spec_of(name).kind).version
        assert ref["source"] == reference.source(spec_of(name), version)
        scorer = registry.scorer_class(spec_of(name).kind)(name, spec_of(name).options, "cpu")
        drift = np.abs(reference.outputs(scorer, reference.images()) - np.array(ref["values"]))
        assert drift.max() < 1e-5, name
