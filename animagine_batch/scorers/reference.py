"""The reference-image guard: every scorer scores a fixed set of synthetic images when it is
built (on each worker at the start of a run, and at the start of `score`), and its raw outputs
are compared with the expected ones. A drift beyond the tolerance stops the run with a message
naming the scorer: the weights, the preprocessing or a library changed, and its scores would not
mean what earlier ones meant. The check's result goes into the run's provenance.

Expected outputs of the offline stand-ins are shipped in `references/*.json`. A scorer whose
outputs are not shipped (a real model: no hub is reachable where the project is built) records
them in the cache folder (`<cache>/scorer-references/`) the first time its source (kind, version,
weights and the options that change its outputs) is used on a machine, and is checked against
that record on every later use. `scorer.<name>.reference` is `check` (the default), `record`
(record anew, after a change made on purpose) or `off`.

    python -m animagine_batch.scorers.registry    # rewrite the shipped stand-in references
"""

from __future__ import annotations

import hashlib
import json
import platform
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from ..cache import cache_dir
from ..errors import ConfigError

SHIPPED = Path(__file__).parent / "references"
# options that decide a scorer's raw outputs (batch size, thresholds, licence do not)
SOURCE_KEYS = ("id", "revision", "path", "model", "pretrained", "embedded", "model_name",
               "resize_mode")
DEFAULT_TOLERANCE = 0.02
LIBRARIES = ("numpy", "pillow", "torch", "transformers", "open_clip_torch", "onnxruntime",
             "onnxruntime-gpu")


def images() -> list[Image.Image]:
    """Five RGB images built from numbers (no files): gradients, a checkerboard, seeded noise
    and colour bars, square and not, so resizing, cropping and padding all matter."""
    ramp = np.linspace(0, 255, 96)
    horizontal = np.stack([np.tile(ramp, (64, 1)), np.tile(ramp[::-1], (64, 1)),
                           np.full((64, 96), 128.0)], axis=-1)
    vertical = horizontal.transpose(1, 0, 2)[:, :64][:, ::-1]
    squares = (np.indices((80, 80)) // 8).sum(axis=0) % 2 * 255.0
    checker = np.stack([squares, squares, 255 - squares], axis=-1)
    noise = np.random.default_rng(20240316).integers(0, 256, (72, 72, 3))
    bars = np.repeat(np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0],
                               [0, 255, 255], [255, 0, 255], [40, 40, 40], [230, 230, 230]],
                              float), 16, axis=0)[None].repeat(48, axis=0)
    return [Image.fromarray(np.asarray(a).astype(np.uint8), "RGB")
            for a in (horizontal, vertical, checker, noise, bars)]


def source(spec, version: str) -> dict:
    """What a scorer's outputs depend on: its kind, version and the options naming weights."""
    opts = spec.options
    return {"kind": spec.kind, "version": version,
            **{k: opts[k] for k in SOURCE_KEYS if opts.get(k) is not None}}


def outputs(scorer, pictures: list[Image.Image]) -> np.ndarray:
    """The scorer's raw outputs on the images, one row per image (its `reference_outputs`)."""
    values = np.asarray(scorer.reference_outputs(pictures), dtype=np.float64)
    return values.reshape(len(pictures), -1)


def _record_path(src: dict) -> Path:
    digest = hashlib.sha256(json.dumps(src, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "scorer-references" / f"{src['kind']}-{digest}.json"


def _shipped(src: dict) -> tuple[dict | None, Path | None]:
    for path in sorted(SHIPPED.glob("*.json")):
        ref = json.loads(path.read_text())
        if ref.get("source") == src:
            return ref, path
    return None, None


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def record(name: str, src: dict, values: np.ndarray, tolerance: float, device: str) -> dict:
    return {"scorer": name, "source": src, "tolerance": tolerance, "values": values.tolist(),
            "recorded": {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         "device": device, "versions": _versions()}}


def write(path: Path, ref: dict) -> None:
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(ref, fh, indent=1)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def check(spec, scorer, device: str) -> dict:
    """Score the reference images and compare; returns the result for the provenance, or
    raises ConfigError naming the scorer when an output drifted beyond the tolerance."""
    how = spec.options.get("reference", "check")
    if how == "off":
        return {"status": "off"}
    try:
        values = outputs(scorer, images())
    except Exception as e:  # noqa: BLE001 - a scorer that cannot score them is not valid
        raise ConfigError(f"scorer {spec.name!r}: cannot score its reference images "
                          f"({type(e).__name__}: {e})") from None
    src = source(spec, scorer.version)
    tolerance = float(getattr(scorer, "reference_tolerance", DEFAULT_TOLERANCE))
    path = _record_path(src)
    ref, where = (json.loads(path.read_text()), path) if path.is_file() else _shipped(src)
    if how == "record" or ref is None:
        try:
            write(path, record(spec.name, src, values, tolerance, device))
        except OSError as e:  # a read-only cache: the scorer runs, the provenance says so
            return {"status": "not recorded", "reason": f"{path}: {e.strerror or e}"}
        return {"status": "recorded", "reference": str(path), "tolerance": tolerance}
    expected = np.asarray(ref["values"], dtype=np.float64)
    tolerance = float(ref.get("tolerance", tolerance))
    drift = (float(np.abs(values - expected).max()) if expected.shape == values.shape
             else float("inf"))
    if not drift <= tolerance:
        raise ConfigError(_drift_message(spec.name, values, expected, drift, tolerance, ref,
                                         where))
    return {"status": "passed", "max_drift": drift, "tolerance": tolerance,
            "reference": where.name if where.parent == SHIPPED else str(where)}


def _drift_message(name, values, expected, drift, tolerance, ref, where) -> str:
    if expected.shape != values.shape:
        what = f"{values.shape[1]} outputs per image where {expected.shape[1]} were recorded"
    else:
        i, j = np.unravel_index(np.abs(values - expected).argmax(), values.shape)
        what = (f"largest drift {drift:.4g} (image {i + 1}, output {j + 1}: "
                f"{values[i, j]:.6g}, expected {expected[i, j]:.6g})")
    then = ref.get("recorded", {})
    changed = [f"{k} {v} (was {then.get('versions', {}).get(k)})"
               for k, v in _versions().items() if then.get("versions", {}).get(k) not in (None, v)]
    libs = f"; libraries changed since: {', '.join(changed)}" if changed else ""
    return (f"scorer {name!r}: its reference images no longer score as expected: {what}, "
            f"beyond the tolerance {tolerance:g} (expected outputs: {where}, recorded "
            f"{then.get('date', '?')} on {then.get('device', '?')}{libs}). The weights, the "
            f"preprocessing or a library changed, so its scores would not mean what they meant. "
            f"Check the scorer's weights (scorer.{name}.path / id / revision); if the change is "
            f"intended, record the new outputs with scorer.{name}.reference=record (scores made "
            f"before and after it are not comparable).")


def summary(provenance: dict) -> str:
    """One line for the terminal: each scorer's reference check."""
    return "reference checks: " + ", ".join(
        f"{name} {(p or {}).get('reference_check', {}).get('status', 'not run')}"
        for name, p in provenance.items())
