"""`table`, `compare` and `regress`: a run's table, paired comparisons of its levels, and a
candidate run against a baseline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from animagine_batch.rundir import ResultsError

from ..context import load_context, run_dir, show, table_out, write_table

SHOW = ["axis", "level", "reference", "metric", "n_pairs", "n_prompts", "mean_reference",
        "mean_level", "mean_diff", "ci_low", "ci_high", "ci_level", "win_rate", "p_adj", "verdict"]
MISMATCH_HELP = ("compare a metric even when its values come from scorers that differ in "
                 "weights or preprocessing")
REGRESS_SHOW = ["scope", "level", "metric", "matched", "n_pairs", "n_prompts", "mean_baseline",
                "mean_candidate", "delta", "ci_low", "ci_high", "ci_level", "p_adj", "verdict"]


def cmd_table(args) -> int:
    suffixes = (".parquet", ".csv")
    table_out(args.out, suffixes=suffixes)
    df = load_context(args.run_dir, rows=None).table
    if Path(args.out).suffix == ".csv":  # binary columns (embeddings) have no CSV form
        df = df.drop(columns=[c for c in df.columns if df[c].dtype == object and len(df)
                              and isinstance(df[c].iloc[0], bytes)])
    write_table(df, args.out, suffixes)
    return 0


def cmd_compare(args) -> int:
    from ..compare import compare, interaction, marginal_effects
    from ..provenance import require_comparable

    run = run_dir(args.run_dir)
    table_out(args.out)
    table_out(args.heatmap, "--heatmap", (".png",))
    ctx = load_context(run)
    human = None
    if args.metric and "human" in args.metric:  # votes of people (analysis.human)
        from .people import human_table

        human = human_table(ctx, args.by, args.reference)
        args.metric = [m for m in args.metric if m != "human"]
        if not args.metric:
            if args.out:
                write_table(human, args.out)
            return 0
        print()
    metrics = ctx.metrics(args.metric)
    if not metrics:
        raise ResultsError(f"{ctx.path} has no score columns; name one with --metric")
    require_comparable({"": ctx.path}, metrics, args.allow_scorer_mismatch, "compare")
    df, axes, dirs = ctx.table, ctx.axes, ctx.directions
    inter = interaction(df, *args.interaction, metrics[0], axes) if args.interaction else None
    if args.by:
        table = compare(df, args.by, metrics, dirs, axes, args.reference, ctx.levels(args.by))
    else:
        table = marginal_effects(df, metrics, dirs, axes, ctx.path)
    if table.empty:
        print("nothing to compare: no axis has two levels")
    else:
        print(show(table, SHOW))
        print(compare_footer(table))
    if inter is not None:
        a, b = args.interaction
        print(f"\n{metrics[0]} by {a} x {b}:\n{inter.to_string(float_format=lambda v: f'{v:.4g}')}")
        if args.heatmap:
            from .. import plots

            plots.heatmap(inter, metrics[0], Path(args.heatmap))
            print(f"heatmap -> {args.heatmap}")
    if args.out:
        write_table(table if human is None else pd.concat([human, table]), args.out)
    return 0


def compare_footer(table: pd.DataFrame) -> str:
    from ..stats import MIN_PROMPTS, TOO_FEW

    lines = ["intervals and p-values: t over per-prompt mean differences, Bonferroni-corrected "
             "across the levels of each axis and metric (ci_level, p_adj)"]
    few = table[table["verdict"] == TOO_FEW]
    if len(few):
        lines.append(f"too few prompts: {len(few)} rows have fewer than {MIN_PROMPTS} prompts "
                     f"with pairs (at most {int(few['n_prompts'].max())}); no verdict is given")
    return "\n".join(lines)


def cmd_regress(args) -> int:
    from ..compare import metric_columns
    from ..provenance import require_comparable
    from ..regress import gate_outcome, regress, summary

    runs = run_dir(args.baseline), run_dir(args.candidate)
    table_out(args.out)
    base, cand = load_context(runs[0], rows="baseline"), load_context(runs[1], rows="candidate")
    dirs = {**base.directions, **cand.directions}
    metrics = args.metric or metric_columns(base.table, dirs)
    if not metrics:
        raise ResultsError(f"the baseline {base.path} has no score columns; name one with "
                           "--metric")
    for ctx in (base, cand):
        missing = [m for m in metrics if m not in ctx.table.columns]
        if missing:
            raise ResultsError(f"--metric {', '.join(missing)}: no such column in {ctx.path}; a "
                               "metric must be in both runs; the baseline's metrics: "
                               f"{', '.join(metric_columns(base.table, dirs)) or '(none)'}")
    require_comparable({"baseline": base.path, "candidate": cand.path}, metrics,
                       args.allow_scorer_mismatch, "regress")
    axes = [a for a in base.axes if a in set(cand.axes) and a not in args.ignore]
    table = regress(base.table, cand.table, metrics, dirs, axes, args.margin, args.ignore)
    print(summary(table))
    print(show(table, REGRESS_SHOW))
    if args.out:
        write_table(table, args.out)
    code, verdict = gate_outcome(table)
    if code == 2:
        raise ResultsError(verdict)
    print(f"verdict: {verdict} (margin {args.margin})")
    return code


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
