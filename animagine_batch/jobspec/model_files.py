"""Model files checked as data before anything loads them: a diffusers folder's
model_index.json may name only the diffusers and transformers classes of an SDXL pipeline,
.safetensors headers must read, and pickle weights (which can run code when unpickled) are
refused unless `model.allow_pickle=true`."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")

PICKLE_HINT = (", which can run code when loaded; convert to .safetensors, or set "
               "model.allow_pickle=true if you trust the source")


def pickle_only(folder: Path) -> list[str]:
    """The pickle weight files of a folder that has no .safetensors file (else [])."""
    files = [f.name for f in folder.iterdir() if f.is_file()] if folder.is_dir() else []
    if any(f.endswith(".safetensors") for f in files):
        return []
    return sorted(f for f in files if f.lower().endswith(PICKLE_SUFFIXES))


def safetensors_problem(path: Path) -> str | None:
    """Why a file is not a readable .safetensors file (its header only is read), or None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy"):
            return None
    except Exception as e:  # noqa: BLE001 - SafetensorError, OSError: any unreadable header
        return f"{path} is not a valid .safetensors file ({str(e).strip() or type(e).__name__})"


# What an SDXL pipeline's model_index.json may name per component (library, class names).
COMPONENTS = {
    "unet": ("diffusers", ("UNet2DConditionModel",)),
    "vae": ("diffusers", ("AutoencoderKL",)),
    "text_encoder": ("transformers", ("CLIPTextModel", "CLIPTextModelWithProjection")),
    "text_encoder_2": ("transformers", ("CLIPTextModelWithProjection",)),
    "tokenizer": ("transformers", ("CLIPTokenizer", "CLIPTokenizerFast")),
    "tokenizer_2": ("transformers", ("CLIPTokenizer", "CLIPTokenizerFast")),
    "scheduler": ("diffusers", ()),  # any diffusers class whose name ends in Scheduler
    "image_encoder": ("transformers", ("CLIPVisionModelWithProjection",)),
    "feature_extractor": ("transformers", ("CLIPImageProcessor", "CLIPFeatureExtractor")),
}


def _component_problem(name: str, entry) -> str | None:
    """Why a model_index.json entry is not a component an SDXL pipeline loads, or None."""
    if name not in COMPONENTS:
        return (f"names an unknown component {name!r}; an SDXL pipeline has "
                f"{', '.join(COMPONENTS)}")
    if not (isinstance(entry, list) and len(entry) == 2):
        return f"entry {name!r} is {entry!r}; each component is [library, class] or [null, null]"
    if entry == [None, None]:
        return None
    library, classes = COMPONENTS[name]
    cls = entry[1]
    ok = entry[0] == library and isinstance(cls, str) and (
        cls in classes if classes else cls.isidentifier() and cls.endswith("Scheduler"))
    if not ok:
        allowed = ", ".join(classes) if classes else "a diffusers scheduler class"
        return (f"component {name!r} is {entry!r}; custom component code is never run, only "
                f"{library} classes are loaded ({allowed})")
    return None


def check_pipeline_folder(folder: Path, key: str, allow_pickle: bool) -> None:
    """A diffusers folder that loads as an SDXL pipeline without running code from the folder:
    `_class_name` is StableDiffusionXLPipeline, every component is one of the diffusers or
    transformers classes such a pipeline has, every .safetensors file has a readable header,
    and no component holds only pickle weights (unless they are allowed)."""
    index_file = folder / "model_index.json"
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ConfigError(f"{key}: cannot read {index_file}: {e}") from None
    if not isinstance(index, dict):
        raise ConfigError(f"{key}: {index_file} must hold a JSON object naming the pipeline "
                          f"class and its components, not a {type(index).__name__}")
    if index.get("_class_name") != "StableDiffusionXLPipeline":
        raise ConfigError(f"{key}: {folder} is a {index.get('_class_name')!r} pipeline "
                          "(model_index.json); only StableDiffusionXLPipeline is loaded, and "
                          "custom pipeline code is never run")
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) and name not in COMPONENTS:
            continue  # settings such as force_zeros_for_empty_prompt
        problem = _component_problem(name, entry)
        if problem:
            raise ConfigError(f"{key}: {index_file}: {problem}")
        if entry[0] is None:
            continue
        sub = folder / name
        pickles = [] if allow_pickle else pickle_only(sub)
        if pickles:
            raise ConfigError(f"{key}: {sub} holds only pickle weights ({', '.join(pickles)})"
                              + PICKLE_HINT)
        for weights in sorted(sub.glob("*.safetensors")) if sub.is_dir() else []:
            if problem := safetensors_problem(weights):
                raise ConfigError(f"{key}: {problem}; the folder's weights are damaged or are "
                                  "not safetensors")
