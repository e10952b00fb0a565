"""PNG metadata as its readers take it: webui's infotext parser and LoRA re-application, the
A1111 model hash, and the demo app's `metadata` JSON."""

import hashlib
import io
import json

import pytest
from PIL import Image

import clients
from animagine_batch.engine import sources as models
from animagine_batch.jobspec import sweep
from animagine_batch.jobspec.job import ModelSpec
from animagine_batch.offline.lora import ensure_lora
from animagine_batch.rundir import metadata
from conftest import REPO, one_unit, run_cli


def _infotext(task, model_hash="e3c47aedb0", lora_hashes=None) -> str:
    params = metadata.infotext_params(task, "animagine-xl-3.1", model_hash, "Euler a", "0.1.0",
                                      lora_hashes)
    return metadata.infotext(metadata.infotext_prompt(task), task.negative_prompt, params)


def test_webui_re_applies_the_loras_of_pasted_parameters(tasks):
    odd = "/loras/style, v2: final.safetensors"  # `,` and `:` break webui's Lora hashes parser
    t = tasks[0]._replace(loras=((odd, 0.8), ("/loras/detail.safetensors", 1.0)))
    hashes = {odd: "0123456789ab", "/loras/detail.safetensors": "ba9876543210"}
    params = clients.webui_parse(_infotext(t, lora_hashes=hashes))
    prompt, loras = clients.webui_loras(params)
    assert loras == {"style v2 final": ("0.8", "0123456789ab"), "detail": ("1", "ba9876543210")}
    assert prompt.strip() == t.prompt  # what webui encodes once the tags are taken out
    assert "Lora weights" not in params and params["Negative prompt"] == t.negative_prompt
    assert params["Steps"] == str(t.steps) and params["Size-1"] == str(t.width)
    with pytest.raises(IndexError):  # the unsanitised name, as webui's own parser meets it
        clients.webui_loras({"Prompt": "", "Lora hashes": "style, v2: 0123456789ab"})
    plain = clients.webui_parse(_infotext(tasks[1]))
    assert plain["Prompt"] == tasks[1].prompt and "Lora hashes" not in plain
    assert plain["Model hash"] == "e3c47aedb0"


def test_generated_png_carries_lora_tags_and_keeps_the_stored_prompt(tiny_generator, tasks):
    path = str(ensure_lora(0))
    t = tasks[0]._replace(loras=((path, 0.5),), task_id="lora-meta")
    result = tiny_generator(one_unit([t]))
    image = Image.open(io.BytesIO(result.pngs[0]))
    prompt, loras = clients.webui_loras(clients.webui_parse(image.text["parameters"]))
    raw = open(path, "rb").read()  # webui's "addnet" hash: sha256 after the JSON header
    short = hashlib.sha256(raw[8 + int.from_bytes(raw[:8], "little"):]).hexdigest()[:12]
    assert loras == {"pytorch_lora_weights": ("0.5", short)}
    assert result.rows[0]["prompt"] == t.prompt == prompt.strip()  # the pipeline's text
    meta = json.loads(image.text["metadata"])
    assert meta["prompt"] == t.prompt and "model" not in meta
    assert meta["Model"] == {"Model": "tiny", "Model hash": None}  # no checkpoint file to hash
    assert "Model hash" not in clients.webui_parse(image.text["parameters"])


def test_model_hash_is_the_checkpoints(tmp_path, compose, tasks):
    spec = compose("quality_tags").model
    assert (spec.a1111_hash, spec.title) == ("e3c47aedb0", "Animagine XL 3.1")
    assert models.model_hash(spec) == "e3c47aedb0"  # a hub model: the configured hash
    meta = metadata.demo_metadata(tasks[0], models.title(spec), "Euler a", models.model_hash(spec))
    assert meta["Model"] == {"Model": "Animagine XL 3.1", "Model hash": "e3c47aedb0"}
    single = tmp_path / "other.safetensors"
    single.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      weights")
    own = models.model_hash(ModelSpec(name="x", path=str(single), a1111_hash="e3c47aedb0"))
    assert own == hashlib.sha256(single.read_bytes()).hexdigest()[:10]  # a file gets its own
    assert models.model_hash(ModelSpec(name="tiny", embedded="tiny")) is None
    assert models.title(ModelSpec(name="tiny_b", embedded="tiny")) == "tiny"


def test_model_hash_and_title_are_not_identity(compose):
    from animagine_batch.jobspec import prompt_sets as P

    ps = P.load_prompt_set("demo", [REPO / "conf" / "prompt_sets"])
    ids = {"tiny": "embedded:x"}
    base = compose("demo", "sweep.seeds=1")
    other = compose("demo", "sweep.seeds=1", "model.a1111_hash=0123456789", "model.title=T")
    assert other.model.a1111_hash == "0123456789"
    assert [t.task_id for t in sweep.expand(base, ps, ids)] == \
        [t.task_id for t in sweep.expand(other, ps, ids)]


def test_a_bad_a1111_hash_is_named(tmp_path):
    r = run_cli("run", "jobs/demo.yaml", "--dry-run", f"output.root={tmp_path}",
                "model.a1111_hash=E3C47AEDB")
    assert r.returncode == 2
    assert "model.a1111_hash: 'E3C47AEDB' is not an A1111 short hash" in r.stderr
    assert not list(tmp_path.iterdir())
