"""Wildcards and variants in dynamicprompts syntax, expanded when a prompt set is loaded.

An entry whose fields hold `{a|b}`, `{2$$a|b|c}` or `__name__` (a line of `<folder>/name.txt`)
becomes one entry per variant, with id `<id>~<n>`. Combinatorial mode yields every variant (or
the first `variants`); random mode draws `variants` of them with a seed derived from the job and
the entry, so rerunning a job gives the same prompts. Duplicate variants are dropped: two equal
prompts would be the same task. The expanded prompts, not the templates, are what runs and
what the results store.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from ..errors import ConfigError

SYNTAX = re.compile(r"\{[^{}]*\}|__[\w./*?-]+__")  # variants, wildcards (and their globs)
WILDCARD = re.compile(r"__([\w./*?-]+)__")
FIELD_SEP = "\x1f"  # joins an entry's fields into one template; never in prompt text
FIELDS = ("subject", "character", "series", "tags")
COMBINATORIAL_LIMIT = 100_000
FOLDER_LIMIT = 10_000  # files a wildcard folder may hold (dynamicprompts reads the whole tree)
# Characters dynamicprompts gives a meaning that entries never use: `#`, `//` and `/* */` are
# comments (`series: "#compass"` silently dropped the rest of the entry), `${` and `%{` start
# variables and wrap commands, a lone `$` or a `{` that is never closed fail to parse. They are
# swapped for private-use characters before expansion and back after; `$$` (the `{2$$a|b}`
# count), closed `{...}` variants and the names of `__wildcards__` keep their meaning.
LITERAL = {"#": "\uf8f0", "/": "\uf8f1", "%": "\uf8f2", "$": "\uf8f3", "{": "\uf8f4"}
RESTORE = str.maketrans({v: k for k, v in LITERAL.items()})


def has_syntax(text: str) -> bool:
    return bool(SYNTAX.search(text))


def _template(raw) -> str:
    if isinstance(raw, str):
        return FIELD_SEP * 3 + raw
    tags = raw.get("tags") or ""
    if isinstance(tags, (list, tuple)):
        tags = ", ".join(str(t) for t in tags)
    return FIELD_SEP.join("" if raw.get(f) is None else str(raw.get(f)) for f in FIELDS[:3]) \
        + FIELD_SEP + str(tags)


def protect(template: str) -> str:
    """The template with the characters of LITERAL that are text, not syntax, swapped out."""
    opened: list[int] = []
    for i, ch in enumerate(template):
        if ch == "{":
            opened.append(i)
        elif ch == "}" and opened:
            opened.pop()
    unclosed = set(opened)
    out, last = [], 0
    for m in list(WILDCARD.finditer(template)) + [None]:
        end = m.start() if m else len(template)
        for i in range(last, end):
            ch = template[i]
            lone_dollar = ch == "$" and "$" not in (template[i - 1:i], template[i + 1:i + 2])
            text = ch in "#/%" or lone_dollar or (ch == "{" and i in unclosed)
            out.append(LITERAL[ch] if text else ch)
        if m:
            out.append(m.group(0))
            last = m.end()
    return "".join(out)


def _manager(spec):
    from dynamicprompts.wildcards import WildcardManager

    return WildcardManager(Path(spec.folder).expanduser()) if spec.folder else WildcardManager()


def wildcard_names(template: str) -> list:
    """The wildcard names of a template as dynamicprompts parses them (a glob such as
    `colors/*` stays a glob; a name built from a variable is a command, not a string)."""
    import dataclasses

    from dynamicprompts.commands import WildcardCommand
    from dynamicprompts.parser.parse import parse

    names, stack = [], [parse(template)]
    while stack:
        node = stack.pop()
        if isinstance(node, WildcardCommand):
            names.append(node.wildcard)
        if dataclasses.is_dataclass(node):
            stack += [getattr(node, f.name) for f in dataclasses.fields(node)]
        elif isinstance(node, (list, tuple)):
            stack += list(node)
        elif isinstance(node, dict):
            stack += list(node.values())
    return names


def _escapes(name: str) -> bool:
    return ".." in name or "\\" in name or name.startswith(("/", "~")) \
        or bool(re.match(r"[A-Za-z]:", name))


def _check_wildcards(template: str, manager, spec, where: str) -> None:
    """Every wildcard must name (or glob) files inside wildcards.folder that hold values."""
    names = wildcard_names(template)
    if not names:
        return
    built = [n for n in names if not isinstance(n, str)]
    if built:
        raise ConfigError([f"{where} builds a wildcard name from a variable; name the wildcard "
                           "file itself (__name__) so that it is checked before the run"])
    shown = ", ".join(f"__{n}__" for n in sorted(set(names)))
    escaping = sorted({n for n in names if _escapes(n)})
    if escaping:
        raise ConfigError([f"{where} uses wildcard(s) {', '.join(f'__{n}__' for n in escaping)}: "
                           "a wildcard names a file inside wildcards.folder (`__hair__`, "
                           "`__colors/eyes__`, `__colors/*__`); `..`, `~` and absolute paths "
                           "are refused"])
    if not spec.folder:
        raise ConfigError([f"{where} uses wildcard(s) {shown} but wildcards.folder is not set "
                           "(a folder of <name>.txt files)"])
    missing = sorted({n for n in names if not manager.get_values(n)})
    if missing:
        known = manager.get_collection_names()
        raise ConfigError([f"{where} uses wildcard(s) {', '.join(f'__{n}__' for n in missing)} "
                           f"not found in wildcards.folder {spec.folder}; available: "
                           f"{', '.join(sorted(known)) or '(none)'} (a wildcard must match a file "
                           "that holds values)"])


def check_folder(folder: Path) -> list[str]:
    """Why a wildcard folder cannot be read as data: a link to a file outside it, or a YAML
    wildcard file that is not plain data (dynamicprompts reads .txt, .yaml and .json files)."""
    from .datafiles import load_yaml

    root = folder.resolve()
    problems = []
    for n, path in enumerate(folder.rglob("*")):
        if n == FOLDER_LIMIT:
            return [f"{folder} holds more than {FOLDER_LIMIT:,} files; point wildcards.folder at "
                    "a folder of wildcard files"]
        try:
            target = path.resolve()
        except (OSError, RuntimeError):  # a link loop
            target = None
        if path.is_symlink() and (target is None or root not in target.parents):
            problems.append(f"{path} links to {target or 'itself'}, outside the folder; wildcard "
                            "files must lie inside it")
        elif path.suffix == ".yaml" and path.is_file():
            try:
                load_yaml(path, "wildcards.folder")
            except ConfigError as e:
                problems += [p.removeprefix("wildcards.folder: ") for p in e.problems]
    return problems


def entry_seed(job_seed: int, key: str) -> int:
    digest = hashlib.sha256(f"animagine-batch|wildcards|{job_seed}|{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def expand(raw_entries: list, spec, job_seed: int, where: str) -> list[tuple[int, object]]:
    """Raw prompt-set entries -> (position in the file, raw entry) with every variant spelled
    out; the position gives an entry without an id its key and names it in error messages."""
    from dynamicprompts.generators import CombinatorialPromptGenerator, RandomPromptGenerator

    pairs = list(enumerate(raw_entries))
    if not any(has_syntax(_template(r)) for r in raw_entries if isinstance(r, (str, dict))):
        return pairs
    manager = _manager(spec)
    out = []
    for i, raw in pairs:
        if isinstance(raw, dict) and set(raw) - {"id", *FIELDS}:
            out.append((i, raw))  # unknown fields: prompts._entry reports them
            continue
        if not isinstance(raw, (str, dict)) or not has_syntax(template := _template(raw)):
            out.append((i, raw))
            continue
        base = raw.get("id") if isinstance(raw, dict) and raw.get("id") else None
        if base is None and isinstance(raw, dict) and raw.get("character") \
                and not has_syntax(str(raw["character"])):
            base = str(raw["character"])
        base = str(base or f"p{i:04d}")
        if any(ch in template for ch in LITERAL.values()):
            raise ConfigError([f"{where}: entry {i} holds a private-use character "
                               f"({', '.join(f'U+{ord(c):04X}' for c in LITERAL.values())}) that "
                               "wildcard expansion reserves; remove it"])
        template = protect(template)  # checked as it expands: `#` is text, not a comment
        _check_wildcards(template, manager, spec, f"{where}: entry {i}")
        if spec.mode == "random":
            gen = RandomPromptGenerator(manager, seed=entry_seed(job_seed if spec.seed is None
                                                                 else spec.seed, base))
            variants = gen.generate(template, spec.variants or 1)
        else:
            gen = CombinatorialPromptGenerator(manager)
            variants = gen.generate(template, max_prompts=spec.variants or COMBINATORIAL_LIMIT)
        for n, text in enumerate(dict.fromkeys(v.translate(RESTORE) for v in variants)):
            fields = dict(zip(FIELDS, text.split(FIELD_SEP)))
            out.append((i, {"id": f"{base}~{n}", **{k: v for k, v in fields.items() if v.strip()}}))
    return out
