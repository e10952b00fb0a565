"""Command line. The only module that imports Hydra: it composes a job file with conf/ and hands
plain data to the rest of the package. Hydra and omegaconf are imported where a job is composed or
a scorer setting parsed, never at module level: the analysis commands (table, compare, regress,
grid, report) run where only the analysis dependencies are installed.

    animagine-batch run jobs/demo.yaml [key=value ...] [--dry-run]
    animagine-batch score RUN_DIR scorers=[clip,wd14] [scorer.clip.batch_size=32]
    animagine-batch table RUN_DIR --out results.parquet
    animagine-batch compare RUN_DIR [--by AXIS] [--metric M ...] [--reference LEVEL]
    animagine-batch regress BASELINE CANDIDATE [--metric M] [--margin X] [--ignore AXIS]
    animagine-batch grid RUN_DIR --x AXIS [--y AXIS] [--z AXIS] [--where EXPR]
    animagine-batch report RUN_DIR [--baseline DIR]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

import yaml

from .errors import ConfigError, ResultsError
from .jobspec.datafiles import check_job_file
from .rundir.layout import check_run_dir

PACKAGE_ROOT = Path(__file__).resolve().parent
# The packages that add their own subcommands (each part's add_parsers(subparsers)): the dataset
# export and the analysis commands, which need neither Hydra nor the generation stack. This
# module composes jobs (run, score) and hands the rest of the command line to them.
COMMAND_PARTS = ("animagine_batch.export.cli", "analysis.cli")


def _resource_dir(name: str) -> Path:
    """conf/ and jobs/: inside the package when installed, next to it in a checkout."""
    for candidate in (PACKAGE_ROOT / "_data" / name, PACKAGE_ROOT.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"cannot find the {name}/ folder of animagine-batch (looked next to and "
                      f"inside {PACKAGE_ROOT})")


def conf_dir() -> Path:
    return _resource_dir("conf")


def jobs_dir() -> Path:
    return _resource_dir("jobs")


def find_job(job: str) -> Path:
    path = Path(job)
    if path.is_file():
        return path.resolve()
    named = jobs_dir() / f"{job}.yaml"
    if path.suffix == "" and named.is_file():
        return named
    names = ", ".join(sorted(p.stem for p in jobs_dir().glob("*.yaml")))
    raise ConfigError(f"job file {job!r} not found; give a path to a job .yaml or one of the "
                      f"packaged jobs: {names}")


def sweep_overrides(overrides: list[str]) -> list[str]:
    """Sweep axes are open-ended, so they need no `+`: `sweep.grid={cfg:[5,7]}` replaces the
    grid, `sweep.grid.cfg=[5,7]` adds or replaces one axis (Hydra's `~` and `++` underneath).
    The execution options' old keys (`runner.dtype=`, now `pipeline.dtype`) are passed on for
    the parser to read under their new names."""
    from .jobspec.sections import MOVED

    out = []
    for o in overrides:
        key = o.split("=", 1)[0]
        if key in ("sweep.grid", "sweep.zip"):
            out += [f"~{key}", f"+{o}"]
        elif key.startswith(("sweep.grid.", "sweep.zip.", "scorer.")) or key in {
                f"runner.{k}" for k in MOVED}:
            out.append(f"++{o}")
        else:
            out.append(o)
    return out


def compose_job(job: str, overrides: list[str]) -> dict:
    """The job file composed with conf/ and the command-line overrides, as a plain dict.

    The job file is checked as data first (datafiles.check_job_file); interpolation is resolved
    only in command-line overrides, which are trusted.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = find_job(job)
    check_job_file(path, conf_dir())  # job files are data: no interpolation, no Hydra section
    searchpath = f"hydra.searchpath=[file://{conf_dir()}]"
    try:
        with initialize_config_dir(config_dir=str(path.parent), version_base=None):
            cfg = compose(config_name=path.stem,
                          overrides=[searchpath, *sweep_overrides(overrides)])
        raw = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except (HydraException, OmegaConfBaseException, ValueError, yaml.YAMLError) as e:
        text = " ".join(str(e).split())
        raise ConfigError(f"job {path}: {text}") from None
    raw.pop("hydra", None)
    flatten_axes(raw)
    if raw.get("name") == "???":
        raw["name"] = ""
    return raw


def flatten_axes(raw: dict) -> None:
    """`sweep.grid.hires.scale=[...]` composes to a nested mapping; axes are named by their
    dotted path (`hires.scale`), which is also their column name in the results."""
    sweep = raw.get("sweep")
    if not isinstance(sweep, dict):
        return
    for part in ("grid", "zip"):
        axes = sweep.get(part)
        if not isinstance(axes, dict) or not axes:
            continue
        flat: dict = {}

        def walk(prefix: str, value) -> None:
            if isinstance(value, dict) and value:
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else str(k), v)
            else:
                flat[prefix] = value

        walk("", axes)
        sweep[part] = flat


