"""Wildcards (dynamicprompts), the hi-res pass, LoRA sweeps, and the prompt_power job."""

import hashlib
import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from animagine_batch import cli
from animagine_batch.engine import generator as generate
from animagine_batch.jobspec import sweep
from animagine_batch.jobspec import prompt_sets as P
from animagine_batch.jobspec.job import WildcardSpec
from animagine_batch.errors import ConfigError
from animagine_batch.offline.lora import ensure_lora
from animagine_batch.rundir import metadata
from conftest import REPO, one_unit, pixels, run_cli


@pytest.fixture
def wild(tmp_path):
    (tmp_path / "hair.txt").write_text("red_hair\nblue hair\n")
    (tmp_path / "colors").mkdir()
    (tmp_path / "colors" / "eyes.txt").write_text("green eyes\n")
    ps = tmp_path / "p.yaml"
    ps.write_text('- {id: a, subject: 1girl, tags: ["{smile|frown}", __hair__, "{2$$x|y|z}"]}\n'
                  '- "1boy, {outdoors, sky|indoors}, __colors/eyes__"\n'
                  "- {character: hatsune_miku, series: vocaloid}\n")
    return tmp_path, ps


def test_combinatorial_wildcards_spell_out_every_variant(wild):
    folder, ps = wild
    s = P.load_prompt_set(str(ps), [], WildcardSpec(folder=str(folder)), 0)
    keys = [e.key for e in s.entries]
    assert keys[:24] == [f"a~{i}" for i in range(24)]  # {2$$x|y|z}: 6 ordered pairs
    a = [e for e in s.entries if e.key.startswith("a~")]
    assert len(a) == 2 * 2 * 6
    assert {e.tags[0] for e in a} == {"smile", "frown"}
    assert {e.tags[1] for e in a} == {"red_hair", "blue hair"}
    assert all(len(e.tags) == 4 and e.tags[2] != e.tags[3] for e in a)  # {2$$...}: two picks
    boys = [e for e in s.entries if e.key.startswith("p0001~")]
    assert [e.tags for e in boys] == [("1boy", "outdoors", "sky", "green eyes"),
                                      ("1boy", "indoors", "green eyes")]
    assert s.entries[-1].key == "hatsune_miku"  # entries without syntax are kept as they are
    capped = P.load_prompt_set(str(ps), [], WildcardSpec(folder=str(folder), variants=3), 0)
    assert len([e for e in capped.entries if e.key.startswith("a~")]) == 3


def test_random_wildcards_are_seeded_by_the_job(wild):
    folder, ps = wild
    spec = WildcardSpec(folder=str(folder), mode="random", variants=5)

    def draw(seed):
        return [(e.key, e.tags) for e in P.load_prompt_set(str(ps), [], spec, seed).entries]

    assert draw(0) == draw(0)  # rerunning gives the same prompts
    assert draw(0) != draw(1) or draw(0) != draw(2)
    keys = [k for k, _ in draw(0) if k.startswith("a~")]
    assert 1 <= len(keys) <= 5 and len(set(keys)) == len(keys)  # duplicates dropped


