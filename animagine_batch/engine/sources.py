"""Model sources: embedded, hub id + revision, local diffusers folder, single checkpoint file.

`check_source` runs before any work (no weights loaded); `identity` gives the string that enters
every task id; `model_loading.load_pipeline` loads through diffusers' `from_pretrained` /
`from_single_file`.

Loading never runs code that comes with a model: only `StableDiffusionXLPipeline` folders whose
components are diffusers or transformers classes are accepted, remote code is refused, and pickle
weights (which can run code when unpickled) are refused unless `model.allow_pickle=true`; even
then they are read with torch's `weights_only` unpickler.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .. import offline
from ..cache import cache_dir
from ..errors import ConfigError
from ..jobspec.job import EMBEDDED_MODELS, ModelSpec
from ..jobspec.model_files import (PICKLE_HINT, PICKLE_SUFFIXES, check_pipeline_folder,
                                   pickle_only, safetensors_problem)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _cached_snapshot(repo: str, filename: str, revision: str | None) -> str | None:
    """Path of a file in the local hub cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, revision=revision or "main")
    return found if isinstance(found, str) else None


LOCAL_MODEL = "model.path=/path/to/diffusers-folder or model.path=/path/to/model.safetensors"


def missing_message(spec: ModelSpec, what: str, repo: str, revision: str | None,
                     local: str = LOCAL_MODEL) -> str:
    where = "the hub is offline (HF_HUB_OFFLINE=1)" if _offline() else "it could not be fetched"
    return (f"model: cannot load {what} {repo!r} (revision {revision or 'main'}) for model config "
            f"{spec.name!r}: it is not in the local Hugging Face cache and {where}. Download it once "
            f"where the hub is reachable, or point at local files with {local}")


def is_single_file(spec: ModelSpec) -> bool:
    return bool(spec.path) and Path(spec.path).expanduser().is_file()


def _hub_id(name: str) -> bool:
    """`org/name`, as opposed to a local path."""
    return name.count("/") == 1 and not name.startswith(("/", ".", "~"))


def _check_config(spec: ModelSpec) -> None:
    """`model.config` of a single file: a diffusers folder or a hub id (cached when offline)."""
    c = Path(spec.config).expanduser()
    if c.is_dir():
        if not (c / "model_index.json").is_file():
            raise ConfigError(f"model.config: {c} is a folder without model_index.json; give a "
                              "diffusers SDXL folder (or hub id) whose component configs describe "
                              "the checkpoint")
        check_pipeline_folder(c, "model.config", allow_pickle=True)  # only configs are read
        return
    if not _hub_id(spec.config):
        raise ConfigError(f"model.config: {spec.config} is neither a local folder nor a hub id")
    snap = _cached_snapshot(spec.config, "model_index.json", None)
    if snap:
        check_pipeline_folder(Path(snap).parent, "model.config", allow_pickle=True)
    elif _offline():
        raise ConfigError(missing_message(spec, "component configs", spec.config, None,
                                           "model.config=/path/to/diffusers-folder"))


def check_source(spec: ModelSpec) -> None:
    """Fail early, with a message naming the model and the `model.path=` override."""
    if spec.path:
        p = Path(spec.path).expanduser()
        if p.suffix.lower() in PICKLE_SUFFIXES and not spec.allow_pickle:
            raise ConfigError(f"model.path: {p} is a pickle checkpoint" + PICKLE_HINT)
        if not p.exists():
            raise ConfigError(f"model.path: {p} does not exist; give a diffusers folder (with "
                              "model_index.json) or a single .safetensors file")
        if p.is_dir():
            if not (p / "model_index.json").is_file():
                raise ConfigError(f"model.path: {p} is a folder without model_index.json; give a "
                                  "diffusers pipeline folder or a single .safetensors file")
            check_pipeline_folder(p, "model.path", spec.allow_pickle)
        elif p.suffix.lower() not in (".safetensors", *PICKLE_SUFFIXES):
            raise ConfigError(f"model.path: {p} is not a .safetensors file")
        else:
            if p.suffix.lower() == ".safetensors" and (problem := safetensors_problem(p)):
                raise ConfigError(f"model.path: {problem}; give an SDXL checkpoint in "
                                  "safetensors format (a pickle renamed .safetensors is refused "
                                  "too) or a diffusers folder")
            if spec.config:
                _check_config(spec)
    elif spec.embedded:
        if spec.embedded not in EMBEDDED_MODELS:
            raise ConfigError(f"model.embedded: unknown embedded model {spec.embedded!r}; "
                              f"allowed: {', '.join(EMBEDDED_MODELS)}")
    else:
        snap = _cached_snapshot(spec.id, "model_index.json", spec.revision)
        if snap:
            check_pipeline_folder(Path(snap).parent, "model.id", spec.allow_pickle)
        elif _offline():
            raise ConfigError(missing_message(spec, "model", spec.id, spec.revision))
    if spec.vae:
        v = Path(spec.vae).expanduser()
        if v.is_dir():
            if not spec.allow_pickle and pickle_only(v):
                raise ConfigError(f"model.vae: {v} holds only pickle weights" + PICKLE_HINT)
            for weights in sorted(v.glob("*.safetensors")):
                if problem := safetensors_problem(weights):
                    raise ConfigError(f"model.vae: {problem}")
        elif not _hub_id(spec.vae):
            raise ConfigError(f"model.vae: {spec.vae} does not exist; give a local folder of an "
                              "AutoencoderKL (config.json + weights) or a hub id")
        elif _offline() and not _cached_snapshot(spec.vae, "config.json", spec.vae_revision):
            raise ConfigError(missing_message(spec, "VAE", spec.vae, spec.vae_revision,
                                               "model.vae=/path/to/vae-folder"))


