"""Subcommands over result tables: table, compare, regress, control, grid, report, export (no
Hydra, no torch)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from analysis import ResultsError, load_run

from .rundir.outputs import check_file_output, check_output, write_atomically

from .export import SHARD_ROWS
from .kohya import LAYOUTS

SHOW = ["axis", "level", "reference", "metric", "n_pairs", "n_prompts", "mean_reference",
        "mean_level", "mean_diff", "ci_low", "ci_high", "ci_level", "win_rate", "p_adj", "verdict"]
MISMATCH_HELP = ("compare a metric even when its values come from scorers that differ in "
                 "weights or preprocessing")
REGRESS_SHOW = ["scope", "level", "metric", "matched", "n_pairs", "n_prompts", "mean_baseline",
                "mean_candidate", "delta", "ci_low", "ci_high", "ci_level", "p_adj", "verdict"]


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
    from analysis.compare import (axis_levels, compare, directions, interaction, job_axes,
                                  marginal_effects, metric_columns)
    from analysis.provenance import require_comparable

    run = _run(args.run_dir)
    table_out(args.out)
    table_out(args.heatmap, "--heatmap", (".png",))
    df, axes, dirs = load_run(run), job_axes(run), directions(run)
    if df.empty:
        raise ResultsError(f"{run} has no result rows: run its job first")
    human = None
    if args.metric and "human" in args.metric:  # votes of people (analysis.human)
        from analysis.review_cli import human_table

        human = human_table(run, df, args.by, args.reference)
        args.metric = [m for m in args.metric if m != "human"]
        if not args.metric:
            if args.out:
                write_table(human, args.out)
            return 0
        print()
    metrics = args.metric or metric_columns(df, dirs)
    if not metrics:
        raise ResultsError(f"{run} has no score columns; name one with --metric")
    unknown = [m for m in metrics if m not in df.columns]
    if unknown:
        raise ResultsError(f"--metric {', '.join(unknown)}: no such column in {run}; its metrics: "
                           f"{', '.join(metric_columns(df, dirs)) or '(none)'}")
    require_comparable({"": run}, metrics, args.allow_scorer_mismatch, "compare")
    inter = interaction(df, *args.interaction, metrics[0], axes) if args.interaction else None
    if args.by:
        table = compare(df, args.by, metrics, dirs, axes, args.reference, axis_levels(run, args.by))
    else:
        table = marginal_effects(df, metrics, dirs, axes, run)
    if table.empty:
        print("nothing to compare: no axis has two levels")
    else:
        print(show(table, SHOW))
        print(compare_footer(table))
    if inter is not None:
        a, b = args.interaction
        print(f"\n{metrics[0]} by {a} x {b}:\n{inter.to_string(float_format=lambda v: f'{v:.4g}')}")
        if args.heatmap:
            from analysis import plots

            plots.heatmap(inter, metrics[0], Path(args.heatmap))
            print(f"heatmap -> {args.heatmap}")
    if args.out:
        write_table(table if human is None else pd.concat([human, table]), args.out)
    return 0


def compare_footer(table: pd.DataFrame) -> str:
    from analysis.stats import MIN_PROMPTS, TOO_FEW

    lines = ["intervals and p-values: t over per-prompt mean differences, Bonferroni-corrected "
             "across the levels of each axis and metric (ci_level, p_adj)"]
    few = table[table["verdict"] == TOO_FEW]
    if len(few):
        lines.append(f"too few prompts: {len(few)} rows have fewer than {MIN_PROMPTS} prompts "
                     f"with pairs (at most {int(few['n_prompts'].max())}); no verdict is given")
    return "\n".join(lines)


def cmd_regress(args) -> int:
    from analysis.compare import directions, job_axes, metric_columns
    from analysis.regress import gate_outcome, regress, summary
    from analysis.provenance import require_comparable

    base, cand = _run(args.baseline), _run(args.candidate)
    table_out(args.out)
    bdf, cdf = load_run(base), load_run(cand)
    for df, run, what in ((bdf, base, "baseline"), (cdf, cand, "candidate")):
        if df.empty:
            raise ResultsError(f"the {what} {run} has no result rows: run its job first")
    dirs = {**directions(base), **directions(cand)}
    metrics = args.metric or metric_columns(bdf, dirs)
    if not metrics:
        raise ResultsError(f"the baseline {base} has no score columns; name one with --metric")
    for df, run in ((bdf, base), (cdf, cand)):
        missing = [m for m in metrics if m not in df.columns]
        if missing:
            raise ResultsError(f"--metric {', '.join(missing)}: no such column in {run}; a "
                               "metric must be in both runs; the baseline's metrics: "
                               f"{', '.join(metric_columns(bdf, dirs)) or '(none)'}")
    require_comparable({"baseline": base, "candidate": cand}, metrics,
                       args.allow_scorer_mismatch, "regress")
    cand_axes = set(job_axes(cand))
    axes = [a for a in job_axes(base) if a in cand_axes and a not in args.ignore]
    table = regress(bdf, cdf, metrics, dirs, axes, args.margin, args.ignore)
    print(summary(table))
    print(show(table, REGRESS_SHOW))
    if args.out:
        write_table(table, args.out)
    code, verdict = gate_outcome(table)
    if code == 2:
        raise ResultsError(verdict)
    print(f"verdict: {verdict} (margin {args.margin})")
    return code


def cmd_control(args) -> int:
    from analysis import control_output
    from analysis.compare import directions, job_axes, metric_columns
    from analysis.control import control
    from analysis.provenance import require_comparable

    run = _run(args.run_dir)
    df, axes = load_run(run), job_axes(run)
    if df.empty:
        raise ResultsError(f"{run} has no result rows: run its job first")
    if args.bias:
        from analysis.bias import size_bias

        dirs = directions(run)
        metrics = args.metric or metric_columns(df, dirs)
        if not metrics:
            raise ResultsError(f"{run} has no score columns; name one with --metric")
        require_comparable({"": run}, metrics, args.allow_scorer_mismatch, "control --bias size")
        table = size_bias(df, metrics, dirs, axes, args.reference)
        print(show(table, ["level", "aspect", *SHOW[2:]]))
        print(compare_footer(table))
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            write_table(table, str(Path(args.out) / "size_bias.csv"))
        return 0
    if args.metric or args.reference:
        raise ResultsError("control: --metric and --reference go with --bias size; the "
                           "special-tag analysis uses each group's own measure")
    require_comparable({"": run}, control_output.measured_columns(df),
                       args.allow_scorer_mismatch, "control")
    results, trend, notes = control(df, axes, args.group)
    print(control_output.text(results, trend, notes))
    if args.out:
        for path in control_output.write(results, trend, Path(args.out)):
            print(f"-> {path}")
    return 0


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
                        args.dedupe, args.dedupe_threshold, args.caption_source, args.overwrite,
                        args.kohya_layout, args.shard_rows, args.select, args.reject)
    layout = f", {args.kohya_layout} layout" if args.format == "kohya" else ""
    print(f"{n:,} images exported ({args.format}{layout}) -> {args.out}"
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
    c.add_argument("--metric", action="append",
                   help="score column, or `human` for the rating votes (repeatable; default: all)")
    c.add_argument("--reference", help="reference level (default: the axis's first level)")
    c.add_argument("--interaction", nargs=2, metavar=("A", "B"),
                   help="also print the mean of the first metric over the A x B grid")
    c.add_argument("--heatmap", help="with --interaction: write a heatmap PNG")
    c.add_argument("--out", help="write the table to .csv, .parquet or .md")
    c.add_argument("--allow-scorer-mismatch", action="store_true", help=MISMATCH_HELP)
    c.set_defaults(func=cmd_compare)

    r = sub.add_parser("regress", help="candidate run against a baseline run (exit 1 on "
                       "regression, 2 when it cannot decide)")
    r.add_argument("baseline")
    r.add_argument("candidate")
    r.add_argument("--metric", action="append", help="score column (repeatable; default: all)")
    r.add_argument("--margin", type=float, default=0.0,
                   help="tolerated drop: regressed only when the CI lies beyond it")
    r.add_argument("--ignore", action="append", default=[],
                   help="a field allowed to differ between matched tasks (repeatable)")
    r.add_argument("--out", help="write the table to .csv, .parquet or .md")
    r.add_argument("--allow-scorer-mismatch", action="store_true", help=MISMATCH_HELP)
    r.set_defaults(func=cmd_regress)

    k = sub.add_parser("control", help="do the special tags do what the card says: prompted "
                       "against measured level per special-tag axis (or --bias size)")
    k.add_argument("run_dir")
    k.add_argument("--group", action="append", choices=["quality", "rating", "year", "aesthetic"],
                   help="a special-tag group (repeatable; default: every one that is an axis)")
    k.add_argument("--bias", choices=["size"],
                   help="size: the measured scores per size bucket on the same prompts and seeds")
    k.add_argument("--metric", action="append", help="with --bias: score column (repeatable)")
    k.add_argument("--reference", help="with --bias: reference size (default: the squarest)")
    k.add_argument("--out", help="folder for the tables (CSV) and plots (PNG)")
    k.add_argument("--allow-scorer-mismatch", action="store_true", help=MISMATCH_HELP)
    k.set_defaults(func=cmd_control)

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
    e.add_argument("--kohya-layout", default="finetune", choices=LAYOUTS,
                   help="kohya: finetune (metadata.json next to the images, the default) or "
                        "dreambooth (the images in a 1_<name>/ folder)")
    e.add_argument("--shard-rows", type=int, default=SHARD_ROWS,
                   help=f"hf-parquet: images per Parquet shard (default {SHARD_ROWS})")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty target")
    e.add_argument("--select", help="a gallery selection.json: only its keep and starred images")
    e.add_argument("--reject", help="a gallery selection.json: leave out its rejected images")
    e.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="static HTML report (RUN/report/index.html)")
    p.add_argument("run_dir")
    p.add_argument("--baseline", help="a baseline run: adds the regression section")
    p.add_argument("--metric", action="append")
    p.set_defaults(func=cmd_report)

    from analysis.review_cli import add_parsers as add_review_parsers

    add_review_parsers(sub, write_table)  # gallery, rate, agreement

