"""Every shipped job runs through generation, both exports and a rescore on the tiny model, and
what it writes reads back with the rules of the programs that consume it (tests/clients.py):
webui's infotext parser, sd-scripts' loaders, `datasets`. One more run puts prompt-set entries of
every kind through the prompt_power job: no character or series, a series alone, a plain tag
string, wildcards, a prompt over 75 tokens, and `#`, `%`, `//` and `:{`, which dynamicprompts
would read as syntax."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

import clients
from analysis import load_run
from animagine_batch import cli
from animagine_batch.jobspec import tags as T
from conftest import REPO

pytestmark = pytest.mark.slow

JOBS = sorted(p.stem for p in (REPO / "jobs").glob("*.yaml"))
# generation scores with two stand-ins, the rescore adds the third (a rescore of what is already
# scored would be skipped)
TINY = ["model=tiny", "runner=local", "scorers=[tiny_aesthetic,tiny_clip]", "generation.steps=2",
        "generation.width=64", "generation.height=64"]
EDGE = """\
- {id: compass, subject: 1girl, character: voidoll, series: "#compass",
   tags: ["{smile|open mouth}", "100% orange juice", "a//b", ":{", solo]}
- {id: nobody, subject: 1boy, tags: [solo, looking at viewer, smile, short hair, black hair,
   brown eyes, school uniform, gakuran, standing, outdoors, day, cherry blossoms, petals, tree,
   blue sky, cloud, building, scenery, wind, hand in pocket, upper body, depth of field,
   light rays, sunlight, shadow, closed mouth, collared shirt, white shirt, black jacket]}