def _file_sha256(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) so large checkpoints hash once."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache = cache_dir() / "hashes.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    known[key] = h.hexdigest()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(known))
        os.replace(tmp, cache)
    except OSError:
        pass
    return known[key]


CONFIG_FILES = (".json", ".txt", ".model")  # what a single file takes from `model.config`


def _folder_sha256(folder: Path, suffixes: tuple[str, ...] | None = None) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                    and (suffixes is None or p.suffix in suffixes)):
        h.update(f"{f.relative_to(folder)}:{_file_sha256(f)}\n".encode())
    return h.hexdigest()


def _hub_identity(repo: str, revision: str | None, probe: str) -> str:
    snap = _cached_snapshot(repo, probe, revision)
    if snap:  # resolve a branch name to the cached commit
        return f"hub:{repo}@{Path(snap).parent.name}"
    return f"hub:{repo}@{revision or 'main'}"


def identity(spec: ModelSpec) -> str:
    """What identifies the weights (and VAE) inside task ids."""
    if spec.path:
        p = Path(spec.path).expanduser()
        base = f"sha256:{_file_sha256(p) if p.is_file() else _folder_sha256(p)}"
        if p.is_file() and spec.config:  # the configs shape the pipeline built from the file
            c = Path(spec.config).expanduser()
            base += "+config=" + (f"sha256:{_folder_sha256(c, CONFIG_FILES)}" if c.is_dir()
                                  else _hub_identity(spec.config, None, "model_index.json"))
    elif spec.embedded:
        base = f"embedded:{offline.model_dir(spec.embedded, spec.seed).name}"
    else:
        base = _hub_identity(spec.id, spec.revision, "model_index.json")
    if spec.vae:
        v = Path(spec.vae).expanduser()
        vae = f"sha256:{_folder_sha256(v)}" if v.is_dir() else _hub_identity(
            spec.vae, spec.vae_revision, "config.json")
        base += f"+vae={vae}"
    return base


def lora_identity(path: str) -> str:
    """A LoRA file enters task ids by content, not by name."""
    return f"sha256:{_file_sha256(Path(path).expanduser())}"


def model_hash(spec: ModelSpec) -> str | None:
    """A1111 `Model hash`, by which webui and Civitai find a checkpoint: the first 10 hex of the
    sha256 of a single checkpoint file, computed; for a hub id or a diffusers folder (no such
    file) the configured `model.a1111_hash`; None when neither is known."""
    if is_single_file(spec):
        return _file_sha256(Path(spec.path).expanduser())[:10]
    return spec.a1111_hash or None


def title(spec: ModelSpec) -> str:
    """The model's name in the demo app's `Model` block (`model.title`, e.g. `Animagine XL
    3.1`), else its infotext name."""
    return spec.title or display_name(spec)


def display_name(spec: ModelSpec) -> str:
    """`Model:` in the infotext, e.g. `animagine-xl-3.1`."""
    if spec.path:
        p = Path(spec.path)
        return p.stem if p.is_file() else p.name
    if spec.embedded:
        return spec.embedded
    return spec.id.rsplit("/", 1)[-1]