def test_characters_dynamicprompts_reserves_are_text_in_entries(wild, tmp_path):
    """`#` (a comment to dynamicprompts) dropped the rest of an entry; `//`, `/* */`, `%`, a lone
    `$` and an unclosed `{` were comments or parse errors. In entries they are text."""
    folder, _ = wild
    ps = tmp_path / "special.yaml"
    ps.write_text('- {id: voidoll, subject: 1girl, character: voidoll, series: "#compass",\n'
                  '   tags: ["{smile|open mouth}", solo]}\n'
                  '- {id: odd, subject: 1boy, tags: ["100% orange juice", "$5 bill", "a//b",\n'
                  '   "/* not a comment */", ":{", "{2$$x|y}", "__colors/eyes__", "fate/zero"]}\n'
                  '- "1girl, #hashtag, {red hair, blue eyes|short hair}"\n')
    s = P.load_prompt_set(str(ps), [], WildcardSpec(folder=str(folder)), 0)
    by_key = {e.key: e for e in s.entries}
    assert [k for k in by_key if k.startswith("voidoll")] == ["voidoll~0", "voidoll~1"]
    assert {e.series for k, e in by_key.items() if k.startswith("voidoll")} == {"#compass"}
    assert {by_key["voidoll~0"].tags, by_key["voidoll~1"].tags} == {("smile", "solo"),
                                                                     ("open mouth", "solo")}
    odd = [e.tags for k, e in by_key.items() if k.startswith("odd")]
    assert len(odd) == 2 and {t[5:7] for t in odd} == {("x", "y"), ("y", "x")}
    assert all(t[:5] == ("100% orange juice", "$5 bill", "a//b", "/* not a comment */", ":{")
               and t[7:] == ("green eyes", "fate/zero") for t in odd)
    plain = [e.tags for k, e in by_key.items() if k.startswith("p0002")]
    assert plain == [("1girl", "#hashtag", "red hair", "blue eyes"),
                     ("1girl", "#hashtag", "short hair")]


def test_missing_wildcards_are_named(wild, tmp_path):
    folder, ps = wild
    with pytest.raises(ConfigError, match=r"__hair__.*wildcards.folder is not set"):
        P.load_prompt_set(str(ps), [], WildcardSpec(), 0)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"entry 0 uses wildcard\(s\) __hair__ not found in "
                                          r"wildcards.folder .*empty; available: \(none\)"):
        P.load_prompt_set(str(ps), [], WildcardSpec(folder=str(empty)), 0)


def test_stored_prompts_are_the_expanded_text(wild, tmp_path):
    folder, ps = wild
    r = run_cli("run", "jobs/demo.yaml", "--dry-run", f"prompts={ps}", f"wildcards.folder={folder}",
                f"output.root={tmp_path}", "sweep.grid={}", "sweep.seeds=1")
    assert r.returncode == 0, r.stderr
    assert "27 tasks" in r.stdout  # 24 + 2 + 1 entries after expansion, one seed, no axes
    assert "{" not in r.stdout.split("prompt:", 1)[1].split("\n")[0]
    bad = run_cli("run", "jobs/demo.yaml", "--dry-run", f"prompts={ps}",
                  f"output.root={tmp_path}")
    assert bad.returncode == 2 and "wildcards.folder is not set" in bad.stderr


# ---------------------------------------------------------------- hi-res pass


def test_hires_pass_upscales_and_records_itself(tiny_generator, tasks):
    t = tasks[0]
    plain = tiny_generator(one_unit([t]))
    hi = tiny_generator(one_unit([t._replace(hires=(1.5, 0.55, "nearest-exact"), task_id="hi")]))
    img = Image.open(io.BytesIO(hi.pngs[0]))
    assert img.size == (96, 96)
    info = metadata.parse_infotext(img.text["parameters"])
    assert info["Hires upscale"] == "1.5" and info["Denoising strength"] == "0.55"
    assert info["Hires upscaler"] == "Latent (nearest-exact)"  # webui's name
    assert info["Size"] == "64x64"  # the first pass's size, as webui writes it
    meta = json.loads(img.text["metadata"])
    assert meta["use_upscaler"] == {"upscale_method": "nearest-exact", "upscaler_strength": 0.55,
                                    "upscale_by": 1.5, "new_resolution": "96 x 96"}
    assert hi.rows[0]["hires_scale"] == 1.5 and plain.rows[0]["hires_scale"] is None
    # the second pass starts from the first: downscaled, the hi-res image resembles it
    small = np.asarray(img.convert("RGB").resize((64, 64), Image.LANCZOS)).astype(int)
    other = tiny_generator(one_unit([tasks[1]]))
    assert np.abs(small - pixels(plain.pngs[0])).mean() < \
        np.abs(small - pixels(other.pngs[0])).mean()
    weaker = tiny_generator(one_unit([t._replace(hires=(1.5, 0.2, "nearest-exact"), task_id="h2")]))
    assert weaker.pngs[0] != hi.pngs[0]


