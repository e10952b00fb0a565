"""LoRA adapters on a loaded pipeline: each file is loaded once (diffusers' PEFT backend), then
units switch between adapter sets and scales without reloading the base model."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

EMBEDDED_PREFIX = "embedded:"


def short_hash(path: str) -> str:
    """webui's short hash of a .safetensors LoRA (`Lora hashes` in infotext, matched by Civitai):
    the first 12 hex of the sha256 of the file after its JSON header (the "addnet" hash). Read
    once per process and file version, however many pipelines use it."""
    p = Path(path).expanduser()
    stat = p.stat()
    return _short_hash(str(p), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _short_hash(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        fh.seek(8 + int.from_bytes(fh.read(8), "little"))
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def check(path: str) -> str | None:
    """Why a LoRA file cannot be used, or None (reads the safetensors header only)."""
    try:
        p = Path(resolve(path)).expanduser()
    except ValueError as e:
        return str(e)
    if p.suffix.lower() != ".safetensors":
        return (f"{path} is not a .safetensors file; LoRA weights are loaded from safetensors "
                "only (pickle files can run code when loaded)")
    if not p.is_file():
        return f"LoRA file {path} does not exist"
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt") as f:
            keys = list(f.keys())
    except Exception as e:  # noqa: BLE001 - any unreadable header
        return f"LoRA file {path} is not a readable safetensors file ({e})"
    if not any("lora" in k.lower() for k in keys):
        return f"{path} holds no LoRA weights (no lora_A/lora_B or lora_up/lora_down tensors)"
    return None


def resolve(path: str) -> str:
    """`embedded:tiny` (or `embedded:tiny-seedN`) names the offline tiny LoRA, built on first
    use; any other value is a file path."""
    text = str(path)
    if not text.startswith(EMBEDDED_PREFIX):
        return text
    name = text[len(EMBEDDED_PREFIX):]
    seed = 0
    if name.startswith("tiny-seed") and name[9:].isdigit():
        name, seed = "tiny", int(name[9:])
    if name != "tiny":
        raise ValueError(f"unknown embedded LoRA {text!r}; allowed: embedded:tiny, "
                         "embedded:tiny-seedN")
    from .offline_lora import ensure_lora

    return str(ensure_lora(seed))


class LoraAdapters:
    def __init__(self, pipe):
        self.pipe = pipe
        self.names: dict[str, str] = {}  # path -> adapter name
        self.active: tuple = ()

    def use(self, loras: tuple[tuple[str, float], ...]) -> bool:
        """Make exactly `loras` ((path, scale), ...) active; True when anything changed."""
        loras = tuple(loras)
        if loras == self.active:
            return False
        self.active = None  # unknown until the switch has succeeded
        if not loras:
            self.pipe.disable_lora()
        else:
            for path, _ in loras:
                if path not in self.names:
                    self._load(path)
            self.pipe.enable_lora()
            self.pipe.set_adapters([self.names[p] for p, _ in loras],
                                   adapter_weights=[float(s) for _, s in loras])
        self.active = loras
        return True

    def _load(self, path: str) -> None:
        p = Path(path).expanduser()
        if p.suffix.lower() != ".safetensors":
            raise ValueError(f"LoRA {path}: only .safetensors files are loaded")
        # fused QKV attention (accel.py) reads copies in `to_qkv` and would bypass the LoRA
        # layers that patch `to_q`, `to_k` and `to_v`: go back to the separate projections in
        # the UNet (a LoRA never patches the VAE, which stays fused)
        if getattr(self.pipe, "fusing_unet", False):
            self.pipe.unfuse_qkv_projections(vae=False)
        elif getattr(self.pipe.unet, "original_attn_processors", None) is not None:
            self.pipe.unet.unfuse_qkv_projections()
        name = f"lora{len(self.names)}"
        self.pipe.load_lora_weights(str(p.parent), weight_name=p.name, adapter_name=name,
                                    use_safetensors=True)
        self.names[path] = name
