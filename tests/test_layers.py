"""The import contract of the layers (README, Development): read from every import statement of
every module (those inside functions too), and by running the pure layers where the heavy
libraries cannot be imported."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

HEAVY = ("torch", "diffusers", "transformers", "open_clip", "onnxruntime", "ray", "hydra",
         "omegaconf")
STAGES = ("animagine_batch.cli", "animagine_batch.driver", "animagine_batch.score",
          "animagine_batch.export")
# What the pure job-spec layer may import beyond the standard library and its own package.
JOBSPEC_MAY = ("yaml", "dynamicprompts", "safetensors", "huggingface_hub",
               "animagine_batch.errors", "animagine_batch.cache", "animagine_batch.jobspec")


def modules() -> dict[str, Path]:
    """Every module of the two packages, by dotted name."""
    out = {}
    for package in ("animagine_batch", "analysis"):
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path) -> set[str]:
    """The absolute names a module imports, anywhere in it (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([base] if base else [])])
            for a in node.names:  # `from . import x` imports the module x, `from .m import y` m
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in ALL_NAMES else base)
    return found


ALL = modules()
ALL_NAMES = set(ALL)
GRAPH = {m: {i for i in imports(m, p) if i in ALL and i != m} for m, p in ALL.items()}


def _under(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _broken(layer: str, allowed, forbidden=()) -> dict[str, list[str]]:
    """Modules of `layer` and the imports they may not make."""
    out = {}
    for m, p in ALL.items():
        if not _under(m, layer):
            continue
        bad = sorted(i for i in imports(m, p) if (forbidden and _under(i, *forbidden))
                     or (allowed is not None and not _allowed(i, allowed)))
        if bad:
            out[m] = bad
    return out


def _allowed(name: str, allowed) -> bool:
    top = name.split(".")[0]
    return top in sys.stdlib_module_names or top == "__future__" or _under(name, *allowed)


def test_the_job_spec_layer_imports_the_standard_library_yaml_and_itself():
    assert _broken("animagine_batch.jobspec", JOBSPEC_MAY) == {}


def test_the_run_directory_never_imports_the_engine_runners_analysis_or_stages():
    assert _broken("animagine_batch.rundir", None, (
        "animagine_batch.engine", "animagine_batch.runners", "animagine_batch.scorers",
        "animagine_batch.offline", "analysis", *STAGES, *HEAVY)) == {}


def test_engine_scorers_and_offline_never_import_runners_stages_or_analysis():
    for layer in ("animagine_batch.engine", "animagine_batch.scorers", "animagine_batch.offline"):
        assert _broken(layer, None, ("animagine_batch.runners", "analysis", *STAGES, "ray",
                                     "hydra", "omegaconf")) == {}, layer


def test_ray_only_in_the_ray_runner_and_hydra_only_in_the_command_line():
    ray = sorted(m for m, p in ALL.items() if any(_under(i, "ray") for i in imports(m, p)))
    hydra = sorted(m for m, p in ALL.items()
                   if any(_under(i, "hydra", "omegaconf") for i in imports(m, p)))
    assert ray == ["animagine_batch.runners.ray"] and hydra == ["animagine_batch.cli"]


def test_analysis_reads_only_the_run_directory_and_the_tag_vocabulary():
    allowed = ("analysis", "animagine_batch.rundir", "animagine_batch.jobspec.tags",
               "animagine_batch.jobspec.tag_levels", "numpy", "pandas", "pyarrow", "scipy",
               "matplotlib", "jinja2", "markupsafe", "PIL", "choix", "krippendorff", "tqdm",
               "yaml")
    assert _broken("analysis", allowed) == {}


def test_no_import_circles():
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(m: str) -> None:  # Tarjan's strongly connected components
        index[m] = low[m] = len(index)
        stack.append(m)
        on_stack.add(m)
        for n in GRAPH[m]:
            if n not in index:
                visit(n)
                low[m] = min(low[m], low[n])
            elif n in on_stack:
                low[m] = min(low[m], index[n])
        if low[m] == index[m]:
            group = []
            while True:
                n = stack.pop()
                on_stack.discard(n)
                group.append(n)
                if n == m:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for m in GRAPH:
        if m not in index:
            visit(m)
    assert circles == []


BLOCK = ("import sys\n"
         "class NotInstalled:\n"
         "    def find_spec(self, name, path=None, target=None):\n"
         "        if name.partition('.')[0] in {blocked!r}:\n"
         "            raise ModuleNotFoundError(f'No module named {{name!r}}', name=name)\n"
         "sys.meta_path.insert(0, NotInstalled())\n")


def _run_blocked(blocked: tuple[str, ...], code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK.format(blocked=blocked) + code, *args],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_the_job_spec_layer_validates_and_expands_a_job_without_the_heavy_libraries(compose):
    """The demo job as the command line composed it, parsed and expanded in a process where
    torch, ray, Hydra, pyarrow, pandas, numpy, PIL and the rest cannot be imported."""
    from animagine_batch import cli

    raw = cli.compose_job(str(REPO / "jobs" / "demo.yaml"), [])
    configs = {"models": cli.group_configs("model"), "scorers": cli.group_configs("scorer")}
    code = (
        "import json, pkgutil, importlib\n"
        "import animagine_batch.jobspec as pkg\n"
        "for m in pkgutil.iter_modules(pkg.__path__):\n"
        "    importlib.import_module(f'animagine_batch.jobspec.{m.name}')\n"
        "from animagine_batch.jobspec.catalogue import Catalogue\n"
        "from animagine_batch.jobspec.parse import parse_job\n"
        "from animagine_batch.jobspec.prompt_sets import PromptLibrary\n"
        "from animagine_batch.jobspec import sweep\n"
        "raw, configs, conf = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]\n"
        "library = PromptLibrary([conf])\n"
        "spec = parse_job(raw, Catalogue(library, **configs, runners=('local', 'ray')))\n"
        "tasks = sweep.expand(spec, library.load(spec.prompts), {'tiny': 'x'})\n"
        "print(json.dumps([len(tasks), len(sweep.units(tasks, 4)), tasks[0].task_id, "
        "sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numpy', 'torch', 'pyarrow', 'pandas', 'PIL', 'hydra', 'ray'))]))\n")
    blocked = (*HEAVY, "pyarrow", "pandas", "numpy", "PIL", "scipy", "matplotlib")
    r = _run_blocked(blocked, code, json.dumps(raw), json.dumps(configs),
                     str(REPO / "conf" / "prompt_sets"))
    assert r.returncode == 0, r.stderr
    n, units, first, loaded = json.loads(r.stdout)
    assert (n, units, loaded) == (24, 6, [])
    spec = compose("demo")
    from animagine_batch.jobspec import prompt_sets, sweep

    tasks = sweep.expand(spec, prompt_sets.load_prompt_set("demo", [REPO / "conf" /
                                                                    "prompt_sets"]), {"tiny": "x"})
    assert first == tasks[0].task_id  # the same ids as in the full environment


@pytest.mark.parametrize("layer, blocked", [
    ("animagine_batch.rundir", HEAVY),
    ("analysis", HEAVY),
])
def test_layers_import_without_the_generation_stack(layer, blocked):
    names = sorted(m for m in ALL if _under(m, layer))
    r = _run_blocked(blocked, "import importlib\n"
                     f"for m in {names!r}:\n    importlib.import_module(m)\nprint('ok')\n")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