def test_hires_axes_expand_and_are_validated(compose, tmp_path):
    spec = compose("demo", "sweep.grid={}", "sweep.grid.hires.scale=[none,1.5]",
                   "sweep.grid.hires.strength=[0.3,0.55]")
    assert spec.sweep.axes == ("hires.scale", "hires.strength")
    ps = P.load_prompt_set("demo", [REPO / "conf" / "prompt_sets"])
    tasks_ = sweep.expand(spec, ps, {"tiny": "x"})
    assert {t.hires for t in tasks_} == {None, (1.5, 0.3, "nearest-exact"),
                                         (1.5, 0.55, "nearest-exact")}
    # strength matters only with the pass on: (none, 0.3) and (none, 0.55) are one task
    assert len({t.task_id for t in tasks_}) == len(tasks_) == 3 * 3 * 2
    assert [t.index for t in tasks_] == list(range(len(tasks_)))
    assert {u.hires for u in sweep.units(tasks_, 4)} == {t.hires for t in tasks_}
    r = run_cli("run", "jobs/demo.yaml", "--dry-run", f"output.root={tmp_path}",
                "sweep.grid.hires.scale=[3.0]", "hires.strength=0", "generation.width=1024")
    assert r.returncode == 2
    assert "sweep.grid.hires.scale[0]: 3.0 must be none (no hi-res pass) or a number from 1.0 " \
           "to 2.0" in r.stderr
    assert "hires.strength: 0 must be a number in (0, 1]" in r.stderr
    big = run_cli("run", "jobs/demo.yaml", "--dry-run", f"output.root={tmp_path}",
                  "hires.scale=1.5", "generation.width=1024")
    assert big.returncode == 2 and "upscales 1024 px to 1536 px, more than 1024 px" in big.stderr


# ---------------------------------------------------------------- LoRA


@pytest.fixture(scope="module")
def lora_path():
    return str(ensure_lora(0))


def test_lora_scale_switches_adapters_without_reloading(tiny_generator, tasks, lora_path):
    t = tasks[0]
    pipe = tiny_generator.pipe
    base = tiny_generator(one_unit([t]))
    zero = tiny_generator(one_unit([t._replace(loras=((lora_path, 0.0),), task_id="z")]))
    one = tiny_generator(one_unit([t._replace(loras=((lora_path, 1.0),), task_id="o")]))
    half = tiny_generator(one_unit([t._replace(loras=((lora_path, 0.5),), task_id="h")]))
    after = tiny_generator(one_unit([t]))
    assert tiny_generator.pipe is pipe and generate.live_pipelines() == 1
    assert np.array_equal(pixels(zero.pngs[0]), pixels(base.pngs[0]))  # scale 0 = no LoRA
    assert not np.array_equal(pixels(one.pngs[0]), pixels(base.pngs[0]))
    d_half = np.abs(pixels(half.pngs[0]) - pixels(base.pngs[0])).mean()
    d_one = np.abs(pixels(one.pngs[0]) - pixels(base.pngs[0])).mean()
    assert 0 < d_half < d_one
    assert after.pngs == base.pngs  # adapters off again: the base model's bytes
    info = metadata.parse_infotext(Image.open(io.BytesIO(one.pngs[0])).text["parameters"])
    assert info["Prompt"] == f"{t.prompt} <lora:pytorch_lora_weights:1>"  # webui's syntax
    assert "Lora weights" not in info  # not a webui key
    raw = open(lora_path, "rb").read()  # webui's "addnet" hash: sha256 after the JSON header
    body = raw[8 + int.from_bytes(raw[:8], "little"):]
    assert info["Lora hashes"] == f"pytorch_lora_weights: {hashlib.sha256(body).hexdigest()[:12]}"
    assert one.rows[0]["loras"] == f"{lora_path}:1"


