"""LoRA files as a job names them: `embedded:tiny` (the offline tiny LoRA, `embedded:tiny-seedN`
for other weights) or a path to a `.safetensors` file. Only names and headers are checked here;
`offline/lora.py` builds the embedded one and the engine loads them."""

from __future__ import annotations

from pathlib import Path

from ..cache import cache_dir

EMBEDDED_PREFIX = "embedded:"
LORA_FILE = "pytorch_lora_weights.safetensors"  # the name diffusers' save_lora_weights gives
EMBEDDED_VERSION = 1  # of the tiny LoRA's build (offline/lora.py): a new one gets a new folder


def embedded_seed(text: str) -> int | None:
    """The weights seed an `embedded:` name stands for; None for a file path."""
    text = str(text)
    if not text.startswith(EMBEDDED_PREFIX):
        return None
    name = text[len(EMBEDDED_PREFIX):]
    if name == "tiny":
        return 0
    if name.startswith("tiny-seed") and name[9:].isdigit():
        return int(name[9:])
    raise ValueError(f"unknown embedded LoRA {text!r}; allowed: embedded:tiny, "
                     "embedded:tiny-seedN")


def embedded_path(seed: int) -> Path:
    """Where the offline tiny LoRA of weights seed `seed` lies once built."""
    return cache_dir() / "loras" / f"tiny-lora-seed{seed}-v{EMBEDDED_VERSION}" / LORA_FILE


def resolve(text: str) -> str:
    """A `lora.path` as a file path: an `embedded:` name becomes its cache path."""
    seed = embedded_seed(text)
    return str(text) if seed is None else str(embedded_path(seed))


def check(text: str) -> str | None:
    """Why a LoRA cannot be used, or None (a file's safetensors header is read, nothing more)."""
    try:
        if embedded_seed(text) is not None:
            return None  # built on first use
    except ValueError as e:
        return str(e)
    p = Path(text).expanduser()
    if p.suffix.lower() != ".safetensors":
        return (f"{text} is not a .safetensors file; LoRA weights are loaded from safetensors "
                "only (pickle files can run code when loaded)")
    if not p.is_file():
        return f"LoRA file {text} does not exist"
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="numpy") as f:
            keys = list(f.keys())
    except Exception as e:  # noqa: BLE001 - any unreadable header
        return f"LoRA file {text} is not a readable safetensors file ({e})"
    if not any("lora" in k.lower() for k in keys):
        return f"{text} holds no LoRA weights (no lora_A/lora_B or lora_up/lora_down tensors)"
    return None
