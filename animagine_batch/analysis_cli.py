"""Subcommands over result tables: table, compare, regress, grid, report, export (no Hydra, no
torch)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from analysis import ResultsError, load_run
from analysis.outputs import check_file_output, check_output, write_atomically

SHOW = ["axis", "level", "reference", "metric", "n_pairs", "mean_reference", "mean_level",
        "mean_diff", "ci_low", "ci_high", "win_rate", "p_holm", "verdict"]


def _run(path: str) -> Path:
    p = Path(path)
    if not (p / "results").is_dir():
        raise ResultsError(f"{p} is not a run directory (no results/ folder)")
    return p


TABLE_SUFFIXES = (".csv", ".parquet", ".md", ".markdown")


def table_out(out: str | None, flag: str = "--out", suffixes=TABLE_SUFFIXES) -> None:
    """Check an output file before any work: known suffix, existing folder, not onto a run."""
    if out is not None:
        check_file_output(out, flag, suffixes)


def write_table(df: pd.DataFrame, out: str, suffixes=TABLE_SUFFIXES) -> None:
    """CSV, Parquet or Markdown by the file's suffix, written atomically."""
    path = check_file_output(out, "--out", suffixes)

    def write(tmp: Path) -> None:
        if path.suffix == ".csv":
            df.to_csv(tmp, index=False)
        elif path.suffix == ".parquet":
            df.to_parquet(tmp, index=False)
        else:
            tmp.write_text(df.to_markdown(index=False, floatfmt=".4g") + "\n")

    write_atomically(path, "--out", write)
    print(f"{len(df):,} rows -> {out}")


def show(df: pd.DataFrame, columns: list[str]) -> str:
    cols = [c for c in columns if c in df.columns]
    return df[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}")


def cmd_table(args) -> int:
    suffixes = (".parquet", ".csv")
    table_out(args.out, suffixes=suffixes)
    df = load_run(_run(args.run_dir))
    if Path(args.out).suffix == ".csv":  # binary columns (embeddings) have no CSV form
        df = df.drop(columns=[c for c in df.columns if df[c].dtype == object and len(df)
                              and isinstance(df[c].iloc[0], bytes)])
    write_table(df, args.out, suffixes)
    return 0


def cmd_compare(args) -> int:
    from analysis.compare import (compare, directions, interaction, job_axes,
                                  marginal_effects, metric_columns)

    run = _run(args.run_dir)
    table_out(args.out)
    table_out(args.heatmap, "--heatmap", (".png",))
    df, axes, dirs = load_run(run), job_axes(run), directions(run)
    metrics = args.metric or metric_columns(df, dirs)
    if not metrics:
        raise ResultsError(f"{run} has no score columns; name one with --metric")
    if args.by:
        from analysis.compare import axis_levels

        table = compare(df, args.by, metrics, dirs, axes, args.reference,
                        axis_levels(run, args.by))
    else:
        table = marginal_effects(df, metrics, dirs, axes, run)
    print(show(table, SHOW) if not table.empty else "nothing to compare: no axis has two levels")
    if args.interaction:
        a, b = args.interaction
        inter = interaction(df, a, b, metrics[0])
        print(f"\n{metrics[0]} by {a} x {b}:\n{inter.to_string(float_format=lambda v: f'{v:.4g}')}")
        if args.heatmap:
            from analysis import plots

            plots.heatmap(inter, metrics[0], Path(args.heatmap))
            print(f"heatmap -> {args.heatmap}")
    if args.out:
        write_table(table, args.out)
    return 0


def cmd_regress(args) -> int:
    from analysis.compare import directions, job_axes, metric_columns, regress

    base, cand = _run(args.baseline), _run(args.candidate)
    table_out(args.out)
    bdf, cdf = load_run(base), load_run(cand)
    dirs = {**directions(base), **directions(cand)}
    metrics = args.metric or metric_columns(cdf, dirs)
    if not metrics:
        raise ResultsError(f"{cand} has no score columns; name one with --metric")
    missing = [m for m in metrics if m not in bdf.columns or m not in cdf.columns]
    if missing:
        raise ResultsError(f"--metric {', '.join(missing)}: not in both runs")
    axes = [a for a in dict.fromkeys(job_axes(base) + job_axes(cand)) if a not in args.ignore]
    table = regress(bdf, cdf, metrics, dirs, axes, args.margin, args.ignore)
    print(show(table, ["scope", "level", "metric", "n_pairs", "mean_baseline", "mean_candidate",
                       "delta", "ci_low", "ci_high", "win_rate", "verdict"]))
    if args.out:
        write_table(table, args.out)
    overall = table[table["scope"] == "all"]
    bad = overall[overall["verdict"] == "regressed"]
    print(f"verdict: {'REGRESSED on ' + ', '.join(bad.metric) if len(bad) else 'no regression'}"
          f" (margin {args.margin})")
    return 1 if len(bad) else 0


