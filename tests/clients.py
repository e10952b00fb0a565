"""Readers that follow the rules of the programs that read our outputs (SPEC.md section 9):
kohya sd-scripts' dataset config and loaders, A1111 webui's infotext parser and LoRA
re-application. Each is written from that program's behaviour, so a test reads our files the way
the real client does rather than the way our writers meant them."""

from __future__ import annotations

import json
import os
import random
import re
import tomllib

import toml  # sd-scripts reads --dataset_config with this package

# ---------------------------------------------------------------- kohya sd-scripts

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".bmp"}

# The keys sd-scripts' config schema (library/config_util.py, ConfigSanitizer) accepts at each
# level, with their types, for the SDXL scripts (DreamBooth and fine-tune methods, caption dropout).
_SUBSET = {"color_aug": bool, "flip_aug": bool, "num_repeats": int, "random_crop": bool,
           "shuffle_caption": bool, "keep_tokens": int, "keep_tokens_separator": str,
           "secondary_separator": str, "caption_separator": str, "enable_wildcard": bool,
           "token_warmup_min": int, "caption_prefix": str, "caption_suffix": str,
           "resize_interpolation": str, "caption_dropout_every_n_epochs": int}
_DB_SUBSET = {"caption_extension": str, "class_tokens": str, "cache_info": bool}
_DATASET = {"batch_size": int, "bucket_no_upscale": bool, "bucket_reso_steps": int,
            "enable_bucket": bool, "max_bucket_reso": int, "min_bucket_reso": int,
            "resolution": int, "validation_seed": int}
SCHEMA = {
    "general": _DATASET | _SUBSET | _DB_SUBSET,
    "db_dataset": _DATASET | _SUBSET | _DB_SUBSET,
    "ft_dataset": _DATASET | _SUBSET,
    "db_subset": _SUBSET | _DB_SUBSET | {"image_dir": str, "is_reg": bool, "alpha_mask": bool},
    "ft_subset": _SUBSET | {"metadata_file": str, "image_dir": str, "alpha_mask": bool},
}
DEFAULTS = {"caption_extension": ".caption", "caption_separator": ",", "keep_tokens": 0,
            "shuffle_caption": False, "num_repeats": 1, "min_bucket_reso": 256,
            "max_bucket_reso": 1024, "bucket_reso_steps": 64, "enable_bucket": False}


def _check_keys(section: dict, level: str) -> None:
    for key, value in section.items():
        if key == "subsets" and level.endswith("dataset"):
            continue
        assert key in SCHEMA[level], f"sd-scripts' {level} schema has no key {key!r}"
        assert isinstance(value, SCHEMA[level][key]), f"{key} = {value!r} has the wrong type"


def read_dataset_config(path) -> list[dict]:
    """A dataset_config.toml as sd-scripts (SDXL scripts) loads it: parsed with `toml`, checked
    against its schema, settings inherited general -> dataset -> subset. One dict per subset."""
    text = open(path, encoding="utf-8").read()
    config = toml.loads(text)
    assert config == tomllib.loads(text)  # and TOML 1.0 readers agree
    assert set(config) <= {"general", "datasets"}
    general = config.get("general", {})
    _check_keys(general, "general")
    subsets = []
    for dataset in config["datasets"]:
        finetune = all("metadata_file" in s for s in dataset["subsets"])
        assert finetune or all("metadata_file" not in s for s in dataset["subsets"])
        _check_keys(dataset, "ft_dataset" if finetune else "db_dataset")
        for subset in dataset["subsets"]:
            _check_keys(subset, "ft_subset" if finetune else "db_subset")
            assert ("metadata_file" if finetune else "image_dir") in subset  # Required()
            merged = DEFAULTS | general | {k: v for k, v in dataset.items() if k != "subsets"}
            subsets.append(merged | subset | {"finetune": finetune})
    return subsets


def check_bucketing(s: dict) -> None:
    """What sd-scripts asserts before bucketing (the SDXL scripts need steps divisible by 32)."""
    steps, res = s["bucket_reso_steps"], s["resolution"]
    assert steps % 32 == 0
    assert s["min_bucket_reso"] % steps == 0 and s["max_bucket_reso"] % steps == 0
    assert s["min_bucket_reso"] <= res <= s["max_bucket_reso"]


def bucket_without_upscale(s: dict, width: int, height: int) -> tuple[int, int]:
    """sd-scripts' bucket of an image under bucket_no_upscale: shrunk only past the area of
    `resolution`, then cropped down to multiples of the bucket step."""
    steps, area = s["bucket_reso_steps"], s["resolution"] ** 2
    assert width * height <= area, "shrinking is not modelled here"
    return width - width % steps, height - height % steps


