"""Scores at generation time, rescoring from PNGs, load_run's merge, and diversity."""

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import diversity, load_run
from analysis.diversity import pairwise_diversity
from animagine_batch import cli
from conftest import run_cli


def test_demo_rows_carry_scores_with_their_types(demo_run):
    df = load_run(demo_run)
    ok = df[df.status == "ok"]
    assert ok.aesthetic_score.between(0, 1).all() and ok.aesthetic_score.dtype == np.float32
    assert ok.clip_score.between(0, 100).all() and ok.clip_cosine.between(-1, 1).all()
    assert ok.clip_truncated.dtype == bool and ok.wd14_rating.isin(
        ["general", "sensitive", "questionable", "explicit"]).all()
    assert ok.wd14_tag_recall.between(0, 1).all() and ok.wd14_tag_coverage.between(0, 1).all()
    assert all(isinstance(t, (list, np.ndarray)) for t in ok.wd14_tags)
    schema = pq.read_schema(next((demo_run / "results").glob("part-*.parquet")))
    assert schema.field("wd14_tags").type.value_type == pa.string()
    assert b"CC-BY-NC-4.0" not in schema.metadata[b"animagine_batch"]  # stand-in, not the real one
    assert b"tiny_aesthetic" in schema.metadata[b"animagine_batch"]


def test_rescoring_replaces_only_its_columns_and_is_idempotent(demo_run, tmp_path):
    run = tmp_path / "demo"
    shutil.copytree(demo_run, run)
    before = load_run(run)
    # same scorer, same images: the scores computed from the PNGs equal those made in memory
    assert cli.main(["score", str(run), "scorers=[tiny_aesthetic]"]) == 0
    same = load_run(run)
    assert np.allclose(same.aesthetic_score, before.aesthetic_score, atol=1e-6)
    # another config of the scorer: its columns change, nothing else does
    r = run_cli("score", str(run), "scorers=[tiny_aesthetic]", "scorer.tiny_aesthetic.cuts=[0.1,0.2,0.3]")
    assert r.returncode == 0, r.stderr
    assert "scorer tiny_aesthetic: 0 done, 24 to do" in r.stdout
    after = load_run(run)
    assert (after.aesthetic_tag == "very aesthetic").all()
    assert not (before.aesthetic_tag == "very aesthetic").all()
    others = [c for c in before.columns if c not in ("aesthetic_tag", "aesthetic_score")]
    pd.testing.assert_frame_equal(after[others], before[others])
    parts = sorted((run / "scores" / "tiny_aesthetic").iterdir())
    r = run_cli("score", str(run), "scorers=[tiny_aesthetic]", "scorer.tiny_aesthetic.cuts=[0.1,0.2,0.3]")
    assert "scorer tiny_aesthetic: 24 done, 0 to do" in r.stdout
    assert sorted((run / "scores" / "tiny_aesthetic").iterdir()) == parts


def test_score_command_bad_input(demo_run, tmp_path):
    r = run_cli("score", str(demo_run), "scorers=[nope]")
    assert r.returncode == 2 and "unknown scorer 'nope'; allowed: aesthetic_shadow_v2" in r.stderr
    r = run_cli("score", str(tmp_path / "none"), "scorers=[tiny_clip]")
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_missing_real_scorer_stops_the_run_before_output(tmp_path):
    r = run_cli("run", "jobs/demo.yaml", f"output.root={tmp_path}", "scorers=[tiny_clip,wd14]")
    assert r.returncode == 2, r.stderr
    assert "scorer 'wd14'" in r.stderr and "scorer.wd14.path=" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "demo").exists()


def test_diversity_of_cells(demo_run):
    df = load_run(demo_run)
    cells = diversity(df)
    assert len(cells) == 12 and (cells.n_images == 2).all()
    assert cells.diversity.between(0, 2).all()
    by_prompt = diversity(df, by=["prompt_key"])
    assert sorted(by_prompt.prompt_key) == ["asuka", "miku", "naruto"]
    e = np.eye(3, dtype=np.float32)
    assert pairwise_diversity(e) == pytest.approx(1.0)
    assert pairwise_diversity(np.ones((4, 3)) / np.sqrt(3)) == pytest.approx(0.0, abs=1e-6)
