"""Dataset exports: kohya folders and Hugging Face Parquet, filters, dedupe, atomic and idempotent."""

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from analysis import load_run
from analysis.diversity import embeddings
from animagine_batch.export import caption_parts
from conftest import run_cli

pytestmark = pytest.mark.slow


def test_kohya_export_with_animagine_caption_order(demo_run, tmp_path):
    out = tmp_path / "kohya"
    r = run_cli("export", str(demo_run), "--format", "kohya", "--out", str(out))
    assert r.returncode == 0, r.stderr
    df = load_run(demo_run)
    meta = json.loads((out / "metadata.json").read_text())
    assert len(meta) == 24 == len(list(out.glob("*.png"))) == len(list(out.glob("*.txt")))
    row = df[(df.prompt_key == "naruto") & (df.tag_position == "append")].iloc[0]
    caption = (out / f"{row.task_id}.txt").read_text().strip()
    tags = caption.split(", ")
    assert tags[:6] == ["1boy", "uzumaki naruto", "naruto (series)", "solo", "outdoors",
                        {"general": "safe", "sensitive": "sensitive", "questionable": "nsfw",
                         "explicit": "explicit"}[row.wd14_rating]]
    # prompted quality tags, then the bucket of the MEASURED aesthetic score (not the prompted one)
    assert tags[6:8] == ["masterpiece", "best quality"] and tags[8] == row.aesthetic_tag
    assert "very aesthetic" not in tags or row.aesthetic_tag == "very aesthetic"
    assert meta[row.task_id] == {"caption": caption, "tags": "solo, outdoors",
                                 "train_resolution": [64, 64]}
    assert (out / f"{row.task_id}.png").read_bytes() == (demo_run / row.image_path).read_bytes()


def test_caption_year_and_rating_come_from_the_prompt():
    row = {"subject": "1girl", "character": "artoria_pendragon_(fate)", "series": "fate/stay_night",
           "content_prompt": "1girl, artoria pendragon (fate), fate/stay night, smile",
           "prompt": "masterpiece, 1girl, artoria pendragon \\(fate\\), fate/stay night, smile, "
                     "sensitive, newest", "aesthetic_tag": "displeasing", "wd14_rating": "general"}
    caption, general = caption_parts(row, "prompt")
    assert caption == ["1girl", "artoria pendragon (fate)", "fate/stay night", "smile", "sensitive",
                       "masterpiece", "displeasing", "newest"]
    assert general == ["smile"]
    row["wd14_tags"] = ["artoria_pendragon_(fate)", "armor", "blonde_hair"]
    caption, general = caption_parts(row, "wd14")
    assert general == ["armor", "blonde hair"]


def test_hf_parquet_loads_in_datasets_polars_and_duckdb(demo_run, tmp_path):
    import datasets
    import duckdb
    import polars as pl

    out = tmp_path / "hf"
    r = run_cli("export", str(demo_run), "--format", "hf-parquet", "--out", str(out),
                "--where", "prompt_key != 'asuka'")
    assert r.returncode == 0, r.stderr
    files = sorted((out / "data").glob("*.parquet"))
    assert [f.name for f in files] == ["train-00000-of-00001.parquet"]
    ds = datasets.load_dataset("parquet", data_files=[str(f) for f in files], split="train")
    assert len(ds) == 16 and isinstance(ds.features["image"], datasets.Image)
    first = ds[0]
    df = load_run(demo_run).set_index("task_id")
    png = Image.open(demo_run / df.loc[first["task_id"], "image_path"])
    assert np.array_equal(np.asarray(first["image"].convert("RGB")), np.asarray(png.convert("RGB")))
    assert first["aesthetic_score"] == pytest.approx(df.loc[first["task_id"], "aesthetic_score"])
    assert first["caption"].startswith("1")
    assert pl.read_parquet(files[0]).height == 16
    assert duckdb.sql(f"select count(*) from '{files[0]}'").fetchall() == [(16,)]
    schema = pq.read_schema(files[0])
    assert schema.field("image").type.names == ["bytes", "path"]
    assert {"clip_score", "wd14_tag_recall", "caption"} <= set(schema.names)


