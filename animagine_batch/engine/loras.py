"""LoRA adapters on a loaded pipeline: each file is loaded once (diffusers' PEFT backend), then
units switch between adapter sets and scales without reloading the base model. Names and files
are checked in `jobspec/loras.py`."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path


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
