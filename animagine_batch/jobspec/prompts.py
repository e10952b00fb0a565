"""The prompt strategy: a prompt-set entry + prompt options -> final prompt, negative, content
(prompt sets themselves: `prompt_sets.py`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import tags as T


@dataclass(frozen=True)
class PromptOptions:
    quality: str = "none"
    rating: str = "none"
    year: str = "none"
    aesthetic: str = "none"
    tag_position: str = "prepend"
    preset: str = "none"
    style: str = "none"
    negative: str = "recommended"
    tags: str = "none"  # extra general tags after the entry's own (comma-separated), or none
    weighting: str = "a1111"  # a1111 (emphasis syntax, long prompts) | none (plain diffusers)


PROMPT_FIELDS = tuple(PromptOptions.__dataclass_fields__)
TAG_POSITIONS = ("prepend", "append")
WEIGHTINGS = ("a1111", "none")


@dataclass(frozen=True)
class BuiltPrompt:
    prompt: str
    negative: str
    content: str


def resolve_preset(kind: str, value: str) -> T.Preset | None:
    """`none` means no preset; the demo app's own `(None)` preset is addressed verbatim."""
    presets = T.QUALITY_PRESETS if kind == "preset" else T.STYLE_PRESETS
    text = str(value).strip()
    if text == "(None)":
        return presets[0]
    if T.slug(text) in ("", "none"):
        return None
    found = T.find_preset(presets, text)
    if found is None:
        names = ", ".join(["none"] + [repr(p.name) for p in presets[1:]])
        raise ValueError(f"unknown {kind} {value!r}; allowed: {names}")
    return found


def resolve_negative(value: str) -> str:
    """A named negative (`recommended`, `none`) or literal negative text."""
    text = str(value).strip()
    if text.lower() in T.NAMED_NEGATIVES:
        return T.NAMED_NEGATIVES[text.lower()]
    if re.fullmatch(r"[a-z]+_[a-z_]+", text):  # looks like a misspelt name, not a tag list
        raise ValueError(
            f"unknown named negative {value!r}; allowed: {', '.join(T.NAMED_NEGATIVES)} "
            "or literal negative-prompt text"
        )
    return text


def check_options(opts: PromptOptions) -> list[str]:
    """Every problem with a set of prompt options, as `field: message` strings."""
    errors = []
    for group in T.SPECIAL_TAG_GROUPS:
        try:
            T.parse_special(group, getattr(opts, group))
        except ValueError as e:
            errors.append(f"{group}: {e}")
    if opts.weighting not in WEIGHTINGS:
        errors.append(f"weighting: {opts.weighting!r} is not one of {', '.join(WEIGHTINGS)}")
    if opts.tag_position not in TAG_POSITIONS:
        errors.append(f"tag_position: {opts.tag_position!r} is not one of {', '.join(TAG_POSITIONS)}")
    for kind in ("preset", "style"):
        try:
            resolve_preset(kind, getattr(opts, kind))
        except ValueError as e:
            errors.append(f"{kind}: {e}")
    try:
        resolve_negative(opts.negative)
    except ValueError as e:
        errors.append(f"negative: {e}")
    for name in ("tags", "negative"):
        if (problem := long_tag(getattr(opts, name))):
            errors.append(f"{name}: {problem}")
    return errors


MAX_TAG_CHARS = 500  # a Danbooru tag is a few words; a longer one is a pasted text or a mistake


def long_tag(text: str) -> str | None:
    """Why a comma-separated tag text holds a tag too long to be one, or None."""
    longest = max(T.split_tags(str(text)) or [""], key=len)
    if len(longest) > MAX_TAG_CHARS:
        return (f"a tag of {len(longest):,} characters ({longest[:40]!r}...) is longer than "
                f"{MAX_TAG_CHARS}; separate tags with commas")
    return None


def build(entry, opts: PromptOptions) -> BuiltPrompt:
    """Compose the final prompt and negative the way the demo app does.

    Order: quality + aesthetic tags (when prepended), content tags, rating, quality + aesthetic
    (when appended), year; then the quality preset's template, then the style preset's. Negative:
    style negative, quality-preset negative, the job's negative, empty parts skipped.
    """
    content = entry.content_tags()
    if T.slug(opts.tags) not in ("", "none"):
        content += [T.normalise_tag(t) for t in T.split_tags(opts.tags)]
    quality = T.parse_special("quality", opts.quality) + T.parse_special("aesthetic", opts.aesthetic)
    rating = T.parse_special("rating", opts.rating)
    year = T.parse_special("year", opts.year)
    if opts.tag_position == "prepend":
        parts = [*quality, *content, *rating, *year]
    else:
        parts = [*content, *rating, *quality, *year]
    text = ", ".join(parts)
    preset = resolve_preset("preset", opts.preset)
    style = resolve_preset("style", opts.style)
    for p in (preset, style):
        if p is not None:
            text = p.positive.replace("{prompt}", text)
    negatives = [style.negative if style else "", preset.negative if preset else ""]
    negatives.append(resolve_negative(opts.negative))
    negative = ", ".join(n for n in negatives if n.strip())
    plain = [t for t in T.split_tags(T.strip_emphasis(", ".join(content)))
             if t not in T.ALL_SPECIAL_TAGS]
    return BuiltPrompt(prompt=text, negative=negative, content=", ".join(plain))