def group_configs(group: str) -> dict[str, dict]:
    """Every conf/<group>/*.yaml by name: model configs (levels of a `model` axis) and scorer
    configs (listed by name in `scorers`)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    out = {}
    for p in sorted((conf_dir() / group).glob("*.yaml")):
        try:
            out[p.stem] = OmegaConf.to_container(OmegaConf.load(p), resolve=True) or {}
        except (OmegaConfBaseException, yaml.YAMLError) as e:
            raise ConfigError(f"{group} config {p}: {e}") from None
    return out


def catalogue():
    """What jobs can name: conf/'s model and scorer configs, prompt sets and the registries."""
    from .runners import RUNNERS
    from .scorers.registry import option_problems
    from .jobspec.catalogue import Catalogue
    from .jobspec.prompt_sets import PromptLibrary

    return Catalogue(prompt_sets=PromptLibrary([conf_dir() / "prompt_sets"]),
                     models=group_configs("model"), scorers=group_configs("scorer"),
                     scorer_problems=option_problems, runners=tuple(RUNNERS))


def load_spec(job: str, overrides: list[str]):
    """(validated JobSpec, the composed config, the prompt library that loaded its prompt set)."""
    from .jobspec.parse import parse_job

    raw = compose_job(job, overrides)
    known = catalogue()
    return parse_job(raw, known), raw, known.prompt_sets


def cmd_run(args) -> int:
    from . import driver

    spec, raw, prompt_sets = load_spec(args.job, args.overrides)
    for warning in spec.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    check_run_dir(spec.run_dir)  # the dry run reads the run directory too
    plan = driver.make_plan(spec, prompt_sets)
    if args.dry_run:
        driver.dry_run(plan)
        return 0
    driver.run(plan, raw, verify=args.verify, extend=args.extend)
    return 0


def cmd_score(args) -> int:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from .score import rescore
    from .jobspec.scorer_section import parse_scorers

    try:
        settings = OmegaConf.to_container(OmegaConf.from_dotlist(args.settings), resolve=True)
    except (OmegaConfBaseException, ValueError) as e:
        raise ConfigError(f"score: {e}") from None
    unknown = sorted(set(settings) - {"scorers", "scorer", "device"})
    if unknown:
        raise ConfigError(f"score: unknown setting(s) {', '.join(unknown)}; allowed: "
                          "scorers=[...], scorer.<name>.<option>=..., device=auto|cpu|cuda")
    names = settings.get("scorers") or []
    specs = parse_scorers(names if isinstance(names, list) else [names],
                          settings.get("scorer"), catalogue())
    from .rundir.storage import location

    try:
        run = location(args.run_dir)
    except ValueError as e:
        raise ConfigError(f"run directory {args.run_dir}: {e}") from None
    if not run.is_dir():
        raise ConfigError(f"run directory {args.run_dir} does not exist")
    check_run_dir(run, named_by_user=True)
    counts = rescore(run, specs, str(settings.get("device", "auto")))
    print(", ".join(f"{k}: {v:,} scored" for k, v in counts.items()))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="animagine-batch", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run (or resume) a job file")
    r.add_argument("job", help="a job .yaml file, or the name of a packaged job (demo, ...)")
    r.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. generation.cfg=6 sweep.seeds=2")
    r.add_argument("--dry-run", action="store_true",
                   help="print task and unit counts, axis levels and the first prompts; write nothing")
    r.add_argument("--verify", action="store_true",
                   help="re-check finished images against their image_sha256 (and set unreadable "
                        "results parts aside) and generate what fails again")
    r.add_argument("--extend", action="store_true",
                   help="add this job's tasks to a run directory that holds another "
                        "configuration of the job (see README: Data safety)")
    r.set_defaults(func=cmd_run)
    sc = sub.add_parser("score", help="re-score a run's images (writes scores/<scorer>/)")
    sc.add_argument("run_dir")
    sc.add_argument("settings", nargs="*",
                    help="scorers=[clip,wd14] scorer.clip.batch_size=32 device=cuda")
    sc.set_defaults(func=cmd_score)
    for part in COMMAND_PARTS:
        importlib.import_module(part).add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra and (args.command != "run" or any(e.startswith("-") for e in extra)):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    from .rundir.read import show_warnings_plainly

    show_warnings_plainly()
    try:
        return args.func(args)
    except (ConfigError, ResultsError) as e:
        text = e.render() if isinstance(e, ConfigError) else f"error: {e}"
        print(text, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted: finished units are saved; rerun the same command to resume",
              file=sys.stderr)
        return 130


def _quiet_libraries() -> None:
    import logging
    import warnings

    for name in ("diffusers", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)


if __name__ == "__main__":
    sys.exit(main())
