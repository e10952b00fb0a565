"""What a job can name, handed to the parser by the command line: the model and scorer configs
of conf/, the scorer registry's check of a scorer config, the runner registry's names and the
prompt sets. The parser takes them as data, so the pure layer never imports the plug-ins."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .prompt_sets import PromptLibrary


def _no_problems(name: str, config: dict) -> list[str]:
    return []


@dataclass(frozen=True)
class Catalogue:
    prompt_sets: PromptLibrary
    models: dict[str, dict] = field(default_factory=dict)  # conf/model/<name>.yaml
    scorers: dict[str, dict] = field(default_factory=dict)  # conf/scorer/<name>.yaml
    # (config name, config) -> problems, by key (scorers.registry.option_problems)
    scorer_problems: Callable[[str, dict], list[str]] = _no_problems
    runners: tuple[str, ...] = ("local",)  # runners.RUNNERS
