"""Prompt sets: YAML or CSV files of entries with the fields `id`, `subject` (`1girl`, `1boy`,
...), `character`, `series` and `tags` (general tags), named sets in `conf/prompt_sets/` or
given by path. `PromptLibrary` loads each set a job names once, so the parser's count and the
plan's tasks come from the same entries.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from . import tags as T
from .datafiles import load_yaml, read_text
from .prompts import long_tag

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
    """Load a named set from `dirs` (conf/prompt_sets/) or a YAML/CSV file path; with a
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


class PromptLibrary:
    """The prompt sets a job may name: sets of `dirs` by name, or any file by path. A set is
    loaded (and its wildcards expanded) once per name, wildcard settings and seed: validation
    counts its entries and the plan expands the same ones, even if the file changes between."""

    def __init__(self, dirs: list[Path]):
        self.dirs = [Path(d) for d in dirs]
        self._loaded: dict[tuple, PromptSet] = {}

    def load(self, name_or_path: str, wildcards=None, job_seed: int = 0) -> PromptSet:
        key = (name_or_path, wildcards, job_seed)
        if key not in self._loaded:
            self._loaded[key] = load_prompt_set(name_or_path, self.dirs, wildcards, job_seed)
        return self._loaded[key]