def read_images(subset: dict) -> list[dict]:
    """The images of one subset as sd-scripts finds them: fine-tune keys joined to image_dir
    (current sd-scripts; v0.9.1 looks the key up from its working directory) with the trained
    text = caption + separator + tags; DreamBooth files of image_dir with the caption file of the
    declared extension (first line). Sizes: `image_size` (current), `train_resolution` (v0.9.1)."""
    sep = subset["caption_separator"]
    images = []
    if subset["finetune"]:
        with open(subset["metadata_file"], encoding="utf-8") as fh:
            metadata = json.load(fh)
        for key, md in metadata.items():
            path = key if os.path.isabs(key) else os.path.join(subset["image_dir"], key)
            assert os.path.isfile(path), f"metadata key {key!r}: no image at {path}"
            caption, tags = md.get("caption") or "", md.get("tags")
            if tags:
                caption = caption + sep + tags if caption else tags
            images.append({"path": path, "text": caption, "size": md.get("image_size"),
                           "train_resolution": md.get("train_resolution")})
    else:
        folder = subset["image_dir"]
        for name in sorted(os.listdir(folder)):
            if os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            cap = os.path.join(folder, os.path.splitext(name)[0] + subset["caption_extension"])
            assert os.path.isfile(cap), f"{name}: no caption file {cap}"
            with open(cap, encoding="utf-8") as fh:
                lines = fh.readlines()
            assert lines, f"caption file is empty: {cap}"
            images.append({"path": os.path.join(folder, name), "text": lines[0].strip(),
                           "size": None, "train_resolution": None})
    return images


def tokens(text: str, sep: str = ",") -> list[str]:
    return [t.strip() for t in text.strip().split(sep)]


def shuffled(text: str, keep_tokens: int, rng: random.Random, sep: str = ",") -> list[str]:
    """The tags of one training step under shuffle_caption: the first keep_tokens stay."""
    toks = tokens(text, sep)
    fixed, flex = toks[:keep_tokens], toks[keep_tokens:]
    rng.shuffle(flex)
    return fixed + flex


def repeats(folder_name: str) -> int:
    """sd-scripts' folder mode: `N_name` holds N repeats; 0 = not a subset (ignored)."""
    try:
        return int(folder_name.split("_")[0])
    except ValueError:
        return 0


# ---------------------------------------------------------------- A1111 webui

WEBUI_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
WEBUI_SIZE = re.compile(r"^(\d+)x(\d+)$")
EXTRA_NETWORK = re.compile(r"<(\w+):([^>]+)>")
LORA_NAME = re.compile(r"<lora:([^:]+):")


def webui_parse(text: str) -> dict:
    """Infotext as webui's parse_generation_parameters reads it: the last line holds the
    parameters when it has at least three; `Negative prompt:` starts the negative; quoted values
    are JSON strings; `WxH` values split into `-1`/`-2`."""
    *lines, last = text.strip().split("\n")
    if len(WEBUI_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative, line = True, line[16:].strip()
        (negative if in_negative else prompt).append(line)
    out = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in WEBUI_PARAM.findall(last):
        if value[:1] == '"' and value[-1:] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        m = WEBUI_SIZE.match(value)
        if m:
            out[f"{key}-1"], out[f"{key}-2"] = m.group(1), m.group(2)
        else:
            out[key] = value
    return out


def webui_loras(params: dict) -> tuple[str, dict[str, tuple[str, str | None]]]:
    """What webui re-applies from pasted parameters: the `<lora:NAME:WEIGHT>` tags of the prompt
    (extra-network syntax), each looked up in `Lora hashes` by NAME as the Lora extension parses
    it (entries split at `,`, then at the first `:`; an entry without `:` raises IndexError).
    Returns the prompt without the tags (what the text encoders get) and {name: (weight, hash)}."""
    hashes = {}
    if params.get("Lora hashes"):
        pairs = [x.strip().split(":", 1) for x in params["Lora hashes"].split(",")]
        hashes = {x[0].strip().replace(",", ""): x[1].strip() for x in pairs}
    found = {}

    def take(m):
        if m.group(1) == "lora":
            items = m.group(2).split(":")
            found[items[0]] = (items[1] if len(items) > 1 else "1", hashes.get(items[0]))
        return ""

    prompt = EXTRA_NETWORK.sub(take, params["Prompt"])
    assert set(LORA_NAME.findall(params["Prompt"])) == set(found)
    return prompt, found
