"""Model sources: local folder, single file (safetensors or allowed pickle), hub id + revision,
VAE override; pickle and remote code refused. Each source holds the tiny model."""

import contextlib
import io
import json
import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from analysis import load_run
from animagine_batch import cli, offline
from animagine_batch.engine import checkpoints
from animagine_batch.engine import loading as model_loading
from animagine_batch.engine import sources as models
from animagine_batch.jobspec.job import ModelSpec
from animagine_batch.errors import ConfigError
from conftest import run_cli

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PICKLE_NAMES = {"diffusion_pytorch_model.safetensors": "diffusion_pytorch_model.bin",
                "model.safetensors": "pytorch_model.bin"}


class _Payload:
    """Unpickling this creates the folder `path`: stands for code hidden in a pickle."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.fixture(scope="module")
def sources(tiny_dir, tmp_path_factory):
    """The tiny model in every format, plus a VAE with other weights and a fake hub cache."""
    from safetensors.torch import load_file

    root = tmp_path_factory.mktemp("sources")
    single = checkpoints.save_single_file(tiny_dir, root / "tiny.safetensors")
    shutil.copytree(tiny_dir, root / "configs", ignore=shutil.ignore_patterns("*.safetensors"))
    torch.save({"state_dict": load_file(single)}, root / "tiny.ckpt")
    shutil.copytree(tiny_dir, root / "pickled")
    for f in list((root / "pickled").rglob("*.safetensors")):
        torch.save(load_file(f), f.with_name(PICKLE_NAMES[f.name]))
        f.unlink()
    offline.build_pipeline("tiny", seed=1).vae.save_pretrained(root / "vae_b")
    repo = root / "hub" / "models--org--tiny"
    shutil.copytree(tiny_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return root


def generate(out, *overrides, env=None):
    """The demo job's three prompts, one seed, 64x64, 2 steps, no scorers, local runner: in this
    process, or in a subprocess when `env` is given. Returns the exit status and stderr."""
    args = ["run", "jobs/demo.yaml", f"output.root={out}", "runner=local", "model.embedded=null",
            "sweep.grid={}", "generation.cfg=5.0", "sweep.seeds=[0]", "generation.steps=2",
            "scorers=[]", *overrides]
    if env:
        return run_cli(*args, env=env)
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(args)
    return SimpleNamespace(returncode=code, stderr=err.getvalue())


def images(out) -> tuple[dict, set, str]:
    """Pixels by prompt key, task ids and the model identity of a finished run."""
    df = load_run(out / "demo")
    assert len(df) == 3 and (df.status == "ok").all()
    pixels = {row.prompt_key: np.asarray(Image.open(out / "demo" / row.image_path)).astype(int)
              for row in df.itertuples()}
    job = yaml.safe_load((out / "demo" / "job.yaml").read_text())
    return pixels, set(df.task_id), job["provenance"]["models"]["tiny"]["identity"]


@pytest.fixture(scope="module")
def reference(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    r = generate(out, f"model.path={tiny_dir}")
    assert r.returncode == 0, r.stderr
    return images(out)


def assert_same_images(a: dict, b: dict):
    assert a.keys() == b.keys() == {"miku", "naruto", "asuka"}
    for key in a:
        assert np.abs(a[key] - b[key]).max() <= 1, key


def test_original_layout_round_trips_through_diffusers_converters(tiny_dir):
    from diffusers import StableDiffusionXLPipeline
    from diffusers.loaders.single_file_utils import (convert_ldm_unet_checkpoint,
                                                     convert_ldm_vae_checkpoint)

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_dir)
    sd = checkpoints.to_original(pipe)
    prefixes = (checkpoints.UNET, checkpoints.VAE, checkpoints.CLIP, checkpoints.OPEN_CLIP)
    assert all(k.startswith(prefixes) for k in sd)
    assert {p for p in prefixes if any(k.startswith(p) for k in sd)} == set(prefixes)
    assert "model.diffusion_model.input_blocks.3.0.op.weight" in sd  # the tiny UNet's downsampler
    assert "conditioner.embedders.1.model.transformer.resblocks.4.attn.in_proj_weight" in sd
    for part, back in (("unet", convert_ldm_unet_checkpoint(sd, dict(pipe.unet.config))),
                       ("vae", convert_ldm_vae_checkpoint(sd, dict(pipe.vae.config)))):
        ref = getattr(pipe, part).state_dict()
        assert back.keys() == ref.keys()
        assert all(torch.equal(back[k].reshape(ref[k].shape), ref[k]) for k in ref), part


def test_single_safetensors_file_gives_the_folder_images(sources, reference, tmp_path):
    r = generate(tmp_path, f"model.path={sources / 'tiny.safetensors'}",
                 f"model.config={sources / 'configs'}")
    assert r.returncode == 0, r.stderr
    pixels, ids, identity = images(tmp_path)
    assert_same_images(pixels, reference[0])
    assert identity.startswith("sha256:") and "+config=sha256:" in identity
    assert not ids & reference[1]  # another source is another identity


def test_single_file_without_configs_offline_names_model_config(sources, tmp_path):
    r = generate(tmp_path, f"model.path={sources / 'tiny.safetensors'}")
    assert r.returncode == 2
    assert "model.path: cannot build an SDXL pipeline" in r.stderr and "model.config=" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "demo").exists()
    r = generate(tmp_path, f"model.path={sources / 'tiny.safetensors'}", "model.config=/no/such",
                 "--dry-run")
    assert r.returncode == 2 and "model.config: /no/such is neither" in r.stderr


def test_pickle_checkpoint_loads_only_when_allowed(sources, reference, tmp_path):
    ckpt = f"model.path={sources / 'tiny.ckpt'}"
    config = f"model.config={sources / 'configs'}"
    r = generate(tmp_path, ckpt, config, "--dry-run")
    assert r.returncode == 2
    assert "is a pickle checkpoint" in r.stderr and "model.allow_pickle=true" in r.stderr
    r = generate(tmp_path, ckpt, config, "model.allow_pickle=true")
    assert r.returncode == 0, r.stderr
    assert_same_images(images(tmp_path)[0], reference[0])


def test_folder_of_pickle_weights_loads_only_when_allowed(sources, reference, tmp_path):
    r = generate(tmp_path, f"model.path={sources / 'pickled'}", "--dry-run")
    assert r.returncode == 2
    assert "pickled/text_encoder holds only pickle weights (pytorch_model.bin)" in r.stderr
    assert "model.allow_pickle=true" in r.stderr
    r = generate(tmp_path, f"model.path={sources / 'pickled'}", "model.allow_pickle=true")
    assert r.returncode == 0, r.stderr
    assert_same_images(images(tmp_path)[0], reference[0])


def test_allowed_pickle_still_never_runs_code(sources, tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {"x": _Payload(marker)}}, tmp_path / "evil.ckpt")
    spec = ModelSpec(name="evil", path=str(tmp_path / "evil.ckpt"), config=str(sources / "configs"),
                     allow_pickle=True)
    models.check_source(spec)
    with pytest.raises(ConfigError, match="model.path: cannot build an SDXL pipeline"):
        model_loading.load_pipeline(spec, "cpu", torch.float32)
    assert not marker.exists()


@pytest.mark.parametrize("where", ["pipeline", "component"])
def test_model_code_is_never_run(tiny_dir, tmp_path, where):
    folder, marker = tmp_path / "custom", tmp_path / "pwned"
    shutil.copytree(tiny_dir, folder)
    index = json.loads((folder / "model_index.json").read_text())
    code = f"import os\nos.mkdir({str(marker)!r})\nclass Custom: pass\n"
    if where == "pipeline":
        index["_class_name"] = ["custom_pipeline", "Custom"]
        (folder / "custom_pipeline.py").write_text(code)
    else:
        index["unet"] = ["custom_unet", "Custom"]
        (folder / "unet" / "custom_unet.py").write_text(code)
    (folder / "model_index.json").write_text(json.dumps(index))
    spec = ModelSpec(name="custom", path=str(folder))
    with pytest.raises(ConfigError, match="model.path: .* code is never run"):
        models.check_source(spec)
    with pytest.raises(ConfigError, match="code is never run"):
        model_loading.load_pipeline(spec, "cpu", torch.float32)
    assert not marker.exists()
    if where == "pipeline":
        r = generate(tmp_path, f"model.path={folder}", "--dry-run")
        assert r.returncode == 2 and "custom pipeline code is never run" in r.stderr


def test_vae_override_changes_images_and_task_ids(sources, reference, tiny_dir, tmp_path):
    r = generate(tmp_path, f"model.path={tiny_dir}", f"model.vae={sources / 'vae_b'}")
    assert r.returncode == 0, r.stderr
    pixels, ids, identity = images(tmp_path)
    assert all(np.abs(pixels[k] - reference[0][k]).mean() > 5 for k in pixels)
    assert not ids & reference[1]
    assert identity.startswith(reference[2] + "+vae=sha256:")
    base = ModelSpec(name="t", path=str(tiny_dir))
    assert models.identity(base) == reference[2]
    assert models.identity(ModelSpec(name="t", path=str(tiny_dir), vae=str(sources / "vae_b"))) \
        == identity


@pytest.mark.parametrize("vae", ["/no/such/vae", "org/missing-vae"])
def test_missing_vae_names_model_vae(tiny_dir, tmp_path, vae):
    r = generate(tmp_path, f"model.path={tiny_dir}", f"model.vae={vae}", "--dry-run")
    assert r.returncode == 2 and "model.vae" in r.stderr and vae in r.stderr
    assert "Traceback" not in r.stderr


def test_hub_id_and_revision_load_from_the_local_cache(sources, reference, tmp_path):
    env = {"HF_HUB_CACHE": str(sources / "hub")}
    r = generate(tmp_path, "model.id=org/tiny", "model.revision=main", env=env)
    assert r.returncode == 0, r.stderr
    pixels, ids, identity = images(tmp_path)
    assert identity == f"hub:org/tiny@{COMMIT}"
    assert_same_images(pixels, reference[0])
    r = generate(tmp_path / "b", "model.id=org/missing", "model.revision=main", "--dry-run", env=env)
    assert r.returncode == 2
    assert "'org/missing'" in r.stderr and "model.path=" in r.stderr and "offline" in r.stderr


def test_allow_pickle_must_be_a_boolean(compose):
    with pytest.raises(ConfigError, match="model.allow_pickle: 'maybe' is not true or false"):
        compose("demo", "model.allow_pickle=maybe")


def test_vae_folder_of_pickles_only_is_refused_unless_allowed(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "diffusion_pytorch_model.bin").write_bytes(b"x")
    spec = ModelSpec(name="t", embedded="tiny", vae=str(tmp_path))
    with pytest.raises(ConfigError, match=r"model.vae: .* holds only pickle weights"):
        models.check_source(spec)
    models.check_source(ModelSpec(name="t", embedded="tiny", vae=str(tmp_path), allow_pickle=True))
    import numpy as np
    from safetensors.numpy import save_file

    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(b"x")  # a safetensors name is not enough: its header is read
    with pytest.raises(ConfigError, match=r"model.vae: .* is not a valid .safetensors file"):
        models.check_source(spec)
    save_file({"w": np.zeros(2, np.float32)}, str(weights))
    models.check_source(spec)
