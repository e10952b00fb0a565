"""Dataset exports: kohya folders and Hugging Face Parquet, filters, dedupe, atomic and idempotent."""

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import clients
from analysis import load_run
from analysis.diversity import embeddings
from animagine_batch.jobspec import tags as T
from animagine_batch.export import caption_parts
from conftest import run_cli

pytestmark = pytest.mark.slow


def _kohya(run, out, *args):
    """Export `run` as kohya and read it back as sd-scripts does: (config subset, images)."""
    r = run_cli("export", str(run), "--format", "kohya", "--out", str(out), *args)
    assert r.returncode == 0, r.stderr
    (subset,) = clients.read_dataset_config(out / "dataset_config.toml")
    clients.check_bucketing(subset)
    return subset, clients.read_images(subset)


def test_kohya_export_trains_as_sd_scripts_reads_it(demo_run, tmp_path):
    out = tmp_path / "kohya"
    subset, images = _kohya(demo_run, out)
    df = load_run(demo_run).set_index("task_id")
    assert subset["finetune"] and subset["image_dir"] == str(out.resolve())
    assert len(images) == 24 == len(list(out.glob("*.png"))) == len(list(out.glob("*.txt")))
    for image in images:
        row = df.loc[Path(image["path"]).stem]
        text = clients.tokens(image["text"])
        assert len(text) == len(set(text)) and all(text)  # every tag trained once
        with Image.open(image["path"]) as im:
            assert image["size"] == image["train_resolution"] == list(im.size) == [64, 64]
        head = [row.subject, T.strip_emphasis(T.normalise_tag(row.character)),
                T.strip_emphasis(T.normalise_tag(row.series))]
        assert subset["shuffle_caption"] and subset["keep_tokens"] == 3
        rng = random.Random(0)
        for _ in range(5):  # shuffled as in training: subject, character, series stay first
            assert clients.shuffled(image["text"], subset["keep_tokens"], rng)[:3] == head
        assert (Path(image["path"]).with_suffix(".txt").read_text()
                == image["text"] + "\n")  # the .txt caption is the same text
        # neither scaled nor cropped into its bucket
        assert clients.bucket_without_upscale(subset, 64, 64) == (64, 64)
    naruto = df[(df.prompt_key == "naruto") & (df.tag_position == "append")]
    task_id = naruto.index[0]
    text = clients.tokens(next(i["text"] for i in images if task_id in i["path"]))
    rating = {"general": "safe", "sensitive": "sensitive", "questionable": "nsfw",
              "explicit": "explicit"}[naruto.iloc[0].wd14_rating]
    assert text[:6] == ["1boy", "uzumaki naruto", "naruto (series)", "solo", "outdoors", rating]
    # prompted quality tags, then the bucket of the MEASURED aesthetic score (not the prompted one)
    assert text[6:8] == ["masterpiece", "best quality"] and text[8] == naruto.iloc[0].aesthetic_tag
    assert "very aesthetic" not in text or naruto.iloc[0].aesthetic_tag == "very aesthetic"
    source = demo_run / naruto.iloc[0].image_path
    assert (out / f"{task_id}.png").read_bytes() == source.read_bytes()


def test_kohya_dreambooth_layout(demo_run, tmp_path):
    out = tmp_path / "db"
    subset, images = _kohya(demo_run, out, "--kohya-layout", "dreambooth", "--where",
                            "prompt_key == 'miku'")
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert [p.name for p in folders] == ["1_demo"] and clients.repeats("1_demo") == 1
    assert not subset["finetune"] and subset["image_dir"] == str(folders[0].resolve())
    assert subset["caption_extension"] == ".txt" and subset["num_repeats"] == 1
    assert not (out / "metadata.json").exists()
    assert len(images) == 8 and all(clients.tokens(i["text"])[:3] == ["1girl", "hatsune miku",
                                                                       "vocaloid"] for i in images)
    r = run_cli("export", str(demo_run), "--format", "kohya", "--out", str(tmp_path / "x"),
                "--kohya-layout", "flat")
    assert r.returncode == 2 and "--kohya-layout: invalid choice: 'flat'" in r.stderr
    assert not (tmp_path / "x").exists()


def test_caption_year_and_rating_come_from_the_prompt():
    row = {"subject": "1girl", "character": "artoria_pendragon_(fate)", "series": "fate/stay_night",
           "content_prompt": "1girl, artoria pendragon (fate), fate/stay night, smile",
           "prompt": "masterpiece, 1girl, artoria pendragon \\(fate\\), fate/stay night, smile, "
                     "explicit, nsfw, newest", "aesthetic_tag": "displeasing",
           "wd14_rating": "general"}
    caption, lead = caption_parts(row, "prompt")
    assert caption == ["1girl", "artoria pendragon (fate)", "fate/stay night", "smile", "explicit",
                       "nsfw", "masterpiece", "displeasing", "newest"] and lead == 3
    row["wd14_tags"] = ["artoria_pendragon_(fate)", "armor", "blonde_hair", "nsfw"]
    caption, lead = caption_parts(row, "wd14")
    assert caption[3:6] == ["armor", "blonde hair", "nsfw"] and caption.count("nsfw") == 1
    # what pandas reads back for an entry without character or series, or an unscored image
    row |= {"character": float("nan"), "series": None, "aesthetic_tag": float("nan")}
    caption, lead = caption_parts(row, "prompt")
    assert caption[:2] == ["1girl", "artoria pendragon (fate)"] and lead == 1
    assert "displeasing" not in caption


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


def test_hf_shards_share_the_declared_types(demo_run, tmp_path):
    """datasets reads a folder of shards as one table: a column null throughout a shard (or the
    whole export) keeps the type the run declared, and the declared features match the data."""
    import datasets

    out = tmp_path / "hf"
    r = run_cli("export", str(demo_run), "--format", "hf-parquet", "--out", str(out),
                "--shard-rows", "7")
    assert r.returncode == 0, r.stderr
    files = sorted((out / "data").glob("*.parquet"))
    assert [f.name for f in files] == [f"train-0000{i}-of-00004.parquet" for i in range(4)]
    schemas = {pq.read_schema(f).remove_metadata() for f in files}
    assert len(schemas) == 1
    (schema,) = schemas
    df = load_run(demo_run)
    assert df.wd14_rating_match.isna().all() and df.hires_scale.isna().all()  # null throughout
    assert schema.field("wd14_rating_match").type == pa.bool_()
    assert schema.field("hires_scale").type == pa.float64()
    assert schema.field("cfg").type == pa.float64() and schema.field("steps").type == pa.int32()
    declared = json.loads(pq.read_schema(files[0]).metadata[b"huggingface"])["info"]["features"]
    ds = datasets.load_dataset("parquet", data_dir=str(out), split="train",
                               cache_dir=str(tmp_path / "cache"))
    assert ds.features == datasets.Features.from_dict(declared)
    assert ds.features["wd14_rating_match"] == datasets.Value("bool")
    assert ds.features["task_id"] == datasets.Value("string")
    assert sorted(ds["task_id"]) == sorted(df.task_id) and len(ds) == 24
    assert sorted(ds["cfg"]) == sorted(df.cfg)
    r = run_cli("export", str(demo_run), "--format", "hf-parquet", "--out", str(tmp_path / "z"),
                "--shard-rows", "0")
    assert r.returncode == 2 and "--shard-rows 0" in r.stderr and not (tmp_path / "z").exists()


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
