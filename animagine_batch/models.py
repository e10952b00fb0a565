"""Model sources: embedded, hub id + revision, local diffusers folder, single .safetensors file.

`check_source` runs before any work (no weights loaded); `identity` gives the string that enters
every task id; `load_pipeline` loads through diffusers' `from_pretrained` / `from_single_file`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from . import offline
from .config import ModelSpec
from .errors import ConfigError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _cached_snapshot(repo: str, filename: str, revision: str | None) -> str | None:
    """Path of a file in the local hub cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo, filename, revision=revision or "main")
    return found if isinstance(found, str) else None


def _missing_message(spec: ModelSpec, what: str, repo: str, revision: str | None) -> str:
    where = "the hub is offline (HF_HUB_OFFLINE=1)" if _offline() else "it could not be fetched"
    return (f"model: cannot load {what} {repo!r} (revision {revision or 'main'}) for model config "
            f"{spec.name!r}: it is not in the local Hugging Face cache and {where}. Download it once "
            "where the hub is reachable, or point at local weights with "
            "model.path=/path/to/diffusers-folder or model.path=/path/to/model.safetensors")


def check_source(spec: ModelSpec) -> None:
    """Fail early, with a message naming the model and the `model.path=` override."""
    if spec.path:
        p = Path(spec.path).expanduser()
        if p.suffix.lower() in PICKLE_SUFFIXES:
            raise ConfigError(f"model.path: {p} is a pickle checkpoint, which can run code when "
                              "loaded; convert it to .safetensors")
        if not p.exists():
            raise ConfigError(f"model.path: {p} does not exist; give a diffusers folder (with "
                              "model_index.json) or a single .safetensors file")
        if p.is_dir() and not (p / "model_index.json").is_file():
            raise ConfigError(f"model.path: {p} is a folder without model_index.json; give a "
                              "diffusers pipeline folder or a single .safetensors file")
        if p.is_file() and p.suffix.lower() != ".safetensors":
            raise ConfigError(f"model.path: {p} is not a .safetensors file")
    elif spec.embedded:
        if spec.embedded not in offline.EMBEDDED:
            raise ConfigError(f"model.embedded: unknown embedded model {spec.embedded!r}; "
                              f"allowed: {', '.join(offline.EMBEDDED)}")
    elif _offline() and not _cached_snapshot(spec.id, "model_index.json", spec.revision):
        raise ConfigError(_missing_message(spec, "model", spec.id, spec.revision))
    if spec.vae and not Path(spec.vae).expanduser().is_dir() and _offline() \
            and not _cached_snapshot(spec.vae, "config.json", spec.vae_revision):
        raise ConfigError(_missing_message(spec, "VAE", spec.vae, spec.vae_revision))


def _file_sha256(path: Path) -> str:
    """sha256 of a file, cached by (path, size, mtime) so large checkpoints hash once."""
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache = offline.cache_dir() / "hashes.json"
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


def _folder_sha256(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
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


def model_hash(spec: ModelSpec, ident: str) -> str:
    """A1111 `Model hash` (10 hex): a single file's sha256, else a hash of the identity."""
    if spec.path and Path(spec.path).is_file():
        return _file_sha256(Path(spec.path).expanduser())[:10]
    return hashlib.sha256(ident.encode()).hexdigest()[:10]


def display_name(spec: ModelSpec) -> str:
    """`Model:` in the infotext, e.g. `animagine-xl-3.1`."""
    if spec.path:
        p = Path(spec.path)
        return p.stem if p.is_file() else p.name
    if spec.embedded:
        return spec.embedded
    return spec.id.rsplit("/", 1)[-1]


def load_pipeline(spec: ModelSpec, device: str, dtype):
    """An SDXL pipeline on `device` in `dtype`, watermark off, progress bars off."""
    import diffusers
    import torch
    import transformers
    from diffusers import AutoencoderKL, StableDiffusionXLPipeline

    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.disable_progress_bar()
    kwargs = {"torch_dtype": dtype, "add_watermarker": False}
    try:
        if spec.vae:
            v = Path(spec.vae).expanduser()
            kwargs["vae"] = AutoencoderKL.from_pretrained(
                str(v) if v.is_dir() else spec.vae, revision=None if v.is_dir() else spec.vae_revision,
                torch_dtype=dtype)
        if spec.path and Path(spec.path).expanduser().is_file():
            pipe = StableDiffusionXLPipeline.from_single_file(
                str(Path(spec.path).expanduser()), **kwargs)
        elif spec.path:
            pipe = StableDiffusionXLPipeline.from_pretrained(
                str(Path(spec.path).expanduser()), **kwargs)
        elif spec.embedded:
            pipe = StableDiffusionXLPipeline.from_pretrained(
                offline.ensure_model(spec.embedded, spec.seed), **kwargs)
        else:
            pipe = StableDiffusionXLPipeline.from_pretrained(
                spec.id, revision=spec.revision, **kwargs)
    except (OSError, ValueError) as e:
        repo = spec.path or spec.id
        raise ConfigError(_missing_message(spec, "model", repo, spec.revision)
                          + f" (loader said: {str(e).splitlines()[0][:300]})") from None
    pipe.set_progress_bar_config(disable=True)
    pipe.to(torch.device(device))
    return pipe
