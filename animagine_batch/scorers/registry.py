"""Scorer registry: scorer kinds -> classes, and scorer configs (conf/scorer/<name>.yaml) -> specs.

The kinds are found in the modules of this package: every class with a `kind` (one module per
scorer, holding the scorer and the builder of its offline stand-in). A scorer config names its
`kind` and that kind's options; the offline stand-ins are configs of the same kinds
(`tiny_clip` is kind `clip` with an embedded model), so they run through the same code as the
real scorers.

A scorer class has `kind`, `version`, `higher_is_better` (column -> bool), `options` (option ->
check: any other option is refused), `columns(options)`
(column -> Arrow type name), `check(name, options)` (cheap availability check before any work),
an `__init__(name, options, device)` that loads weights once, and
`__call__(images, rows) -> {column: list}` over a batch of PIL images and their result rows,
`preprocessing` (what is done to an image before the model sees it, for the provenance) and
`reference_outputs(images)` (its raw outputs on the reference images, `reference.py`) with a
`reference_tolerance`.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil

from ..jobspec.job import ScorerSpec


@functools.cache
def kinds() -> dict[str, type]:
    """Scorer kind -> class: each class of this package's modules that declares a `kind`."""
    found: dict[str, type] = {}
    for info in pkgutil.iter_modules(importlib.import_module(__package__).__path__):
        module = importlib.import_module(f"{__package__}.{info.name}")
        for obj in vars(module).values():
            if isinstance(obj, type) and obj.__module__ == module.__name__ \
                    and getattr(obj, "kind", None):
                found[obj.kind] = obj
    return dict(sorted(found.items()))


def scorer_class(kind: str):
    if kind not in kinds():
        raise KeyError(f"unknown scorer kind {kind!r}; allowed: {', '.join(kinds())}")
    return kinds()[kind]


def option_problems(name: str, config: dict) -> list[str]:
    """Every problem of a scorer config (its kind's options only, each typed), by key."""
    from .base import option_problems as problems

    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in kinds():
        return [f"scorer config {name}: kind {kind!r} is not one of {', '.join(kinds())}"]
    cls = scorer_class(kind)
    found = problems(name, config, cls.options)
    sources = ("embedded", "path", "id") if "id" in cls.options else ("embedded", "model")
    if not any(config.get(k) for k in sources):
        found.append(f"scorer.{name}: needs one of {', '.join(sources)}")
    return found


def columns(spec: ScorerSpec) -> dict[str, str]:
    return scorer_class(spec.kind).columns(spec.options)


def check(spec: ScorerSpec) -> None:
    """Cheap availability check before any work (raises ConfigError naming the scorer)."""
    scorer_class(spec.kind).check(spec.name, spec.options)


def build(spec: ScorerSpec, device: str):
    """Load a scorer's weights (raises ConfigError naming the scorer when they cannot be had)
    and check it on the reference images (`reference.check`). The loaded scorer's
    `provenance` holds the preprocessing it uses and the check's result."""
    from . import reference

    scorer = scorer_class(spec.kind)(spec.name, spec.options, device)
    scorer.provenance = {"preprocessing": scorer.preprocessing,
                         "reference_check": reference.check(spec, scorer, device)}
    return scorer


def describe(spec: ScorerSpec, loaded=None) -> dict:
    """Provenance of a scorer: kind, version, model source, licence and its columns; with the
    `loaded` scorer, also the preprocessing it uses and its reference check."""
    cls = scorer_class(spec.kind)
    opts = spec.options
    return {"kind": spec.kind, "version": cls.version, "licence": opts.get("licence"),
            "higher_is_better": dict(cls.higher_is_better), "columns": list(columns(spec)),
            **{k: opts.get(k) for k in ("id", "revision", "path", "model", "pretrained", "embedded",
                                        "model_name", "resize_mode") if opts.get(k) is not None},
            **(getattr(loaded, "provenance", None) or {})}


def write_shipped(names: tuple[str, ...] = ("tiny_aesthetic", "tiny_clip", "tiny_wd14",
                                            "tiny_anime_quality", "tiny_anime_era")) -> None:
    """Measure the stand-ins (on the CPU) and rewrite their shipped reference files."""
    from pathlib import Path

    import yaml

    from . import reference

    conf = Path(__file__).resolve().parents[2] / "conf" / "scorer"
    for name in names:
        spec = ScorerSpec.make(name, yaml.safe_load((conf / f"{name}.yaml").read_text()))
        scorer = scorer_class(spec.kind)(spec.name, spec.options, "cpu")
        values = reference.outputs(scorer, reference.images())
        tolerance = float(getattr(scorer, "reference_tolerance", reference.DEFAULT_TOLERANCE))
        path = reference.SHIPPED / f"{name}.json"
        reference.write(path, reference.record(name, reference.source(spec, scorer.version),
                                               values, tolerance, "cpu"))
        print(f"{name}: {values.shape[0]} images x {values.shape[1]} outputs -> {path}")


if __name__ == "__main__":
    write_shipped()