def cmd_grid(args) -> int:
    from analysis.compare import job_axes
    from analysis.grid import make_grids

    run = _run(args.run_dir)
    out = check_output(args.out or run / "grids", "--out", allowed=run / "grids")
    if out.exists() and not out.is_dir():
        raise ResultsError(f"--out {args.out}: is a file; grids are written into a folder")
    paths = make_grids(run, load_run(run), job_axes(run), args.x, args.y, args.z, args.where,
                       out, args.cell)
    for p in paths:
        print(p)
    return 0


def cmd_report(args) -> int:
    from analysis.report import build_report

    run = _run(args.run_dir)
    baseline = _run(args.baseline) if args.baseline else None
    print(build_report(run, baseline, args.metric or None))
    return 0


def cmd_export(args) -> int:
    from .export import export

    run = _run(args.run_dir)
    n, damaged = export(run, args.format, Path(args.out), args.where, args.min_aesthetic,
                        args.dedupe, args.dedupe_threshold, args.caption_source, args.overwrite)
    print(f"{n:,} images exported ({args.format}) -> {args.out}"
          + (f"; {len(damaged):,} damaged image(s) left out" if damaged else ""))
    return 0


CELL_RANGE = (16, 2048)


def cell_size(text: str) -> int:
    """argparse type of `grid --cell`: whole pixels in CELL_RANGE."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or not CELL_RANGE[0] <= value <= CELL_RANGE[1]:
        raise argparse.ArgumentTypeError(f"{text!r}: a cell is a whole number of pixels from "
                                         f"{CELL_RANGE[0]} to {CELL_RANGE[1]}")
    return value


def add_parsers(sub) -> None:
    t = sub.add_parser("table", help="write a run's results table to .parquet or .csv")
    t.add_argument("run_dir")
    t.add_argument("--out", required=True)
    t.set_defaults(func=cmd_table)

    c = sub.add_parser("compare", help="paired comparison of the levels of an axis (or all axes)")
    c.add_argument("run_dir")
    c.add_argument("--by", help="the axis to compare (default: every axis)")
    c.add_argument("--metric", action="append", help="score column (repeatable; default: all)")
    c.add_argument("--reference", help="reference level (default: the axis's first level)")
    c.add_argument("--interaction", nargs=2, metavar=("A", "B"),
                   help="also print the mean of the first metric over the A x B grid")
    c.add_argument("--heatmap", help="with --interaction: write a heatmap PNG")
    c.add_argument("--out", help="write the table to .csv, .parquet or .md")
    c.set_defaults(func=cmd_compare)

    r = sub.add_parser("regress", help="candidate run against a baseline run (exit 1 on regression)")
    r.add_argument("baseline")
    r.add_argument("candidate")
    r.add_argument("--metric", action="append", help="score column (repeatable; default: all)")
    r.add_argument("--margin", type=float, default=0.0,
                   help="tolerated drop: regressed only when the CI lies beyond it")
    r.add_argument("--ignore", action="append", default=[],
                   help="a field allowed to differ between matched tasks (repeatable)")
    r.add_argument("--out", help="write the table to .csv, .parquet or .md")
    r.set_defaults(func=cmd_regress)

    g = sub.add_parser("grid", help="labelled image grids from the saved PNGs, seeds matched")
    g.add_argument("run_dir")
    g.add_argument("--x", required=True)
    g.add_argument("--y")
    g.add_argument("--z")
    g.add_argument("--where", help="pandas query over the results table, e.g. \"prompt_key == 'miku'\"")
    g.add_argument("--out", help="folder for the grid PNGs (default: RUN/grids)")
    g.add_argument("--cell", type=cell_size, default=256,
                   help=f"cell size in pixels ({CELL_RANGE[0]}-{CELL_RANGE[1]})")
    g.set_defaults(func=cmd_grid)

    e = sub.add_parser("export", help="filtered, captioned dataset export (kohya or hf-parquet)")
    e.add_argument("run_dir")
    e.add_argument("--format", required=True, choices=["kohya", "hf-parquet"])
    e.add_argument("--out", required=True, help="target folder (must be empty unless --overwrite)")
    e.add_argument("--where", help="pandas query over the results table")
    e.add_argument("--min-aesthetic", type=float, help="keep images with aesthetic_score >= X")
    e.add_argument("--dedupe", action="store_true",
                   help="also drop near-duplicates by CLIP image-embedding cosine")
    e.add_argument("--dedupe-threshold", type=float, default=0.95,
                   help="cosine above which two images are near-duplicates (default 0.95)")
    e.add_argument("--caption-source", default="prompt", choices=["prompt", "wd14"],
                   help="general tags from the prompt, or from the WD tagger's tags")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty target")
    e.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="static HTML report (RUN/report/index.html)")
    p.add_argument("run_dir")
    p.add_argument("--baseline", help="a baseline run: adds the regression section")
    p.add_argument("--metric", action="append")
    p.set_defaults(func=cmd_report)

