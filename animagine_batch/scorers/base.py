"""Helpers shared by scorers: model sources, load errors, batching."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

from ..errors import ConfigError


# Option checks of the scorer configs: each takes a value and says what is wrong with it (or
# None). A scorer class lists its options as {name: check}; any other option is refused.


def text(value) -> str | None:
    return None if value is None or (isinstance(value, str) and value.strip()) else \
        "must be a non-empty string or null"


def positive_int(value) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    return None if ok else "must be an integer >= 1"


def probability(value) -> str | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
    return None if ok else "must be a number from 0 to 1"


def switch(value) -> str | None:
    return None if isinstance(value, bool) else "must be true or false"


def embedded(value) -> str | None:
    return None if value in (None, "tiny") else "must be tiny (the offline stand-in) or null"


def hub_id(value) -> str | None:
    if value is None:
        return None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value if isinstance(value, str) else repr(value))
    except HFValidationError as e:
        return f"is not a Hugging Face repo id ({e})"
    return None


def reference(value) -> str | None:
    return None if value in ("check", "record", "off") else "must be check, record or off"


COMMON = {"licence": text, "batch_size": positive_int, "embedded": embedded,
          "reference": reference}


def option_problems(name: str, options: dict, allowed: dict) -> list[str]:
    """Every unknown option (`_target_` among them) and every bad value, by key."""
    problems = []
    for key in sorted(set(options) - set(allowed), key=str):
        problems.append(f"scorer.{name}.{key}: unknown option; allowed: "
                        f"{', '.join(sorted(allowed))}")
    for key, check in allowed.items():
        if key in options and (problem := check(options[key])):
            problems.append(f"scorer.{name}.{key}: {options[key]!r} {problem}")
    return problems


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), max(1, size)):
        yield items[i : i + size]


def onnx_session(path: Path, device: str):
    """An onnxruntime session on the CUDA provider when the device is a GPU and onnxruntime
    has it, else on the CPU."""
    import onnxruntime as ort

    providers = ["CPUExecutionProvider"]
    if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    return ort.InferenceSession(str(path), providers=providers)


def load_error(name: str, what: str, err: Exception, hint: str) -> ConfigError:
    first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
    return ConfigError(f"scorer {name!r}: cannot load {what} ({first}). {hint}")


def local_or_hub(options: dict) -> tuple[str, str | None]:
    """(source, revision): a local folder (`path`) wins over a hub id (`id` + `revision`)."""
    path = options.get("path")
    if path:
        p = Path(path).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        return str(p), None
    return str(options["id"]), options.get("revision")


def offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def require_cached(name: str, repo: str, filenames: tuple[str, ...], revision: str | None,
                   hint: str) -> None:
    """With the hub offline, one of `filenames` of `repo` must be in the local cache."""
    if not offline():
        return
    from huggingface_hub import try_to_load_from_cache

    for f in filenames:
        if isinstance(try_to_load_from_cache(repo, f, revision=revision or "main"), str):
            return
    raise ConfigError(f"scorer {name!r}: {repo!r} (revision {revision or 'main'}) is not in the "
                      f"local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE=1). {hint}")