- {id: place, series: touhou, tags: [__scene__, no humans]}
- "1girl, #hashtag, solo"
"""


def overrides(job: str) -> list[str]:
    """The tiny-model overrides of a job: one sampled task, 64 px and 2 steps, and the levels
    of a size or steps axis replaced by small ones."""
    sweep = cli.compose_job(job, []).get("sweep") or {}
    small = {"width": "[64,96]", "height": "[64,96]", "size": "[64x64,96x64]", "steps": "[2,3]"}
    assert "model" not in {**(sweep.get("grid") or {}), **(sweep.get("zip") or {})}, \
        f"{job}: give its model axis tiny levels here"
    extra = [f"sweep.{part}.{axis}={levels}" for part in ("grid", "zip")
             for axis, levels in small.items() if axis in (sweep.get(part) or {})]
    return [*TINY, "sweep.sample=1", *extra]


def head_tags(row) -> list[str]:
    return [T.strip_emphasis(T.normalise_tag(v)) for v in (row.subject, row.character, row.series)
            if T.field_text(v)]


def check_run(run: Path, tmp: Path) -> dict:
    """Asserts what every run must give; returns what the caller checks further."""
    # rescoring with the WD tagger reads every row back through pandas
    assert cli.main(["score", str(run), "scorers=[tiny_wd14]"]) == 0
    df = load_run(run)
    assert len(df) and (df.status == "ok").all(), df.error.dropna().tolist()[:3]
    scored = pq.read_table(run / "scores" / "tiny_wd14").to_pandas()
    assert sorted(scored.task_id) == sorted(df.task_id) and df.wd14_rating.notna().all()
    for row in df.itertuples():  # webui reads the infotext; its prompt is what the pipeline saw
        params = clients.webui_parse(Image.open(run / row.image_path).text["parameters"])
        prompt, loras = clients.webui_loras(params)
        assert prompt.strip() == row.prompt and params["Steps"] == str(row.steps)
        used = T.field_text(row.loras)
        assert len(loras) == (used.count("; ") + 1 if used else 0)
        assert all(h for _, h in loras.values())  # every re-applied LoRA has its hash
    # kohya, fine-tune layout, as sd-scripts reads it
    out = tmp / "kohya"
    assert cli.main(["export", str(run), "--format", "kohya", "--out", str(out)]) == 0
    (subset,) = clients.read_dataset_config(out / "dataset_config.toml")
    clients.check_bucketing(subset)
    images = clients.read_images(subset)
    assert len(images) == len(df)
    by_id = df.set_index("task_id")
    for image in images:
        row = by_id.loc[Path(image["path"]).stem]
        text = clients.tokens(image["text"])
        assert len(text) == len(set(text)) and all(text)
        with Image.open(image["path"]) as im:
            assert image["size"] == image["train_resolution"] == list(im.size)
            assert clients.bucket_without_upscale(subset, *im.size) == im.size
        head = [t.strip() for h in head_tags(row) for t in h.split(",")]
        shuffled = clients.shuffled(image["text"], subset["keep_tokens"], random.Random(1))
        assert shuffled[:len(head)] == head
    # Hugging Face Parquet, one image a shard: a nullable column is null in some shards
    hf = tmp / "hf"
    assert cli.main(["export", str(run), "--format", "hf-parquet", "--out", str(hf),
                     "--shard-rows", "1"]) == 0
    shards = sorted((hf / "data").glob("*.parquet"))
    assert len(shards) == len(df) and len({pq.read_schema(s) for s in shards}) == 1
    return {"df": df, "images": images, "subset": subset, "hf": hf}


@pytest.mark.parametrize("job", JOBS)
def test_shipped_job_generates_exports_and_rescores(job, tmp_path):
    assert cli.main(["run", str(REPO / "jobs" / f"{job}.yaml"), *overrides(job),
                     f"output.root={tmp_path / 'runs'}"]) == 0
    assert len(check_run(tmp_path / "runs" / job, tmp_path)["df"]) == 1


def test_entries_of_every_kind_through_the_prompt_power_job(tmp_path):
    import datasets

    prompts = tmp_path / "edge.yaml"
    prompts.write_text(EDGE)
    (tmp_path / "scene.txt").write_text("outdoors, blue sky\n")
    assert cli.main(["run", str(REPO / "jobs" / "prompt_power.yaml"), *TINY,
                     f"prompts={prompts}", f"wildcards.folder={tmp_path}", "sweep.grid={}",
                     "hires.scale=1.5", f"output.root={tmp_path / 'runs'}"]) == 0
    got = check_run(tmp_path / "runs" / "prompt_power", tmp_path)
    df = got["df"].set_index("prompt_key")
    assert sorted(df.index) == ["compass~0", "compass~1", "nobody", "p0003", "place~0"]
    assert set(df.loc[["compass~0", "compass~1"], "series"]) == {"#compass"}  # not a comment
    picked = [t for k in ("compass~0", "compass~1") for t in T.split_tags(df.loc[k, "prompt"])
              if t in ("smile", "open mouth")]
    assert sorted(picked) == ["open mouth", "smile"]  # one task per variant
    assert "100% orange juice, a//b, :{, solo" in df.loc["compass~0", "prompt"]
    missing = df[["subject", "character", "series"]].isna()
    assert df.loc["nobody", "prompt_tokens"] > 75 and missing.loc["nobody", "character"]
    assert missing.loc["place~0", "subject"] and missing.loc["place~0", "character"]
    assert "#hashtag" in df.loc["p0003", "prompt"] and missing.loc["p0003", "series"]
    assert "outdoors, blue sky, no humans" in df.loc["place~0", "prompt"]  # the wildcard
    # every image is the hi-res pass's 96 px, and kohya declares what was saved
    assert {tuple(i["size"]) for i in got["images"]} == {(96, 96)}
    assert got["subset"]["keep_tokens"] == 3
    compass = next(i for i in got["images"] if df.loc["compass~0", "task_id"] in i["path"])
    assert clients.tokens(compass["text"])[:3] == ["1girl", "voidoll", "#compass"]
    # datasets reads the shards as one table although `character` (string) and
    # `wd14_character_hit` (bool) are null in some of them
    ds = datasets.load_dataset("parquet", data_dir=str(got["hf"]), split="train",
                               cache_dir=str(tmp_path / "cache"))
    assert ds.features["character"] == datasets.Value("string")
    assert ds.features["wd14_character_hit"] == datasets.Value("bool")
    assert sorted(ds["prompt_key"]) == sorted(df.index)
    assert sum(c is None for c in ds["character"]) == 3
    # the DreamBooth layout of the same run
    out = tmp_path / "dreambooth"
    assert cli.main(["export", str(tmp_path / "runs" / "prompt_power"), "--format", "kohya",
                     "--kohya-layout", "dreambooth", "--out", str(out)]) == 0
    (subset,) = clients.read_dataset_config(out / "dataset_config.toml")
    assert clients.repeats(Path(subset["image_dir"]).name) == subset["num_repeats"] == 1
    assert sorted(clients.tokens(i["text"])[0] for i in clients.read_images(subset)) == \
        sorted(clients.tokens(i["text"])[0] for i in got["images"])
