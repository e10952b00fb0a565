"""PNG metadata: the A1111 `parameters` infotext and the demo app's `metadata` JSON chunk."""

from __future__ import annotations

import io
import json
import re

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ..jobspec.axes import FIELDS

INFOTEXT_PAIR = re.compile(r"""\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)""")


def quote(value) -> str:
    """A1111 quoting: values containing `,`, `:` or `"` go in double quotes, escaped."""
    text = str(value)
    if any(ch in text for ch in ',:"'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _num(v: float) -> str:
    return f"{v:g}"


def infotext(prompt: str, negative: str, params: dict) -> str:
    """`<prompt>\\nNegative prompt: <negative>\\nKey: value, Key: value, ...`."""
    lines = [prompt]
    if negative:
        lines.append(f"Negative prompt: {negative}")
    lines.append(", ".join(f"{k}: {quote(v)}" for k, v in params.items() if v is not None))
    return "\n".join(lines)


def infotext_params(task, model_name: str, model_hash: str | None, sampler_name: str,
                    version: str, lora_hashes: dict | None = None) -> dict:
    """A1111 keys; `Size` is the first pass's size, as webui writes it with a hi-res pass.
    `Model hash` is left out when it is unknown (None). `Lora hashes` maps the names of the
    prompt line's `<lora:...>` tags to webui's short hashes, as webui writes it."""
    params = {
        "Steps": task.steps,
        "Sampler": sampler_name,
        "CFG scale": _num(task.cfg),
        "Seed": task.seed,
        "Size": f"{task.width}x{task.height}",
        "Model hash": model_hash,
        "Model": model_name,
    }
    for field in FIELDS.values():  # other settings webui records, left out at their default
        if field.infotext and getattr(task, field.name) != field.default:
            params[field.infotext] = getattr(task, field.name)
    hires = task.hires
    if hires:
        params |= {"Denoising strength": _num(hires[1]), "Hires upscale": _num(hires[0]),
                   "Hires upscaler": WEBUI_UPSCALERS.get(hires[2], hires[2])}
    if task.loras:
        params["Lora hashes"] = ", ".join(
            f"{lora_name(p)}: {(lora_hashes or {}).get(p, '')}" for p, _ in task.loras)
    if task.weighting == "none":
        params["Emphasis"] = "None"  # webui's name for "brackets are literal text"
    params["Version"] = f"animagine-batch {version}"
    return params


def infotext_prompt(task) -> str:
    """The infotext's prompt line: the prompt the pipeline saw, then one `<lora:NAME:WEIGHT>` tag
    per LoRA, the syntax webui re-applies LoRAs from when the parameters are pasted. The tags are
    joined by spaces, so the prompt webui encodes once it has removed them is the stored one."""
    tags = " ".join(f"<lora:{lora_name(p)}:{_num(s)}>" for p, s in task.loras)
    return f"{task.prompt} {tags}" if tags else task.prompt


# webui's names of its latent upscalers
WEBUI_UPSCALERS = {"nearest-exact": "Latent (nearest-exact)", "bilinear": "Latent",
                   "bicubic": "Latent (bicubic)"}


def lora_name(path: str) -> str:
    """A LoRA's name in the infotext: the file name without `.safetensors`, without the `,` and
    `:` webui strips from names (its `Lora hashes` parser splits at them) and the `<` and `>`
    that would end a `<lora:...>` tag early."""
    name = path.replace("\\", "/").rsplit("/", 1)[-1]
    name = name[: -len(".safetensors")] if name.endswith(".safetensors") else name
    return re.sub(r"[,:<>]", "", name).strip() or "lora"


def hires_size(task) -> tuple[int, int]:
    """(width, height) of the image a task produces."""
    if not getattr(task, "hires", None):
        return task.width, task.height
    from ..jobspec.values import hires_side

    return hires_side(task.width, task.hires[0]), hires_side(task.height, task.hires[0])


def parse_infotext(text: str) -> dict:
    """Read infotext back: prompt, negative prompt and the key/value pairs (Size split)."""
    lines = text.split("\n")
    *head, last = lines
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in head:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].lstrip()
        (negative_lines if in_negative else prompt_lines).append(line)
    out: dict = {"Prompt": "\n".join(prompt_lines), "Negative prompt": "\n".join(negative_lines)}
    for key, value in INFOTEXT_PAIR.findall(last):
        if value.startswith('"') and value.endswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        out[key.strip()] = value
    if "Size" in out:
        w, h = out["Size"].split("x")
        out["Size-1"], out["Size-2"] = int(w), int(h)
    return out


def demo_metadata(task, model_title: str, sampler_name: str,
                  model_hash: str | None = None) -> dict:
    """The demo app's `metadata` chunk, its `Model` block included (the hash is null when
    unknown)."""
    return {
        "prompt": task.prompt,
        "negative_prompt": task.negative_prompt,
        "resolution": f"{task.width} x {task.height}",
        "guidance_scale": task.cfg,
        "num_inference_steps": task.steps,
        "seed": task.seed,
        "sampler": sampler_name,
        "sdxl_style": task.style_preset or "(None)",
        "add_quality_tags": task.quality_preset is not None,
        "quality_tags": task.quality_preset or "(None)",
        "use_upscaler": None if not task.hires else {
            "upscale_method": task.hires[2], "upscaler_strength": task.hires[1],
            "upscale_by": task.hires[0], "new_resolution": "%d x %d" % hires_size(task)},
        "Model": {"Model": model_title, "Model hash": model_hash},
    }


def encode_png(pixels: np.ndarray, parameters: str, metadata: dict, compress_level: int) -> bytes:
    """uint8 HxWx3 pixels -> PNG bytes with both text chunks (deterministic bytes)."""
    info = PngInfo()
    info.add_text("parameters", parameters)
    info.add_text("metadata", json.dumps(metadata, ensure_ascii=False))
    buf = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(buf, format="PNG", pnginfo=info,
                                         compress_level=compress_level)
    return buf.getvalue()
