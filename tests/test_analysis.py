"""compare / regress / grid / report on demo runs, the analysis import boundary, notebooks."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from analysis import load_run
from animagine_batch import cli
from conftest import REPO, run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def other_model_run(tmp_path_factory):
    """The demo job on a second tiny model: a candidate for regression checks."""
    root = tmp_path_factory.mktemp("tiny-b")
    assert cli.main(["run", "jobs/demo.yaml", f"output.root={root}", "runner=local",
                     "model=tiny_b"]) == 0
    return root / "demo"


def test_analysis_imports_no_heavy_library():
    code = ("import sys, analysis, analysis.compare, analysis.report, analysis.grid, "
            "analysis.plots, analysis.diversity, analysis.stats\n"
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers', 'open_clip', 'ray') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_analysis_commands_run_without_hydra_or_torch(demo_run, tmp_path):
    """compare, regress and report in a process where Hydra, omegaconf and the generation stack
    cannot be imported (an environment with only the analysis dependencies)."""
    from analysis import simulate

    blocked = ("hydra", "omegaconf", "torch", "diffusers", "transformers", "open_clip", "ray")
    code = ("import sys\n"
            "class NotInstalled:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            f"        if name.partition('.')[0] in {blocked!r}:\n"
            "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
            "sys.meta_path.insert(0, NotInstalled())\n"
            "from animagine_batch.cli import main\nsys.exit(main(sys.argv[1:]))")
    rng = np.random.default_rng(0)
    df = simulate.compare_frame(simulate.scores(rng, 1, 20, 4, [0.0, 0.1])[0])
    run = simulate.write_run(tmp_path / "sim", df, {"strategy": ["s0", "s1"]}, {"score": True})
    report_run = tmp_path / "demo"
    shutil.copytree(demo_run, report_run)

    def cli_without(*args):
        return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=REPO,
                              capture_output=True, text=True, timeout=300)

    r = cli_without("compare", run, "--by", "strategy")
    assert r.returncode == 0, r.stderr
    assert re.search(r"strategy +s1 +s0 +score +80 +20 .* better", r.stdout)
    r = cli_without("regress", run, run)
    assert r.returncode == 0 and "verdict: no regression" in r.stdout, r.stderr
    r = cli_without("report", report_run, "--baseline", demo_run)
    assert r.returncode == 0, r.stderr
    assert "Regression against the baseline" in (report_run / "report" / "index.html").read_text()
    tags = df.assign(quality=df["strategy"].map({"s0": "none", "s1": "masterpiece"}),
                     quality_tag="good quality", quality_score=df["score"] * 6)
    quality_run = simulate.write_run(tmp_path / "quality", tags.drop(columns="strategy"),
                                     {"quality": ["none", "masterpiece"]}, {"quality_score": True})
    r = cli_without("control", quality_run)
    assert r.returncode == 0 and "== quality: measured by quality_tag" in r.stdout, r.stderr
    r = cli_without("run", "jobs/demo.yaml")  # the generation side does need them
    assert r.returncode != 0


def test_compare_every_axis_and_write_tables(demo_run, tmp_path):
    r = run_cli("compare", str(demo_run), "--metric", "aesthetic_score", "--metric", "clip_score",
                "--out", str(tmp_path / "effects.csv"))
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(tmp_path / "effects.csv")
    every = run_cli("compare", str(demo_run), "--out", str(tmp_path / "all.parquet"))
    assert every.returncode == 0, every.stderr  # levels of text and numeric axes in one column
    assert set(pd.read_parquet(tmp_path / "all.parquet").level) == {"append", "7.0"}
    assert set(table.axis) == {"tag_position", "cfg"} and len(table) == 4
    assert (table.n_pairs == 12).all() and (table.n_prompts == 3).all()
    row = table[(table.axis == "cfg") & (table.metric == "aesthetic_score")].iloc[0]
    df = load_run(demo_run)
    assert float(row.level) == 7.0 and float(row.reference) == 5.0
    diff = (df[df.cfg == 7].sort_values(["prompt_key", "tag_position", "seed"]).aesthetic_score.to_numpy()
            - df[df.cfg == 5].sort_values(["prompt_key", "tag_position", "seed"]).aesthetic_score.to_numpy())
    assert row.mean_diff == pytest.approx(diff.mean(), rel=1e-4)
    # three prompts: the means are shown, no interval and no verdict
    assert (table.verdict == "too few prompts").all() and table.ci_low.isna().all()
    assert re.search(r"tag_position +append +prepend +aesthetic_score +12 +3 ", r.stdout)
    assert "too few prompts: 4 rows have fewer than 5 prompts with pairs (at most 3)" in r.stdout
    for suffix in (".parquet", ".md"):
        r = run_cli("compare", str(demo_run), "--by", "tag_position", "--reference", "append",
                    "--metric", "clip_score", "--out", str(tmp_path / f"t{suffix}"))
        assert r.returncode == 0, r.stderr
    assert pd.read_parquet(tmp_path / "t.parquet").level.tolist() == ["prepend"]
    assert (tmp_path / "t.md").read_text().startswith("| axis ")


def test_interaction_table_and_heatmap(demo_run, tmp_path):
    r = run_cli("compare", str(demo_run), "--by", "cfg", "--metric", "aesthetic_score",
                "--interaction", "cfg", "tag_position", "--heatmap", str(tmp_path / "h.png"))
    assert r.returncode == 0, r.stderr
    assert "aesthetic_score by cfg x tag_position" in r.stdout
    assert Image.open(tmp_path / "h.png").size[0] > 100


def test_compare_bad_input(demo_run):
    r = run_cli("compare", str(demo_run), "--by", "colour")
    assert r.returncode == 2 and "--by colour: no such column" in r.stderr
    r = run_cli("compare", str(demo_run), "--by", "cfg", "--reference", "9")
    assert r.returncode == 2 and "not a level of cfg; levels: 5.0, 7.0" in r.stderr


def test_interaction_with_an_unknown_axis_is_bad_input(demo_run, tmp_path):
    r = run_cli("compare", str(demo_run), "--interaction", "cfg", "colour",
                "--out", str(tmp_path / "t.csv"))
    assert r.returncode == 2 and r.stdout == ""
    assert "--interaction colour: no such column; use an axis or factor of this run: " \
           "tag_position, cfg," in r.stderr
    assert not (tmp_path / "t.csv").exists()


def _shift_scores(run: Path, delta: float) -> None:
    for part in (run / "results").glob("part-*.parquet"):
        t = pq.read_table(part)
        df = t.to_pandas()
        df["aesthetic_score"] = (df["aesthetic_score"] + delta).astype("float32")
        pq.write_table(pa_table(df, t.schema), part)


def pa_table(df, schema):
    import pyarrow as pa

    return pa.Table.from_pandas(df, schema=schema, preserve_index=False)


def test_regress_on_three_prompts_cannot_decide(demo_run, other_model_run, tmp_path):
    same = run_cli("regress", str(demo_run), str(demo_run), "--metric", "aesthetic_score")
    assert same.returncode == 2 and "matched 24 of 24 baseline tasks (0 unmatched" in same.stdout
    assert "cannot decide: the runs have 3 matched prompts; a verdict needs at least 5" \
        in same.stderr
    worse = tmp_path / "runs" / "worse"  # tables go outside the folder that holds the run
    shutil.copytree(demo_run, worse)
    _shift_scores(worse, -0.05)
    r = run_cli("regress", str(demo_run), str(worse), "--metric", "aesthetic_score",
                "--out", str(tmp_path / "r.csv"))
    assert r.returncode == 2 and "REGRESSED" not in r.stdout
    table = pd.read_csv(tmp_path / "r.csv")  # the table is written: it is complete, if undecided
    assert set(table.scope) == {"all", "tag_position", "cfg"}
    overall = table[table.scope == "all"].set_index("metric")
    assert overall.loc["aesthetic_score", "delta"] == pytest.approx(-0.05, abs=1e-5)
    assert (table.verdict == "too few prompts").all() and (overall.matched == 24).all()
    # two models, not an axis of the runs: matched on everything else
    r = run_cli("regress", str(demo_run), str(other_model_run), "--metric", "clip_score",
                "--out", str(tmp_path / "m.csv"))
    assert r.returncode == 2
    assert pd.read_csv(tmp_path / "m.csv").n_pairs.iloc[0] == 24


def test_regress_without_matches_is_bad_input(demo_run, tmp_path):
    assert cli.main(["run", "jobs/demo.yaml", f"output.root={tmp_path}", "runner=local",
                     "sweep.seeds=[9]", "scorers=[tiny_aesthetic]"]) == 0
    r = run_cli("regress", str(demo_run), str(tmp_path / "demo"), "--metric", "aesthetic_score")
    assert r.returncode == 2 and "no matched tasks" in r.stderr


def test_grids_are_labelled_seed_matched_and_one_per_z(demo_run, tmp_path):
    r = run_cli("grid", str(demo_run), "--x", "cfg", "--y", "tag_position", "--z", "prompt_key",
                "--out", str(tmp_path), "--cell", "64")
    assert r.returncode == 0, r.stderr
    files = sorted(tmp_path.glob("grid_cfg_tag_position_prompt_key-*.png"))
    assert [f.name.rsplit("-", 1)[1] for f in files] == ["asuka.png", "miku.png", "naruto.png"]
    grid = np.asarray(Image.open(files[1]).convert("RGB"))
    assert grid.shape[1] == 32 + 2 * 64  # label column + two cfg columns
    # the cell (cfg 5, prepend) holds miku's seed-0 image, scaled from 64 to 64 px
    df = load_run(demo_run)
    cell = df[(df.prompt_key == "miku") & (df.cfg == 5) & (df.tag_position == "prepend")
              & (df.seed == 0)].image_path.iloc[0]
    img = np.asarray(Image.open(demo_run / cell).convert("RGB"))
    top = grid.shape[0] - 2 * 64
    assert np.array_equal(grid[top:top + 64, 32:96], img)
    r = run_cli("grid", str(demo_run), "--x", "cfg", "--where", "prompt_key == 'naruto'",
                "--out", str(tmp_path / "w"))
    assert r.returncode == 0 and len(list((tmp_path / "w").glob("*.png"))) == 1
    r = run_cli("grid", str(demo_run), "--x", "cfg", "--where", "nosuch ==")
    assert r.returncode == 2 and "--where" in r.stderr


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium(demo_run, other_model_run, tmp_path):
    run = tmp_path / "demo"
    shutil.copytree(other_model_run, run)
    r = run_cli("report", str(run), "--baseline", str(demo_run))
    assert r.returncode == 0, r.stderr
    index = run / "report" / "index.html"
    html = index.read_text()
    assert "Effects of each axis" in html and "Regression against the baseline" in html
    assert "Largest drops in" in html and "<img" in html
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert srcs and all((index.parent / s).resolve().is_file() for s in srcs)
    browser = _chromium()
    if browser is None:
        pytest.skip("no chromium installed (.ci/run installs Debian's chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([browser, *flags, "--enable-logging=stderr", "--dump-dom",
                          index.as_uri()], capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", dom.stdout).group(0)
    images = int(re.search(r'data-images="(\d+)"', body).group(1))
    assert images == len(srcs) and 'data-broken="0"' in body and 'data-errors="0"' in body
    assert "Uncaught" not in dom.stderr and ":CONSOLE" not in dom.stderr
    shot = tmp_path / "report.png"
    subprocess.run([browser, *flags, "--window-size=1280,2400", f"--screenshot={shot}",
                    index.as_uri()], capture_output=True, timeout=120)
    assert Image.open(shot).size == (1280, 2400)
    keep = REPO / ".pytest_cache" / "artifacts"
    keep.mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, keep / "report.png")


@pytest.mark.parametrize("name", ["explore_run", "compare_strategies"])
def test_notebooks_execute_against_a_demo_run(name, demo_run, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    run = tmp_path / "demo"
    shutil.copytree(demo_run, run)
    monkeypatch.setenv("ANIMAGINE_RUN", str(run))
    nb = nbformat.read(REPO / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type in ("execute_result", "display_data") for o in outputs)
    assert os.environ["ANIMAGINE_RUN"] == str(run)
