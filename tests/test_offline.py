"""Embedded models: real CLIP token ids, seeded deterministic weights, built once, same loader."""

import json
import os

import pytest
import torch

from animagine_batch import offline
from animagine_batch.offline import models as offline_models


def test_tokenizers_match_real_clip():
    import open_clip

    tok, tok2 = offline.make_tokenizer(), offline.make_tokenizer("!")
    ids = tok("a photo of a cat").input_ids
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    text = r"souryuu asuka langley, fate \(series\), ^_^, masterpiece"
    expected = [i for i in open_clip.tokenize(text)[0].tolist() if i]
    assert tok(text).input_ids == expected
    assert len(tok.get_vocab()) == 49408 and tok.model_max_length == 77
    padded = tok("a cat", padding="max_length", max_length=8).input_ids
    padded2 = tok2("a cat", padding="max_length", max_length=8).input_ids
    assert padded[-1] == 49407 and padded2[-1] == 0  # `<|endoftext|>` vs `!`


def test_tiny_model_is_built_once_and_loads_with_from_pretrained(tiny_dir):
    from diffusers import StableDiffusionXLPipeline

    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionXLPipeline"
    mtime = (tiny_dir / "model_index.json").stat().st_mtime_ns
    assert offline.ensure_model("tiny") == tiny_dir
    assert (tiny_dir / "model_index.json").stat().st_mtime_ns == mtime
    assert str(tiny_dir).startswith(os.environ["ANIMAGINE_BATCH_CACHE"])
    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_dir)
    assert pipe.tokenizer_2.pad_token == "!" and pipe.tokenizer.pad_token == "<|endoftext|>"
    assert pipe.scheduler.config.beta_end == 0.012
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"


def test_weights_are_seeded():
    a = offline.build_pipeline("tiny", seed=0).unet.state_dict()
    b = offline.build_pipeline("tiny", seed=0).unet.state_dict()
    c = offline.build_pipeline("tiny", seed=1).unet.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert offline.model_dir("tiny", 0) != offline.model_dir("tiny", 1)


def test_full_size_configs_have_sdxl_shape():
    """The shipped SDXL configs give the real architecture (built on the meta device: no memory)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device("meta"):
        unet = UNet2DConditionModel(**offline_models._config("sdxl", "unet"))
        vae = AutoencoderKL(**offline_models._config("sdxl", "vae"))
        te1 = CLIPTextModel(CLIPTextConfig(**offline_models._config("sdxl", "text_encoder")))
        te2 = CLIPTextModelWithProjection(CLIPTextConfig(**offline_models._config("sdxl", "text_encoder_2")))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(unet) == pytest.approx(2.567e9, rel=0.01)
    assert count(vae) == pytest.approx(83.65e6, rel=0.01)
    assert count(te1) == pytest.approx(123.06e6, rel=0.01)
    assert count(te2) == pytest.approx(694.66e6, rel=0.01)


def test_pipeline_builds_under_a_device_context():
    """The GPU benchmark builds the model directly on the GPU under `torch.device(...)`: the
    modules follow the context, the scheduler's numpy tables stay on the CPU. The meta device
    stands in for CUDA here (any non-CPU default device broke the scheduler the same way)."""
    with torch.device("meta"):
        pipe = offline.build_pipeline("tiny")
    assert pipe.unet.device.type == "meta" and pipe.text_encoder_2.device.type == "meta"
    assert pipe.scheduler.sigmas.device.type == "cpu" and len(pipe.scheduler.sigmas) > 1
