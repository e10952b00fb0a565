"""The `scorers` list and the `scorer.<name>.<option>` overrides. The scorer configs and the
check of their options come from the catalogue (conf/scorer/ and the scorer registry)."""

from __future__ import annotations

from ..errors import ConfigError
from .collect import Collector
from .job import ScorerSpec


def parse_scorer_section(c: Collector, names, overrides, catalogue) -> tuple[ScorerSpec, ...]:
    configs = catalogue.scorers
    if names is None:
        names = []
    if not isinstance(names, (list, tuple)):
        c.add("scorers", "must be a list of scorer names")
        return ()
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        c.add("scorer", "must map scorer names to option overrides")
        overrides = {}
    for k in sorted(set(overrides) - {str(n) for n in names}):
        c.add(f"scorer.{k}", f"sets options of a scorer the job does not list in scorers: {list(names)}")
    specs = []
    for name in map(str, names):
        if name not in configs:
            c.add("scorers", f"unknown scorer {name!r}; allowed: {', '.join(sorted(configs)) or '(none)'}")
            continue
        extra = overrides.get(name) or {}
        if not isinstance(extra, dict):
            c.add(f"scorer.{name}", f"{extra!r} must map option names to values")
            continue
        if "kind" in extra:
            c.add(f"scorer.{name}.kind", "cannot be overridden; pick another scorer config")
        config = {**configs[name], **{k: v for k, v in extra.items() if k != "kind"}}
        problems = catalogue.scorer_problems(name, config)
        c.problems += problems
        if not problems:
            specs.append(ScorerSpec.make(name, config))
    if len({s.name for s in specs}) != len(specs):
        c.add("scorers", f"lists a scorer twice: {list(names)}")
    return tuple(specs)


def parse_scorers(names, overrides, catalogue) -> tuple[ScorerSpec, ...]:
    """Scorer specs for `animagine-batch score`, or a ConfigError listing the problems."""
    c = Collector()
    specs = parse_scorer_section(c, names, overrides, catalogue)
    if not names:
        c.add("scorers", f"name at least one scorer; allowed: {', '.join(sorted(catalogue.scorers))}")
    if c.problems:
        raise ConfigError(c.problems)
    return specs
