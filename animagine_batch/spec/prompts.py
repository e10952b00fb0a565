"""Prompt sets and the prompt strategy: subject + prompt options -> final prompt, negative, content.

A prompt set is a YAML or CSV file of entries with the fields `id`, `subject` (`1girl`, `1boy`, ...),
`character`, `series` and `tags` (general tags). Named sets live in `conf/prompts/`.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import tags as T
from .datafiles import load_yaml, read_text
from ..errors import ConfigError

ENTRY_FIELDS = ("id", "subject", "character", "series", "tags")


@dataclass(frozen=True)
class PromptEntry:
    key: str
    subject: str | None = None
    character: str | None = None
    series: str | None = None
    tags: tuple[str, ...] = ()

    def content_tags(self) -> list[str]:
        """Template order of the card: 1girl/1boy, character, series, everything else."""
        head = [self.subject, self.character, self.series]
        return [T.normalise_tag(t) for t in [*head, *self.tags] if t]


@dataclass(frozen=True)
class PromptSet:
    name: str
    source: str
    entries: tuple[PromptEntry, ...] = field(default_factory=tuple)


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


def build(entry: PromptEntry, opts: PromptOptions) -> BuiltPrompt:
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


# ---------------------------------------------------------------- prompt-set files


def _entry(raw: object, where: str, index: int) -> PromptEntry:
    if isinstance(raw, str):
        return PromptEntry(key=f"p{index:04d}", tags=tuple(T.split_tags(raw)))
    if not isinstance(raw, dict):
        raise ConfigError([f"{where}: entry {index} must be a mapping or a tag string"])
    unknown = sorted(set(raw) - set(ENTRY_FIELDS))
    if unknown:
        raise ConfigError([f"{where}: entry {index} has unknown field(s) {', '.join(unknown)}; "
                           f"allowed: {', '.join(ENTRY_FIELDS)}"])
    tags = raw.get("tags") or ()
    if isinstance(tags, str):
        tags = T.split_tags(tags)
    elif not isinstance(tags, (list, tuple)):
        raise ConfigError([f"{where}: entry {index} field tags must be a list or a string"])

    def text(name: str) -> str | None:
        v = raw.get(name)
        return None if v is None or str(v).strip() == "" else str(v).strip()

    if not any(text(f) for f in ("subject", "character", "series")) and not tags:
        raise ConfigError([f"{where}: entry {index} has no subject, character, series or tags"])
    for name in ("id", "subject", "character", "series"):
        if (problem := long_tag(text(name) or "")):
            raise ConfigError([f"{where}: entry {index} field {name}: {problem}"])
    for tag in tags:
        if (problem := long_tag(str(tag))):
            raise ConfigError([f"{where}: entry {index} field tags: {problem}"])
    key = text("id") or text("character") or f"p{index:04d}"
    return PromptEntry(key=key, subject=text("subject"), character=text("character"),
                       series=text("series"), tags=tuple(str(t).strip() for t in tags if str(t).strip()))


def _read_yaml(path: Path) -> list:
    data = load_yaml(path, "prompts")
    if isinstance(data, dict):
        data = data.get("prompts")
    if not isinstance(data, list):
        raise ConfigError([f"prompts: {path} must hold a list of entries, or a mapping with a "
                           "`prompts:` list"])
    return data


def _read_csv(path: Path) -> list:
    """Rows of a CSV prompt set: UTF-8 (a byte-order mark is dropped), any line endings."""
    reader = csv.DictReader(io.StringIO(read_text(path, "prompts"), newline=""))
    try:
        if not reader.fieldnames:
            raise ConfigError([f"prompts: {path} is empty; expected a header with "
                               f"{', '.join(ENTRY_FIELDS)}"])
        return [{k.strip(): v for k, v in row.items() if k and v not in (None, "")}
                for row in reader]
    except csv.Error as e:
        raise ConfigError([f"prompts: {path} is not a valid CSV file (line {reader.line_num}: "
                           f"{e})"]) from None


RESOLVER = re.compile(r"\$\{\s*[\w.]+\s*:")  # OmegaConf's `${oc.env:NAME}` call syntax


def _refuse_resolvers(raw: list, where: str) -> None:
    """Prompt sets are data: a `${resolver:...}` in them is never run, so it is refused rather
    than sent to the model as text."""
    for i, entry in enumerate(raw):
        fields = entry.items() if isinstance(entry, dict) else [("tags", entry)]
        for name, value in fields:
            texts = value if isinstance(value, (list, tuple)) else [value]
            if any(isinstance(t, str) and RESOLVER.search(t) for t in texts):
                raise ConfigError([f"{where}: entry {i} field {name}: {value!r} holds an OmegaConf "
                                   "resolver call; prompt sets are data and are never "
                                   "interpolated (nothing reads the environment or files); "
                                   "remove it"])


def available_sets(dirs: list[Path]) -> list[str]:
    names = set()
    for d in dirs:
        if d.is_dir():
            names |= {p.stem for p in d.iterdir() if p.suffix in (".yaml", ".yml", ".csv")}
    return sorted(names)


def load_prompt_set(name_or_path: str, dirs: list[Path], wildcards=None,
                    job_seed: int = 0) -> PromptSet:
    """Load a named set from `dirs` (conf/prompts/) or a YAML/CSV file path; with a
    `WildcardSpec`, entries holding dynamicprompts syntax are expanded (wildcards.py)."""
    candidates = [Path(name_or_path)]
    for d in dirs:
        candidates += [d / f"{name_or_path}{ext}" for ext in (".yaml", ".yml", ".csv")]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ConfigError([f"prompts: unknown prompt set {name_or_path!r}; named sets: "
                           f"{', '.join(available_sets(dirs)) or '(none)'}, or a path to a "
                           ".yaml or .csv file"])
    if path.suffix.lower() not in (".yaml", ".yml", ".csv"):
        raise ConfigError([f"prompts: {path} is not a .yaml, .yml or .csv prompt set"])
    raw = _read_csv(path) if path.suffix.lower() == ".csv" else _read_yaml(path)
    where = f"prompts ({path})"
    _refuse_resolvers(raw, where)
    pairs = list(enumerate(raw))  # (position in the file, raw entry)
    if wildcards is not None:
        from . import wildcards as W

        try:
            pairs = W.expand(raw, wildcards, job_seed, where)
        except ConfigError:
            raise
        except Exception as e:  # noqa: BLE001 - dynamicprompts' parse errors vary by release
            raise ConfigError([f"{where}: cannot expand wildcards: {e}"]) from None
    entries = [_entry(r, where, i) for i, r in pairs]
    if not entries:
        raise ConfigError([f"{where}: the prompt set is empty"])
    seen: dict[str, int] = {}
    for (i, _), e in zip(pairs, entries):
        if e.key in seen:
            raise ConfigError([f"{where}: entries {seen[e.key]} and {i} share the id {e.key!r}"])
        seen[e.key] = i
    return PromptSet(name=path.stem, source=str(path), entries=tuple(entries))