def test_filters_and_exact_duplicates(demo_run, tmp_path):
    run = tmp_path / "runs" / "run"  # exports go outside the folder that holds the run
    shutil.copytree(demo_run, run)
    part = sorted((run / "results").glob("part-*.parquet"))[0]
    t = pq.read_table(part).to_pandas()
    t.loc[1, ["image_sha256", "image_path"]] = t.loc[0, ["image_sha256", "image_path"]].values
    pq.write_table(pq.read_table(part).from_pandas(t, schema=pq.read_schema(part),
                                                    preserve_index=False), part)
    r = run_cli("export", str(run), "--format", "kohya", "--out", str(tmp_path / "a"))
    assert "23 images exported" in r.stdout  # the duplicated image once
    df = load_run(demo_run)
    cut = float(df.aesthetic_score.median())
    r = run_cli("export", str(demo_run), "--format", "kohya", "--out", str(tmp_path / "b"),
                "--min-aesthetic", str(cut), "--where", "cfg == 7.0")
    n = int(((df.aesthetic_score >= cut) & (df.cfg == 7.0)).sum())
    assert f"{n} images exported" in r.stdout and len(list((tmp_path / "b").glob("*.png"))) == n


def test_near_duplicates_by_clip_embedding(demo_run, tmp_path):
    df = load_run(demo_run)
    emb = embeddings(df.clip_image_embedding)
    threshold = float(np.quantile((emb @ emb.T)[np.triu_indices(len(emb), 1)], 0.5))
    r = run_cli("export", str(demo_run), "--format", "kohya", "--out", str(tmp_path / "d"),
                "--dedupe", "--dedupe-threshold", str(threshold))
    assert r.returncode == 0, r.stderr
    kept = [p.stem for p in (tmp_path / "d").glob("*.png")]
    assert 1 <= len(kept) < 24
    k = embeddings(df.set_index("task_id").loc[kept, "clip_image_embedding"])
    sims = (k @ k.T)[np.triu_indices(len(k), 1)]
    assert (sims <= threshold + 1e-6).all()


def test_export_refuses_non_empty_target_and_is_idempotent(demo_run, tmp_path):
    out = tmp_path / "x"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    r = run_cli("export", str(demo_run), "--format", "hf-parquet", "--out", str(out))
    assert r.returncode == 2 and "is not empty; pass --overwrite" in r.stderr
    r = run_cli("export", str(demo_run), "--format", "hf-parquet", "--out", str(out),
                "--overwrite")  # --overwrite replaces only a previous export
    assert r.returncode == 2 and "is not an export made by animagine-batch" in r.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    assert run_cli("export", str(demo_run), "--format", "hf-parquet", "--out", str(out)
                   ).returncode == 0
    first = (out / "data" / "train-00000-of-00001.parquet").read_bytes()
    assert run_cli("export", str(demo_run), "--format", "hf-parquet", "--out", str(out),
                   "--overwrite").returncode == 0
    assert (out / "data" / "train-00000-of-00001.parquet").read_bytes() == first
    assert not list(tmp_path.glob(".x.*"))  # no temporary folders left
    r = run_cli("export", str(demo_run), "--format", "kohya", "--out", str(tmp_path / "y"),
                "--min-aesthetic", "0.5", "--caption-source", "wd14")
    assert r.returncode == 0, r.stderr
    assert pd.read_json(tmp_path / "y" / "metadata.json").shape[1] == 24


def test_dataset_synthesis_job_on_the_tiny_model_exports(tmp_path):
    r = run_cli("run", "jobs/dataset_synthesis.yaml", "model=tiny", "runner=local",
                f"output.root={tmp_path / 'runs'}", "sweep.grid.size=[64x64,64x96,96x64]",
                "sweep.sample=12", "generation.steps=2",
                "scorers=[tiny_aesthetic,tiny_clip,tiny_wd14]")
    assert r.returncode == 0, r.stderr
    run = tmp_path / "runs" / "dataset_synthesis"
    df = load_run(run)
    assert len(df) == 12 and (df.status == "ok").all() and df.tags.nunique() > 1
    out = tmp_path / "export"  # outside the output root
    r = run_cli("export", str(run), "--format", "kohya", "--out", str(out))
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "metadata.json").read_text())
    assert len(meta) == 12
    for row in df.itertuples():
        entry = meta[row.task_id]
        assert entry["train_resolution"] == [row.width, row.height]
        bundle = row.tags.split(", ")
        caption = entry["caption"].split(", ")
        assert caption[0] == row.subject and caption[1:1 + len(bundle)] != bundle  # character next
        assert all(t in caption for t in bundle)