def test_lora_axes_and_ids(compose, lora_path, tmp_path):
    spec = compose("demo", "sweep.grid={}", f"loras=[{{path: '{lora_path}', scale: 1.0}}]",
                   "sweep.grid.lora.scale=[0.0,0.5,1.0]")
    ps = P.load_prompt_set("demo", [REPO / "conf" / "prompt_sets"])
    ids = {f"lora:{lora_path}": "sha256:aaa"}
    tasks_ = sweep.expand(spec, ps, {"tiny": "x", **ids})
    assert {t.loras for t in tasks_} == {((lora_path, s),) for s in (0.0, 0.5, 1.0)}
    assert len({t.task_id for t in tasks_}) == 3 * 3 * 2
    moved = sweep.expand(spec, ps, {"tiny": "x", f"lora:{lora_path}": "sha256:bbb"})
    assert not {t.task_id for t in moved} & {t.task_id for t in tasks_}  # content, not name
    spec2 = compose("demo", "sweep.grid={}", "sweep.grid.lora.path=[none,'embedded:tiny']")
    assert {t.loras for t in sweep.expand(spec2, ps, {"tiny": "x"})} == {(), ((lora_path, 1.0),)}


def test_bad_loras_are_refused(tmp_path):
    ckpt = tmp_path / "style.ckpt"
    ckpt.write_bytes(b"x")
    r = run_cli("run", "jobs/demo.yaml", "--dry-run", f"output.root={tmp_path}",
                f"loras=[{{path: '{ckpt}', scale: 0.8}}]",
                "sweep.grid.lora.path=[missing.safetensors]",
                "sweep.grid.lora.scale=[abc]")
    assert r.returncode == 2
    assert f"loras[0].path: {ckpt} is not a .safetensors file; LoRA weights are loaded from " \
           "safetensors only" in r.stderr
    assert "sweep.grid.lora.path[0]: LoRA file missing.safetensors does not exist" in r.stderr
    assert "sweep.grid.lora.scale[0]: 'abc' must be a number from -10 to 10" in r.stderr
    assert not (tmp_path / "demo").exists()


def test_files_that_are_not_loras_are_refused(tmp_path):
    from safetensors.torch import save_file
    import torch

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\xff" * 64)
    other = tmp_path / "vae.safetensors"
    save_file({"decoder.conv_in.weight": torch.zeros(2)}, str(other))
    r = run_cli("run", "jobs/demo.yaml", "--dry-run", f"output.root={tmp_path}",
                f"sweep.grid.lora.path=['{corrupt}','{other}']")
    assert r.returncode == 2
    assert f"sweep.grid.lora.path[0]: LoRA file {corrupt} is not a readable safetensors" in r.stderr
    assert f"sweep.grid.lora.path[1]: {other} holds no LoRA weights" in r.stderr


def test_bad_pass_and_wildcard_options_exit_2(tmp_path):
    r = run_cli("run", "jobs/demo.yaml", "--dry-run", f"output.root={tmp_path}",
                "hires.scale=abc", "wildcards.folder=123", "wildcards.variants=abc")
    assert r.returncode == 2, r.stderr
    assert "hires.scale: 'abc' must be none (no hi-res pass) or a number" in r.stderr
    assert "wildcards.folder: 123 is not a folder path" in r.stderr
    r = run_cli("run", "jobs/demo.yaml", "--dry-run", f"output.root={tmp_path}",
                "hires.scale=1.5", "sweep.grid.hires.strength=[0.2,0.5]", "generation.steps=4")
    assert r.returncode == 2
    assert "hires.strength: 0.2 with 4 steps leaves the hi-res pass no denoising step" in r.stderr
    assert "0.5 with 4" not in r.stderr


def test_pass_axes_are_text_columns_whatever_their_levels():
    from animagine_batch.rundir import schema as store

    assert store.axis_type([1.5], "hires.scale") == store.axis_type(["none", 1.5], "hires.scale") \
        == "string"
    assert store.axis_type([5.0, 7.0], "cfg") == "float64"


