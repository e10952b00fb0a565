"""Hostile and broken inputs: job files, prompt sets, wildcard folders, model files and run
directories are data passed around between people; the command line is trusted.

Each case asserts the exit status (2), the message (the key or file, and what is allowed) and
that nothing was written. Most run the command line in-process with --dry-run, which stops
before any model loads.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from animagine_batch import cli
from animagine_batch.jobspec import prompt_sets as P
from conftest import REPO

DEMO = REPO / "jobs" / "demo.yaml"
PROMPT_DIRS = [REPO / "conf" / "prompts"]


def run(capsys, tmp_path, job=DEMO, *overrides, dry_run=True):
    """(exit status, stdout, stderr) of `run JOB` with its output root under tmp_path."""
    args = ["run", str(job), *(["--dry-run"] if dry_run else []),
            f"output.root={tmp_path / 'out'}", *overrides]
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, tmp_path, job=DEMO, *overrides, dry_run=True) -> str:
    """The message of a refused run: exit 2, no traceback, no output root created."""
    code, out, err = run(capsys, tmp_path, job, *overrides, dry_run=dry_run)
    assert code == 2, (out, err)
    assert err.startswith("error: ") and "Traceback" not in err
    assert not (tmp_path / "out").exists()
    return " ".join(err.split())


def job_file(tmp_path, body: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text("defaults: [base, _self_]\nname: hostile\n"
                    "generation: {steps: 2, width: 64, height: 64}\n" + body)
    return path


def prompt_set(tmp_path, text: str | bytes, name: str = "set.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


# ------------------------------------------------------------- code execution from shared files


@pytest.mark.parametrize("value", ["${oc.env:ANIMAGINE_TEST_SECRET}", "${oc.decode:'[1, 2]'}",
                                   "${name}", "smile, ${oc.env:ANIMAGINE_TEST_SECRET,none}"])
def test_interpolation_in_a_job_file_is_refused(capsys, tmp_path, monkeypatch, value):
    monkeypatch.setenv("ANIMAGINE_TEST_SECRET", "hf_s3cr3t")
    job = job_file(tmp_path, f"prompt:\n  tags: \"{value}\"\n")
    msg = refused(capsys, tmp_path, job)
    assert f"job {job}: prompt.tags:" in msg and "never interpolated" in msg
    assert "command line" in msg  # where interpolation is allowed
    assert "hf_s3cr3t" not in msg


def test_interpolation_on_the_command_line_is_trusted(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMAGINE_TEST_TAG", "cherry_blossoms")
    code, out, err = run(capsys, tmp_path, DEMO, "prompt.tags=${oc.env:ANIMAGINE_TEST_TAG}",
                         "sweep.grid={}")
    assert code == 0, err
    assert "cherry blossoms" in out and not (tmp_path / "out").exists()


def test_a_hydra_section_in_a_job_file_is_refused(capsys, tmp_path):
    job = job_file(tmp_path, "hydra:\n  searchpath: [file:///tmp]\n  run: {dir: /tmp/x}\n")
    msg = refused(capsys, tmp_path, job)
    assert f"job {job}: hydra: a job file cannot configure Hydra" in msg


@pytest.mark.parametrize("section", ["generation", "runner", "output", "model", "prompt",
                                     "hires", "wildcards", "sweep.grid", "scorer.tiny_clip",
                                     "sweep"])
def test_target_in_any_section_is_refused(capsys, tmp_path, section):
    nested = "".join(f"{'  ' * i}{part}:\n" for i, part in enumerate(section.split(".")))
    indent = "  " * len(section.split("."))
    job = job_file(tmp_path, nested + f"{indent}_target_: os.system\n{indent}_args_: [id]\n")
    msg = refused(capsys, tmp_path, job)
    assert f"{section}._target_: _target_ is refused" in msg
    assert f"{section}._args_: _args_ is refused" in msg


def test_target_on_the_command_line_is_an_unknown_key(capsys, tmp_path):
    msg = refused(capsys, tmp_path, DEMO, "+generation._target_=os.system",
                  "+runner._target_=os.system")
    assert "generation._target_: unknown key; allowed: sampler, steps, cfg" in msg
    assert "runner._target_: unknown key; allowed: name, address, workers" in msg


@pytest.mark.parametrize("entry", [
    "override /model: ../../../../../../tmp/evil",
    "override /model: /etc/passwd",
    "/tmp/evil",
    "../outside/evil",
    "override hydra/job_logging: none",
])
def test_defaults_cannot_reach_outside_conf_and_the_job_folder(capsys, tmp_path, entry):
    evil = tmp_path / "outside" / "evil.yaml"
    evil.parent.mkdir()
    evil.write_text("name: evil\nid: evil/evil\n")
    job = tmp_path / "jobs" / "job.yaml"
    job.parent.mkdir()
    job.write_text(f"defaults:\n  - base\n  - {entry}\n  - _self_\nname: hostile\n")
    msg = refused(capsys, tmp_path, job)
    assert f"job {job}: defaults[1]:" in msg
    assert ("never a path" in msg or "unknown config group" in msg
            or "cannot configure Hydra" in msg)


def test_a_sibling_config_is_checked_like_the_job(capsys, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("# @package model\nid: \"${oc.env:HOME}\"\n")
    job = tmp_path / "job.yaml"
    job.write_text("defaults:\n  - base\n  - override /model: mine\n  - _self_\nname: hostile\n")
    msg = refused(capsys, tmp_path, job)
    assert f"job {tmp_path / 'model' / 'mine.yaml'}: id:" in msg and "never interpolated" in msg


def test_yaml_tags_cannot_build_objects(capsys, tmp_path):
    marker = tmp_path / "ran"
    payload = f"!!python/object/apply:os.system [\"touch {marker}\"]"
    job = job_file(tmp_path, f"prompt:\n  tags: {payload}\n")
    msg = refused(capsys, tmp_path, job)
    assert f"job: {job} is not valid YAML" in msg and "python/object/apply" in msg
    ps = prompt_set(tmp_path, f"prompts:\n  - {payload}\n")
    msg = refused(capsys, tmp_path, DEMO, f"prompts={ps}")
    assert f"prompts: {ps} is not valid YAML" in msg
    assert not marker.exists()


def test_resolver_in_a_prompt_set_is_refused(capsys, tmp_path):
    ps = prompt_set(tmp_path, "- {id: a, subject: 1girl, tags: [\"${oc.env:HOME}\"]}\n")
    msg = refused(capsys, tmp_path, DEMO, f"prompts={ps}")
    assert f"prompts ({ps}): entry 0 field tags:" in msg and "never interpolated" in msg


# --------------------------------------------------------------------- prompt-set files


def test_non_utf8_csv_is_named(capsys, tmp_path):
    ps = prompt_set(tmp_path, "id,subject,tags\nx,1girl,caf\xe9\n".encode("latin-1"), "set.csv")
    msg = refused(capsys, tmp_path, DEMO, f"prompts={ps}")
    assert f"prompts: {ps} is not UTF-8 text (byte 0xe9 at offset 27); save it as UTF-8" in msg
    job = tmp_path / "job.yaml"
    job.write_bytes("defaults: [base, _self_]\nname: caf\xe9\n".encode("latin-1"))
    assert f"job: {job} is not UTF-8 text (byte 0xe9" in refused(capsys, tmp_path, job)


def test_csv_with_byte_order_mark_and_crlf_is_accepted(capsys, tmp_path):
    text = ("\ufeffid,subject,character,series,tags\r\n"
            "frieren,1girl,frieren,sousou_no_frieren,\"solo, elf\"\r\n"
            "fern,1girl,fern_(sousou_no_frieren),,\"purple hair\"\r\n")
    ps = prompt_set(tmp_path, text, "set.csv")
    entries = P.load_prompt_set(str(ps), PROMPT_DIRS).entries
    assert [e.key for e in entries] == ["frieren", "fern"]
    assert entries[0].series == "sousou_no_frieren" and entries[0].tags == ("solo", "elf")
    assert entries[1].tags == ("purple hair",) and entries[1].series is None
    code, out, err = run(capsys, tmp_path, DEMO, f"prompts={ps}", "sweep.grid={}")
    assert code == 0, err
    assert "prompts: set (2 entries)" in out and "\r" not in out


def test_yaml_alias_bomb_is_refused_quickly(capsys, tmp_path):
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    bomb = "\n".join(lines) + "\nprompts: [{subject: 1girl, tags: *i}]\n"
    ps = prompt_set(tmp_path, bomb)
    start = time.perf_counter()
    msg = refused(capsys, tmp_path, DEMO, f"prompts={ps}")
    assert time.perf_counter() - start < 10
    assert f"prompts: {ps} is refused: its aliases expand to" in msg and "alias bomb" in msg
    job = job_file(tmp_path, "\n".join(lines).replace("a: &a", "x_a: &a") + "\n")
    msg = refused(capsys, tmp_path, job)
    assert f"job: {job} is refused" in msg
    loop = prompt_set(tmp_path, "prompts: &p [{subject: 1girl, tags: *p}]\n", "loop.yaml")
    assert "an alias refers to itself" in refused(capsys, tmp_path, DEMO, f"prompts={loop}")


@pytest.mark.parametrize("text, needle", [
    ("prompts: []\n", "the prompt set is empty"),
    ("- {id: a, subject: 1girl}\n- {id: a, subject: 1boy}\n", "entries 0 and 1 share the id 'a'"),
    (f"- {{id: a, subject: 1girl, tags: [{'x' * 10_000}]}}\n",
     "entry 0 field tags: a tag of 10,000 characters"),
    (f"- {{id: a, character: {'y' * 10_000}}}\n", "entry 0 field character: a tag of 10,000"),
    ("- {id: a, colour: red}\n", "entry 0 has unknown field(s) colour; allowed: id, subject"),
])
def test_bad_prompt_sets(capsys, tmp_path, text, needle):
    ps = prompt_set(tmp_path, text)
    msg = refused(capsys, tmp_path, DEMO, f"prompts={ps}")
    assert f"prompts ({ps}): {needle}" in msg


def test_prompt_set_must_be_yaml_or_csv(capsys, tmp_path):
    ps = prompt_set(tmp_path, "- a\n", "set.txt")
    msg = refused(capsys, tmp_path, DEMO, f"prompts={ps}")
    assert f"prompts: {ps} is not a .yaml, .yml or .csv prompt set" in msg


# ---------------------------------------------------------------------------------- wildcards


@pytest.fixture()
def wildcard_folder(tmp_path) -> Path:
    folder = tmp_path / "wildcards"
    (folder / "colors").mkdir(parents=True)
    (folder / "colors" / "eyes.txt").write_text("red eyes\nblue eyes\n")
    (folder / "hair.txt").write_text("short hair\n")
    (folder / "empty.txt").write_text("")
    return folder


def _wildcard_job(tmp_path, folder, tags):
    ps = prompt_set(tmp_path, f"- {{id: a, subject: 1girl, tags: \"{tags}\"}}\n")
    return (f"prompts={ps}", f"wildcards.folder={folder}", "sweep.grid={}"), ps


@pytest.mark.parametrize("tags, needle", [
    ("__nothing*__", "__nothing*__ not found in wildcards.folder"),
    ("__empty__", "__empty__ not found in wildcards.folder"),
    ("{a|__colors/nope__}", "__colors/nope__ not found in wildcards.folder"),
    ("__../hair__", "__../hair__: a wildcard names a file inside wildcards.folder"),
    ("__/etc/passwd__", "`..`, `~` and absolute paths are refused"),
    ("${v=__hair__} __${v}__", "builds a wildcard name from a variable"),
])
def test_wildcards_that_match_nothing_or_escape_stop_the_job(capsys, tmp_path, wildcard_folder,
                                                            tags, needle):
    overrides, ps = _wildcard_job(tmp_path, wildcard_folder, tags)
    msg = refused(capsys, tmp_path, DEMO, *overrides)
    assert f"prompts ({ps}): entry 0" in msg and needle in msg


def test_wildcard_globs_that_match_expand(capsys, tmp_path, wildcard_folder):
    overrides, _ = _wildcard_job(tmp_path, wildcard_folder, "__colors/*__, __hair__")
    code, out, err = run(capsys, tmp_path, DEMO, *overrides)
    assert code == 0, err
    assert "red eyes, short hair" in out and "blue eyes, short hair" in out


def test_wildcard_folder_with_a_link_outside_is_refused(capsys, tmp_path, wildcard_folder):
    secret = tmp_path / "secret.txt"
    secret.write_text("hf_token_value\n")
    (wildcard_folder / "leak.txt").symlink_to(secret)
    overrides, _ = _wildcard_job(tmp_path, wildcard_folder, "__leak__")
    msg = refused(capsys, tmp_path, DEMO, *overrides)
    assert f"wildcards.folder: {wildcard_folder / 'leak.txt'} links to {secret}" in msg
    assert "hf_token_value" not in msg


def test_a_huge_wildcard_folder_is_refused_before_it_is_walked(capsys, tmp_path,
                                                              wildcard_folder, monkeypatch):
    from animagine_batch.jobspec import wildcards

    monkeypatch.setattr(wildcards, "FOLDER_LIMIT", 3)  # the real limit is 10,000 files
    overrides, _ = _wildcard_job(tmp_path, wildcard_folder, "__hair__")
    msg = refused(capsys, tmp_path, DEMO, *overrides)
    assert f"wildcards.folder: {wildcard_folder} holds more than 3 files" in msg


# -------------------------------------------------------------------------------- model files


def _model_folder(tmp_path, index) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


SDXL_INDEX = {"_class_name": "StableDiffusionXLPipeline",
              "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}


@pytest.mark.parametrize("index, needle", [
    ({**SDXL_INDEX, "unet": []}, "entry 'unet' is []; each component is [library, class]"),
    ([["diffusers", "UNet2DConditionModel"]], "must hold a JSON object naming the pipeline"),
    ({**SDXL_INDEX, "unet": ["evil_module", "Backdoor"]}, "custom component code is never run"),
    ({**SDXL_INDEX, "unet": ["diffusers", "NoSuchModel"]},
     "only diffusers classes are loaded (UNet2DConditionModel)"),
    ({**SDXL_INDEX, "payload": ["transformers", "CLIPTextModel"]},
     "names an unknown component 'payload'"),
])
def test_bad_model_index_is_named(capsys, tmp_path, index, needle):
    folder = _model_folder(tmp_path, index)
    msg = refused(capsys, tmp_path, DEMO, f"model.path={folder}")
    assert f"model.path: {folder / 'model_index.json'}" in msg and needle in msg


@pytest.mark.parametrize("content", [os.urandom(256), pickle.dumps({"weights": [1, 2]}), b""])
def test_a_model_file_that_is_not_safetensors_is_named(capsys, tmp_path, content):
    path = tmp_path / "animagine.safetensors"
    path.write_bytes(content)
    msg = refused(capsys, tmp_path, DEMO, f"model.path={path}")
    assert f"model.path: {path} is not a valid .safetensors file" in msg
    assert "SafetensorError" not in msg or "header" in msg


def test_a_pickle_under_a_safetensors_name_in_a_folder_is_refused(capsys, tmp_path):
    folder = _model_folder(tmp_path, SDXL_INDEX)
    (folder / "unet").mkdir()
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(pickle.dumps([1]))
    msg = refused(capsys, tmp_path, DEMO, f"model.path={folder}")
    assert f"{folder / 'unet' / 'diffusion_pytorch_model.safetensors'} is not a valid" in msg
    vae = tmp_path / "vae"
    vae.mkdir()
    (vae / "config.json").write_text("{}")
    (vae / "diffusion_pytorch_model.safetensors").write_bytes(pickle.dumps([1]))
    msg = refused(capsys, tmp_path, DEMO, f"model.vae={vae}")
    assert f"model.vae: {vae / 'diffusion_pytorch_model.safetensors'} is not a valid" in msg


# ------------------------------------------------------------------------------------ scorers


def test_unknown_and_bad_scorer_options_are_refused(capsys, tmp_path):
    msg = refused(capsys, tmp_path, DEMO, "scorer.tiny_clip._target_=os.system",
                  "scorer.tiny_clip.colour=red", "scorer.tiny_clip.batch_size=abc",
                  "scorer.tiny_aesthetic.batch_size=0", "scorer.tiny_aesthetic.cuts=[0.9,0.1,0.5]",
                  "scorer.tiny_wd14.general_threshold=2", "scorer.tiny_clip.kind=wd14")
    for needle in [
        "scorer.tiny_clip._target_: unknown option; allowed: batch_size, embedded, licence, model",
        "scorer.tiny_clip.colour: unknown option; allowed:",
        "scorer.tiny_clip.batch_size: 'abc' must be an integer >= 1",
        "scorer.tiny_aesthetic.batch_size: 0 must be an integer >= 1",
        "scorer.tiny_aesthetic.cuts: [0.9, 0.1, 0.5] must be three increasing numbers",
        "scorer.tiny_wd14.general_threshold: 2 must be a number from 0 to 1",
        "scorer.tiny_clip.kind: cannot be overridden",
    ]:
        assert needle in msg, needle


# -------------------------------------------------------- settings, values and axis overrides


def test_a_setting_an_axis_overrides_is_validated(capsys, tmp_path):
    msg = refused(capsys, tmp_path, DEMO, "generation.cfg=-1", "generation.steps=abc",
                  "sweep.grid.steps=[2,3]")
    assert "generation.cfg: cfg -1 must be > 0" in msg
    assert "generation.steps: 'abc' is not an integer" in msg


def test_a_setting_an_axis_overrides_is_reported(capsys, tmp_path):
    code, out, err = run(capsys, tmp_path, DEMO, "generation.cfg=6", "prompt.tag_position=append")
    assert code == 0, err
    assert ("warning: generation.cfg=6 is not used: the sweep axis cfg sets it for every task "
            "(5.0 | 7.0)") in err
    assert "warning: prompt.tag_position='append' is not used: the sweep axis tag_position" in err
    code, out, err = run(capsys, tmp_path, DEMO)
    assert code == 0 and "warning" not in err  # the demo's defaults are not overridden values


def test_every_section_is_typed_and_all_problems_are_listed(capsys, tmp_path):
    msg = refused(capsys, tmp_path, DEMO, "runner.workers=0", "runner.threads=0",
                  "runner.dtype=float8", "runner.device=gpu", "runner.address=nowhere",
                  "runner.compile_min_images=-5", "model.max_size=1001", "model.min_size=abc",
                  "model.id=not a repo", "model.seed=-1", "model.revision=123",
                  "output.root=null", "output.png_compress_level=true",
                  "scorer.tiny_clip.batch_size=0")
    for needle in [
        "runner.workers: 0 must be >= 1",
        "runner.threads: 0 must be >= 1",
        "runner.dtype: 'float8' is not one of auto, float32, float16, bfloat16",
        "runner.device: 'gpu' is not a device; allowed: auto, cpu, cuda or cuda:N",
        "runner.address: 'nowhere' is not a Ray address; allowed: null",
        "runner.compile_min_images: -5 must be >= 0",
        "model.max_size: 1001 is not a multiple of 8",
        "model.min_size: 'abc' is not an integer",
        "model.id: 'not a repo' is not a Hugging Face repo id",
        "model.seed: -1 must be >= 0",
        "model.revision: 123 must be text",
        "output.root: None must be a folder path",
        "output.png_compress_level: True must be an integer 0-9",
        "scorer.tiny_clip.batch_size: 0 must be an integer >= 1",
    ]:
        assert needle in msg, needle
    assert msg.startswith("error: 14 problems in the job:")


@pytest.mark.parametrize("overrides, needle", [
    (["generation.width=100000"], "generation.width: 100000 is outside 16-1024"),
    (["sweep.grid.size=[99992x64]"], "sweep.grid.size[0]: 99992 is outside 16-1024"),
    (["generation.steps=100000"], "generation.steps: 100000 steps is more than 1000"),
    (["generation.batch_size=0"], "generation.batch_size: 0 must be >= 1"),
    (["sweep.grid={}", "generation.cfg=nan"], "generation.cfg: nan is not a number"),
    (["sweep.grid.cfg=[inf]"], "sweep.grid.cfg[0]: inf is not a number"),
    (["sweep.grid.cfg=[1e300]"], "sweep.grid.cfg[0]: cfg 1e+300 must be at most 100"),
    (["sweep.seeds=[-1]"], "sweep.seeds: a list of seeds must hold integers in [0, 2^63)"),
    ([f"sweep.seeds=[{2**63}]"], "sweep.seeds: a list of seeds must hold integers in [0, 2^63)"),
    (["sweep.seeds=[3,3]"], "sweep.seeds: repeats a seed: [3, 3]"),
    (["sweep.seeds=1000000000000"], "sweep.seeds: 1,000,000,000,000 seeds are more than"),
    ([f"sweep.base_seed={2**63 - 1}"], "sweep.base_seed: base_seed + seeds must stay below 2^63"),
    (["sweep.grid.steps=[]"], "sweep.grid.steps: must be a non-empty list of levels"),
    (["sweep.zip={steps:[2,3],quality:[none]}"], "sweep.zip: lists must have equal lengths"),
    (["sweep.grid.colour=[red]"], "sweep.grid.colour: unknown axis; allowed: model, sampler"),
    (["max_tasks=-1"], "max_tasks: -1 must be >= 1"),
    (["max_tasks=1000000000000"], "max_tasks: 1,000,000,000,000 is more than 100,000,000"),
    ([f"prompt.tags={'z' * 10_000}"], "prompt.tags: a tag of 10,000 characters"),
    ([f"prompt.negative={'n' * 10_000}"], "prompt.negative: a tag of 10,000 characters"),
    (["runner.workers=0"], "runner.workers: 0 must be >= 1"),
    (["runner=local", "runner.address=127.0.0.1:6379"],
     "runner.address: '127.0.0.1:6379' is set but runner.name is 'local'"),
])
def test_bad_values(capsys, tmp_path, overrides, needle):
    start = time.perf_counter()
    msg = refused(capsys, tmp_path, DEMO, *overrides)
    assert needle in msg
    assert time.perf_counter() - start < 30  # nothing is expanded before it is refused


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_closed_cluster_address_fails_within_seconds(capsys, tmp_path, tiny_dir):
    port = _closed_port()
    start = time.perf_counter()
    msg = refused(capsys, tmp_path, DEMO, "runner=ray", f"runner.address=127.0.0.1:{port}",
                  "scorers=[]", dry_run=False)
    assert time.perf_counter() - start < 30
    assert (f"runner.address: cannot reach the Ray cluster at 127.0.0.1:{port} (connection "
            "refused); start the head node first") in msg


# --------------------------------------------------------------------------------- path escapes


def test_ids_and_names_with_paths_write_only_inside_the_run(capsys, tmp_path):
    from analysis import load_run

    ps = prompt_set(tmp_path, "- {id: ../../escaped, subject: 1girl}\n"
                              "- {character: /tmp/absolute_name, subject: 1boy}\n")
    job = tmp_path / "job.yaml"
    job.write_text(f"defaults: [base, _self_]\nname: hostile\nprompts: {ps}\nrunner: local\n"
                   "generation: {steps: 1, width: 64, height: 64, batch_size: 2}\n")
    before = {p for p in tmp_path.rglob("*")}
    code, out, err = run(capsys, tmp_path, job, dry_run=False)
    assert code == 0, err
    run_dir = tmp_path / "out" / "hostile"
    written = {p for p in tmp_path.rglob("*")} - before
    assert written and all(p == tmp_path / "out" or run_dir in [p, *p.parents] for p in written)
    assert not Path("/tmp/absolute_name").exists()
    df = load_run(run_dir)
    assert sorted(df.prompt_key) == ["../../escaped", "/tmp/absolute_name"]
    assert all(Path(p).parent.name == "images" and len(Path(p).stem) == 16 for p in df.image_path)


@pytest.mark.parametrize("link", ["", "images", "results"])
def test_a_linked_run_directory_is_refused(capsys, tmp_path, link):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run_dir = tmp_path / "out" / "demo"
    if link:
        run_dir.mkdir(parents=True)
        (run_dir / link).symlink_to(elsewhere)
    else:
        run_dir.parent.mkdir()
        run_dir.symlink_to(elsewhere)
    code, out, err = run(capsys, tmp_path, DEMO, "runner=local", "scorers=[]", dry_run=False)
    assert code == 2, err
    assert f"{run_dir / link if link else run_dir} is a symbolic link (to {elsewhere})" in err
    assert not any(elsewhere.iterdir())
