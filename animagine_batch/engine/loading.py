"""Loading an SDXL pipeline from a checked model source (models.py) with diffusers, without
running any code that comes with the model."""

from __future__ import annotations

from pathlib import Path

from .. import offline
from ..errors import ConfigError
from ..jobspec.job import ModelSpec
from .sources import PICKLE_HINT, check_pipeline_folder, is_single_file, missing_message


def _said(e: Exception) -> str:
    return f" (loader said: {str(e).strip().splitlines()[0][:300]})" if str(e).strip() else ""


def _load_error(spec: ModelSpec, e: Exception) -> str:
    if is_single_file(spec):
        fix = ("check that model.config describes this checkpoint's architecture" if spec.config
               else "set model.config=/path/to/diffusers-folder (or a cached hub id) of the same "
               "architecture; without it diffusers looks the configs up on the hub")
        return f"model.path: cannot build an SDXL pipeline from {spec.path}{_said(e)}; {fix}"
    if not spec.allow_pickle and "safetensors" in str(e):
        return (f"model: {spec.path or spec.id} lacks .safetensors weights for a component{_said(e)}"
                f"; pickle weights{PICKLE_HINT}")
    if spec.path:
        return f"model.path: cannot load {spec.path}{_said(e)}"
    return missing_message(spec, "model", spec.id, spec.revision) + _said(e)


def _pipeline_folder(spec: ModelSpec, safe: dict) -> str:
    """The local diffusers folder to load (hub models are downloaded, or found in the cache)."""
    from diffusers import StableDiffusionXLPipeline

    if spec.path:
        folder, key = Path(spec.path).expanduser(), "model.path"
    elif spec.embedded:
        return str(offline.ensure_model(spec.embedded, spec.seed))
    else:
        folder, key = Path(StableDiffusionXLPipeline.download(
            spec.id, revision=spec.revision, trust_remote_code=False, **safe)), "model.id"
    check_pipeline_folder(folder, key, spec.allow_pickle)
    return str(folder)


def _from_single_file(spec: ModelSpec, kwargs: dict):
    from diffusers import StableDiffusionXLPipeline

    from .checkpoints import open_clip_text_encoder

    path = str(Path(spec.path).expanduser())
    config = spec.config
    if config and Path(config).expanduser().is_dir():
        config = str(Path(config).expanduser())
        check_pipeline_folder(Path(config), "model.config", allow_pickle=True)
    te2 = open_clip_text_encoder(path, config, kwargs["dtype"])
    extra = {"text_encoder_2": te2} if te2 is not None else {}
    return StableDiffusionXLPipeline.from_single_file(path, config=config, **extra, **kwargs)


def load_pipeline(spec: ModelSpec, device: str, dtype):
    """An SDXL pipeline on `device` in `dtype`, watermark off, progress bars off. No code that
    comes with the model runs: custom pipelines and components are refused, remote code is not
    trusted, and pickle weights load only with `model.allow_pickle` (through `weights_only`)."""
    import diffusers
    import torch
    import transformers
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    safe = {"use_safetensors": None if spec.allow_pickle else True}  # None: safetensors first
    kwargs = {"dtype": dtype, "add_watermarker": False}
    if spec.vae:
        v = Path(spec.vae).expanduser()
        try:
            kwargs["vae"] = AutoencoderKL.from_pretrained(
                str(v) if v.is_dir() else spec.vae, revision=None if v.is_dir() else spec.vae_revision,
                dtype=dtype, **safe)
        except (OSError, ValueError) as e:
            raise ConfigError(f"model.vae: cannot load the VAE {spec.vae!r}{_said(e)}; give a "
                              "local AutoencoderKL folder or a cached hub id") from None
    try:
        if is_single_file(spec):
            pipe = _from_single_file(spec, kwargs)
        else:
            pipe = StableDiffusionXLPipeline.from_pretrained(
                _pipeline_folder(spec, safe), trust_remote_code=False, **safe, **kwargs)
    except (OSError, ValueError, SingleFileComponentError) as e:
        raise ConfigError(_load_error(spec, e)) from None
    pipe.set_progress_bar_config(disable=True)
    pipe.to(torch.device(device))
    return pipe