def test_wildcard_expansion_keeps_file_positions_and_checks_fields(tmp_path):
    ps = tmp_path / "p.yaml"
    ps.write_text('- "1girl, {smile|frown}"\n- "1boy, solo"\n')
    s = P.load_prompt_set(str(ps), [], WildcardSpec(), 0)
    assert [e.key for e in s.entries] == ["p0000~0", "p0000~1", "p0001"]
    ps.write_text('- {subject: 1girl, tags: "{smile|frown}", colour: red}\n')
    with pytest.raises(ConfigError, match="unknown field.*colour"):
        P.load_prompt_set(str(ps), [], WildcardSpec(), 0)
    # messages name the entry's place in the file, not its place among the variants
    ps.write_text('- "1girl, {smile|frown|cry}"\n- {tags: []}\n')
    with pytest.raises(ConfigError, match=r"entry 1 has no subject"):
        P.load_prompt_set(str(ps), [], WildcardSpec(), 0)
    ps.write_text('- "1girl, {smile|frown}"\n- {id: x, subject: 1boy}\n- {id: x, subject: 1boy}\n')
    with pytest.raises(ConfigError, match=r"entries 1 and 2 share the id 'x'"):
        P.load_prompt_set(str(ps), [], WildcardSpec(), 0)


# ---------------------------------------------------------------- the packaged job


def test_prompt_power_job_runs_on_the_tiny_model(tmp_path, capsys):
    assert cli.main(["run", str(REPO / "jobs" / "prompt_power.yaml"), f"output.root={tmp_path}",
                     "sweep.grid.lora.scale=[1.0]", "prompt.quality=none"]) == 0
    df = pd.read_parquet(tmp_path / "prompt_power" / "results")
    assert len(df) == 7 * 2 * 2 and (df.status == "ok").all()
    assert not df.prompt.str.contains("[{}]|__", regex=True).any()  # expanded text stored
    assert df.prompt_key.str.contains("~").sum() == 6 * 4  # miku x2 + asuka x4, 4 cells each
    sizes = {(r["hires.scale"] == "none",
              Image.open(tmp_path / "prompt_power" / r.image_path).size)
             for _, r in df.iterrows()}
    assert sizes == {(True, (64, 64)), (False, (96, 96))}
    assert set(df.weighting) == {"a1111", "none"} and set(df.loras.str.endswith(":1")) == {True}
    long = df[df.prompt_key == "long"]
    assert (long.prompt_tokens > 75).all()
    capsys.readouterr()
    assert cli.main(["compare", str(tmp_path / "prompt_power"), "--by", "hires.scale"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["axis", "level", "reference"] == lines[0][:3]
    rows = [x for x in lines[1:] if x and x[0] == "hires.scale"]  # the footer explains the method
    assert {tuple(x[:3]) for x in rows} == {("hires.scale", "1.5", "none")}  # off = reference


def test_a_lora_on_a_fused_qkv_unet_is_applied(tiny_generator, tasks, lora_path):
    """Fused QKV attention (a GPU optimisation) would bypass LoRA layers on to_q/to_k/to_v."""
    from animagine_batch.engine import sources as models
    from animagine_batch.jobspec.job import ModelSpec, RunnerSpec

    spec = ModelSpec(name="tiny", embedded="tiny", id="embedded/tiny-sdxl", min_size=16)
    t = tasks[0]._replace(loras=((lora_path, 1.0),), task_id="fused")
    reference = tiny_generator(one_unit([t]))
    fused = generate.Generator(spec, models.identity(spec), RunnerSpec(device="cpu"), job="t")
    try:
        fused.pipe.unet.fuse_qkv_projections()
        out = fused(one_unit([t]))
    finally:
        fused.close()
    assert np.abs(pixels(out.pngs[0]) - pixels(reference.pngs[0])).max() <= 1
