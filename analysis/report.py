"""Static HTML report of a run (jinja2): summary, effect tables with CIs, plots, image grids, the
special-tag control section and, against a baseline run, the regression table and the worst
regressions side by side. A metric whose values come from scorers that differ in weights or
preprocessing is left out of every comparison, and the report says so.

The report folder is written next to the results (`<run>/report/index.html`), built in a
temporary folder and renamed into place; it opens from disk without a server. Images are linked
only when they resolve inside their run and match their hash; others are named in a warning.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from pathlib import Path

import jinja2
from markupsafe import Markup, escape
import numpy as np
import pandas as pd

from animagine_batch.rundir import ResultsError, load_run, warn
from animagine_batch.rundir.images import check_image, image_file, read_image
from animagine_batch.rundir.storage import is_remote, location, upload_tree

from . import control_output, plots
from .compare import (_numeric, directions, interaction, job_axes, marginal_effects,
                      metric_columns)
from .grid import make_grids
from .provenance import mismatches
from .regress import gate_outcome, regress, summary
from .report_sections import effects_section, human_section, human_tables

TEMPLATES = Path(__file__).parent / "templates"
REGRESS_COLUMNS = ["scope", "level", "metric", "baseline_tasks", "matched", "unmatched",
                   "candidate_error", "candidate_nan", "candidate_missing", "n_pairs", "n_prompts",
                   "mean_baseline", "mean_candidate", "delta", "ci_low", "ci_high", "ci_level",
                   "p_adj", "verdict"]


def html_table(df: pd.DataFrame, columns: list[str]) -> str:
    def cell(v):
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}" if np.isfinite(v) else ""
        return escape(str(v))

    head = "".join(f"<th>{c}</th>" for c in columns)
    body = []
    for _, r in df[columns].iterrows():
        css = r.get("verdict", "")
        css = css.replace(" ", "-") if isinstance(css, str) else ""
        body.append(f'<tr class="{css}">' + "".join(f"<td>{cell(r[c])}</td>" for c in columns)
                    + "</tr>")
    return Markup(f"<table><tr>{head}</tr>{''.join(body)}</table>")


def _numeric_axes(df: pd.DataFrame, axes: list[str]) -> list[str]:
    cols = [a for a in axes if a in df.columns] + [c for c in ("cfg", "steps") if c not in axes]
    return [c for c in dict.fromkeys(cols) if c in df.columns and df[c].nunique() > 1
            and pd.api.types.is_numeric_dtype(df[c])]


def build_report(run_dir: Path | str, baseline: Path | str | None = None,
                 metrics: list[str] | None = None, worst: int = 6) -> Path:
    run_dir = location(run_dir)
    df = load_run(run_dir)
    axes = job_axes(run_dir)
    dirs = directions(run_dir)
    metrics = metrics or metric_columns(df, dirs)
    mixed = mismatches({"": run_dir}, metrics)  # never compared silently: left out, and said
    metrics = [m for m in metrics if m not in mixed]
    ok = df[df["status"] == "ok"]
    target = run_dir / "report"
    try:  # on object storage the report is built here and uploaded
        work = Path(tempfile.mkdtemp(prefix=".report-",
                                     dir=None if is_remote(run_dir) else run_dir))
    except OSError as e:
        raise ResultsError(f"report: cannot write in {run_dir} ({e.strerror})") from None
    try:
        ctx = _content(run_dir, df, ok, axes, dirs, metrics, work)
        ctx.update(control_output.report_section(
            df, axes, work / "figures", html_table,
            mismatches({"": run_dir}, control_output.measured_columns(df))))
        if baseline is not None:
            baseline = location(baseline)
            across = mismatches({"baseline": baseline, "candidate": run_dir}, metrics)
            mixed.update(across)
            ctx.update(_baseline(baseline, df, axes, dirs,
                                 [m for m in metrics if m not in across], work, worst, run_dir))
        ctx["mixed"] = list(mixed.values())
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                                 autoescape=jinja2.select_autoescape(["html", "j2"]))
        html = env.get_template("report.html.j2").render(**ctx)
        (work / "index.html").write_text(html, encoding="utf-8")
        if is_remote(target):
            upload_tree(work, target, prune=True)
        else:
            _replace(work, target)
    except OSError as e:
        raise ResultsError(f"report: cannot write {target} ({e.strerror or e}); the previous "
                           "report is unchanged") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target / "index.html"


def _replace(work: Path, target: Path) -> None:
    """Move the new report into place; a previous one is removed only after, and a link named
    `report` is replaced as a link (what it points at is left alone)."""
    if target.is_symlink() or target.is_file():
        target.unlink()
    old = None
    if target.exists():
        old = target.with_name(f".report-old-{os.getpid()}")
        os.replace(target, old)
    os.replace(work, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _content(run_dir, df, ok, axes, dirs, metrics, work: Path) -> dict:
    first = next((a for a in axes if a in df.columns and df[a].nunique() > 1), None)
    counts = df["status"].value_counts().to_dict()
    summary = [("run directory", str(run_dir)), ("job", ", ".join(map(str, df["job"].unique()))),
               ("models", ", ".join(map(str, df["model"].unique()))),
               ("images", f"{len(df):,} (" + ", ".join(f"{k} {v:,}" for k, v in counts.items())
                + ")"),
               ("prompts", f"{df['prompt_key'].nunique():,}"), ("seeds", f"{df['seed'].nunique():,}"),
               ("axes", ", ".join(f"{a} ({df[a].nunique()})" for a in axes if a in df.columns)),
               ("metrics", ", ".join(metrics) or "(none: the run has no scores)")]
    for m in metrics:
        summary.append((f"mean {m}", f"{_numeric(ok[m]).mean():.4g}"))
    ctx: dict = {"title": f"animagine-batch report: {df['job'].iloc[0] if len(df) else run_dir.name}",
                 "subtitle": str(run_dir), "summary": summary, "figures": [], "grids": [],
                 "interactions": [], "effects": ""}
    figs = work / "figures"
    figs.mkdir()
    effects = marginal_effects(df, metrics, dirs, axes, run_dir) if metrics else pd.DataFrame()
    human = human_tables(run_dir, df)  # votes of people, when the run has some
    ctx.update(effects_section(df, dirs, metrics, effects, human, figs))
    if human is not None:
        ctx.update(human_section(run_dir, df, dirs, metrics, human))
    numeric = _numeric_axes(ok, axes)
    for a, b in itertools.combinations(numeric, 2):
        if metrics:
            table = interaction(df, a, b, metrics[0], axes)
            img = plots.heatmap(table, metrics[0], figs / f"heatmap_{a}_{b}.png")
            ctx["interactions"].append({"title": f"{a} x {b} ({metrics[0]})",
                                        "table": Markup(table.round(4).to_html()),
                                        "image": f"figures/{img.name}"})
    for axis in numeric:
        for m in metrics[:3]:
            p = plots.metric_vs(ok.assign(**{m: _numeric(ok[m])}), axis, m,
                                figs / f"{m}_vs_{axis}.png")
            ctx["figures"].append({"src": f"figures/{p.name}", "alt": f"{m} against {axis}"})
    if "aesthetic_tag" in ok.columns and first:
        p = plots.tag_distribution(ok, first, figs / f"aesthetic_tags_by_{first}.png")
        ctx["figures"].append({"src": f"figures/{p.name}", "alt": "aesthetic tags"})
    for m in metrics[:4]:
        p = plots.histogram(ok, m, figs / f"hist_{m}.png", by=first)
        ctx["figures"].append({"src": f"figures/{p.name}", "alt": f"histogram of {m}"})
    if first and len(ok):
        for path in make_grids(run_dir, df, axes, first, out_dir=work / "grids", cell=160):
            ctx["grids"].append({"src": f"grids/{path.name}",
                                 "caption": f"{first} across seeds ({path.stem})"})
    return ctx


def _pair_image(run, rel: str, work: Path, report_dir, tag: str) -> str:
    """The link to one image of a pair: relative to the report, or on object storage (where the
    report cannot link to a path) a copy inside the report."""
    if is_remote(run) or is_remote(report_dir):
        name = f"pairs/{tag}-{Path(rel).name}"
        (work / "pairs").mkdir(exist_ok=True)
        (work / name).write_bytes(read_image(run, rel))
        return name
    return os.path.relpath(image_file(run, rel), report_dir.resolve())


def _baseline(baseline: Path, df, axes, dirs, metrics, work: Path, worst: int,
              run_dir=None) -> dict:
    base = load_run(baseline)
    axes = [a for a in job_axes(baseline) if a in axes]
    table = regress(base, df, metrics, dirs, axes)
    out = {"baseline": str(baseline), "regression": html_table(table, REGRESS_COLUMNS),
           "regression_summary": summary(table).splitlines(),
           "regression_verdict": gate_outcome(table)[1],
           "worst": [], "worst_metric": metrics[0] if metrics else ""}
    if not metrics:
        return out
    m = metrics[0]
    key = [c for c in ("prompt", "negative_prompt", "seed", "sampler", "steps", "cfg", "width",
                       "height") if c in base.columns and c in df.columns]
    pairs = base[base.status == "ok"].merge(df[df.status == "ok"], on=key, suffixes=("_b", "_c"))
    sign = 1 if dirs.get(m, True) else -1
    pairs = pairs.assign(_d=sign * (_numeric(pairs[f"{m}_c"]) - _numeric(pairs[f"{m}_b"])))
    run_dir = work.parent if run_dir is None else run_dir
    report_dir = run_dir / "report"
    for _, r in pairs.nsmallest(worst, "_d").iterrows():
        problem = (check_image(baseline, r["image_path_b"], r.get("image_sha256_b"))
                   or check_image(run_dir, r["image_path_c"], r.get("image_sha256_c")))
        if problem:
            warn(f"report: a pair of the largest drops is left out: {problem}")
            continue
        out["worst"].append({
            "base": _pair_image(baseline, r["image_path_b"], work, report_dir, "baseline"),
            "cand": _pair_image(run_dir, r["image_path_c"], work, report_dir, "candidate"),
            "caption": f"{r.get('prompt_key_b', '')} seed {r['seed']}: {m} "
                       f"{_numeric(pd.Series([r[f'{m}_b']]))[0]:.3g} -> "
                       f"{_numeric(pd.Series([r[f'{m}_c']]))[0]:.3g}"})
    return out
