"""Files that are data, never code: job files, prompt sets and run directories are passed
around between people.

`read_text` decodes UTF-8 (a byte-order mark is accepted) and names the file and the first bad
byte otherwise; `load_yaml` reads YAML with the safe loader and refuses an alias bomb (a small
file whose anchors expand to millions of nodes) before building it; `check_job_file` refuses
what would let a job file run code, read the environment or reach files outside `conf/` and its
own folder: OmegaConf interpolation (`${oc.env:...}`, `${oc.decode:...}`), a `hydra:` section,
instantiation keys (`_target_`) and `defaults` entries that are not plain config names.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ..errors import ConfigError

NODE_LIMIT = 2_000_000  # expanded YAML nodes; the largest shipped prompt set has 927
INSTANTIATION_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
CONFIG_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
DATA_FOLDERS = ("prompt_sets", "wildcards")  # folders of conf/ that hold data, not config groups
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_text(path: Path, what: str) -> str:
    """The file as text: UTF-8, with or without a byte-order mark."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"{what}: cannot read {path}: {e.strerror or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what}: {path} is not UTF-8 text (byte 0x{data[e.start]:02x} at "
                          f"offset {e.start}); save it as UTF-8") from None


def _expanded_size(root) -> int:
    """Nodes the document has once every alias is expanded (computed without expanding);
    -1 when an alias contains itself."""
    sizes: dict[int, int] = {}
    stack: list[tuple[object, bool]] = [(root, False)]
    active: set[int] = set()
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes and not children_done:
            continue
        kids = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if children_done:
            active.discard(key)
            sizes[key] = 1 + sum(sizes[id(k)] for k in kids)
            continue
        if key in active:
            return -1
        active.add(key)
        stack.append((node, True))
        for k in kids:
            if id(k) in active:
                return -1
            if id(k) not in sizes:
                stack.append((k, False))
    return sizes[id(root)]


def load_yaml(path: Path, what: str):
    """YAML data of a file (safe loader: tags cannot build objects), or a ConfigError."""
    text = read_text(path, what)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        size = _expanded_size(node)
        if size < 0 or size > NODE_LIMIT:
            why = ("an alias refers to itself" if size < 0 else
                   f"its aliases expand to {size:,} nodes, more than {NODE_LIMIT:,}")
            raise ConfigError(f"{what}: {path} is refused: {why} (a YAML alias bomb?); write the "
                              "data out, or use a CSV file for a large prompt set")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        text = " ".join(str(e).split())
        raise ConfigError(f"{what}: {path} is not valid YAML: {text}") from None
    finally:
        loader.dispose()


def _walk(value, key: str):
    """(key path, mapping key or None, value) of every node below `value`."""
    stack = [(key, value)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, dict):
            for k, item in v.items():
                sub = f"{path}.{k}" if path else str(k)
                yield sub, k, item
                stack.append((sub, item))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                sub = f"{path}[{i}]"
                yield sub, None, item
                stack.append((sub, item))


def _config_files(conf: Path, folder: Path, name: str) -> list[Path]:
    """Files Hydra may read for a config name: the job's folder comes before conf/."""
    return [p for p in (folder / f"{name}.yaml", conf / f"{name}.yaml") if p.is_file()]


def _defaults(entries, where: str, conf: Path, folder: Path) -> tuple[list[str], list[Path]]:
    """Problems of a defaults list, and the files of the job's own folder it pulls in."""
    groups = sorted(p.name for p in conf.iterdir()
                    if p.is_dir() and p.name not in DATA_FOLDERS and any(p.glob("*.yaml")))
    if not isinstance(entries, list):
        return [f"{where}: defaults: must be a list such as [base, override /model: tiny, "
                "_self_]"], []
    problems: list[str] = []
    pulled: list[Path] = []
    for i, entry in enumerate(entries):
        key = f"{where}: defaults[{i}]"
        if entry == "_self_":
            continue
        if isinstance(entry, str):
            group, _, option = entry.lstrip("/").rpartition("/")
            options, optional = [option], False
        elif isinstance(entry, dict) and len(entry) == 1:
            (head, value), = entry.items()
            words = str(head).split()
            if any(w not in ("override", "optional") for w in words[:-1]) or not words:
                problems.append(f"{key}: {entry!r} is not a defaults entry; write "
                                "`override /GROUP: NAME`")
                continue
            group = words[-1].lstrip("/").split("@", 1)[0]
            options = value if isinstance(value, list) else [value]
            optional = "optional" in words
        else:
            problems.append(f"{key}: {entry!r} is not a defaults entry; write a config name, "
                            "`override /GROUP: NAME` or _self_")
            continue
        if group.split("/", 1)[0] == "hydra":
            problems.append(f"{key}: {entry!r}: a job file cannot configure Hydra")
            continue
        if group and group not in groups:
            problems.append(f"{key}: unknown config group {group!r}; allowed: {', '.join(groups)}")
            continue
        for option in options:
            if option is None and group:
                continue
            name = f"{group}/{option}" if group else str(option)
            files = (_config_files(conf, folder, name)
                     if isinstance(option, str) and CONFIG_NAME.fullmatch(option) else [])
            if not files and not (optional and isinstance(option, str)
                                  and CONFIG_NAME.fullmatch(option)):
                known = sorted(p.stem for p in (conf / group).glob("*.yaml")) if group else \
                    sorted({p.stem for p in (*conf.glob("*.yaml"), *folder.glob("*.yaml"))})
                problems.append(f"{key}: {option!r} is not a config name of "
                                f"{group + '/' if group else 'conf/ or the job folder'}; a "
                                f"defaults entry names a config, never a path; allowed: "
                                f"{', '.join(known)}")
                continue
            pulled += [f for f in files if f.parent.resolve() != conf.resolve()
                       and conf.resolve() not in f.resolve().parents]
    return problems, pulled


def _file_problems(path: Path, conf: Path, folder: Path) -> tuple[list[str], list[Path]]:
    data = load_yaml(path, "job")
    if data is None:
        return [], []
    if not isinstance(data, dict):
        return [f"job {path}: must be a mapping of settings"], []
    where = f"job {path}"
    problems = []
    if "hydra" in data:
        problems.append(f"{where}: hydra: a job file cannot configure Hydra (the section would "
                        "be ignored, or change where configs are read from); remove it")
    for key, name, value in _walk(data, ""):
        if name in INSTANTIATION_KEYS:
            problems.append(f"{where}: {key}: {name} is refused: job files name plug-ins by "
                            "registry name and never import or instantiate code")
        texts = [t for t in (name, value) if isinstance(t, str)]
        if any("${" in t for t in texts):
            problems.append(f"{where}: {key}: {value!r} uses interpolation; job files are data "
                            "and are never interpolated (a resolver such as oc.env or oc.decode "
                            "could read the environment or files). Write the value itself, or "
                            "give it on the command line (key=value), which is trusted")
    pulled: list[Path] = []
    if "defaults" in data:
        found, pulled = _defaults(data["defaults"], where, conf, folder)
        problems += found
    return problems, pulled


def check_job_file(path: Path, conf: Path) -> None:
    """A job file, and every file of its own folder that its defaults list pulls in, checked as
    data before Hydra reads it: a ConfigError lists every problem."""
    folder = path.parent
    problems: list[str] = []
    todo, seen = [path], set()
    while todo:
        p = todo.pop()
        if p.resolve() in seen:
            continue
        seen.add(p.resolve())
        found, pulled = _file_problems(p, conf, folder)
        problems += found
        todo += pulled
    if problems:
        raise ConfigError(problems)
