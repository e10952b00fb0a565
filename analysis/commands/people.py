"""`rate`, `agreement` and the human rows of `compare --metric human`: what people make of a
run's images."""

from __future__ import annotations

import pandas as pd

from animagine_batch.rundir import ResultsError
from animagine_batch.rundir.storage import is_remote

from ..context import RunContext, load_context, write_table

HUMAN_SHOW = ["axis", "level", "reference", "n_votes", "n_ties", "n_prompts", "strength",
              "ci_low", "ci_high", "ci_level", "prefer", "prefer_low", "prefer_high", "win_rate",
              "p_adj", "verdict"]
AGREEMENT_SHOW = ["metric", "n_votes", "n_prompts", "agreement", "ci_low", "ci_high",
                  "ci_level", "p_adj", "verdict"]


def _fmt(df: pd.DataFrame, columns: list[str]) -> str:
    return df[[c for c in columns if c in df.columns]].to_string(
        index=False, float_format=lambda v: f"{v:.4g}")


def human_table(ctx: RunContext, by: str | None, reference=None) -> pd.DataFrame:
    """`compare --metric human`: the human-preference rows of one axis, printed with a footer."""
    from ..human import compare_human
    from ..ratings import read_votes

    if not by:
        raise ResultsError("--metric human needs --by AXIS: votes compare the levels of one axis")
    votes, torn = read_votes(ctx.path)
    table = compare_human(ctx.table, votes, by, ctx.levels(by), reference)
    print(_fmt(table, HUMAN_SHOW))
    print(human_footer(votes, by, torn))
    return table


def human_footer(votes: pd.DataFrame, by: str, torn: int = 0) -> str:
    from ..stats import MIN_PROMPTS

    v = votes[votes["axis"] == by]
    counts = v["choice"].value_counts()
    lines = [f"human: {len(v):,} votes by {v['rater'].nunique()} raters on "
             f"{v['prompt_key'].nunique()} prompts ({int(counts.get('tie', 0))} ties and "
             f"{int(counts.get('skip', 0))} skips, which do not enter the strengths)",
             "strength: Bradley-Terry log-odds that a rater prefers the level to the reference "
             "(choix); prefer: that probability. Interval: jackknife over prompts with t on "
             "prompts - 1 df (the vote-level interval where wider), Bonferroni-corrected across "
             f"levels; fewer than {MIN_PROMPTS} prompts with votes: no verdict"]
    if torn:
        lines.append(f"{torn} torn last lines of vote files (a crash mid-write) were skipped")
    return "\n".join(lines)


def serve(app, port: int, what: str) -> None:
    """Serve a page on 127.0.0.1 until interrupted."""
    from ..webserver import make_server, serve_forever

    if not 0 <= port <= 65535:
        raise ResultsError(f"--port {port}: allowed: 0 (any free port) to 65535")
    try:
        server = make_server(app, port)
    except OSError as e:
        raise ResultsError(f"--port {port}: cannot listen on 127.0.0.1:{port} ({e.strerror}); "
                           "choose another port, or 0 for any free one") from None
    serve_forever(server, what)


def rate_levels(ctx: RunContext, by: str, wanted: list[str] | None) -> list:
    df = ctx.table
    if by not in df.columns or by == "prompt_key":
        raise ResultsError(f"--by {by}: not an axis of this run; axes: {', '.join(ctx.axes)}")
    ok = df[df["status"] == "ok"]
    present = list(pd.unique(ok[by].dropna()))
    declared = ctx.levels(by)
    order = [v for v in declared if v in present] + [v for v in present if v not in declared]
    if wanted:
        unknown = [w for w in wanted if w not in {str(v) for v in order}]
        if unknown:
            raise ResultsError(f"--levels {' '.join(unknown)}: not a level of {by} with finished "
                               f"images; levels: {', '.join(map(str, order))}")
        order = [v for v in order if str(v) in wanted]
    if len(order) < 2:
        raise ResultsError(f"--by {by}: rating needs two levels with finished images; found "
                           f"{', '.join(map(str, order)) or 'none'}")
    return order


def cmd_rate(args) -> int:
    from ..rate_server import RatingApp

    ctx = load_context(args.run_dir)
    if is_remote(ctx.path):
        raise ResultsError(f"rate: {ctx.path} is on object storage; the rating server appends "
                           "votes to files inside a local run directory: copy the run to a "
                           "folder first (for S3: aws s3 sync) and rate it there")
    levels = rate_levels(ctx, args.by, args.levels)
    app = RatingApp(ctx.path, ctx.table, args.by, levels, ctx.axes, args.active, args.seed)
    print(f"rating {args.by}: {', '.join(map(str, levels))}; "
          f"{len(app.scheduler.candidates):,} pairs; votes -> {ctx.path / 'ratings'}", flush=True)
    try:
        serve(app, args.port, "rating page")
    finally:
        app.log.close()
    return 0


def cmd_agreement(args) -> int:
    from ..agreement import agreement_table, inter_rater, inter_rater_text, rank_correlations
    from ..ratings import read_votes

    ctx = load_context(args.run_dir, rows=None)
    votes, torn = read_votes(ctx.path)
    if votes.empty:
        raise ResultsError(f"{ctx.path} has no votes in ratings/; collect some with "
                           "`animagine-batch rate RUN --by AXIS`")
    metrics = ctx.metrics(args.metric)
    if not metrics:
        raise ResultsError(f"{ctx.path} has no score columns to compare with the votes")
    table = agreement_table(ctx.table, votes, metrics, ctx.directions)
    print(_fmt(table, AGREEMENT_SHOW))
    rho = rank_correlations(ctx.table, votes, metrics, {a: ctx.levels(a)
                                                         for a in set(votes["axis"])})
    if len(rho):
        print("\nrank correlation of each metric's level means with the human strengths "
              "(Spearman, descriptive):")
        print(rho.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    else:
        print("\nrank correlation: needs an axis with three or more rated levels")
    print("\n" + inter_rater_text(inter_rater(votes)))
    print("agreement: share of decisive votes where the metric scores the preferred image "
          "better (equal scores count half); interval: jackknife over prompts on the log-odds, "
          "Bonferroni-corrected across metrics; the test is against chance (0.5)")
    if torn:
        print(f"{torn} torn last lines of vote files (a crash mid-write) were skipped")
    if args.out:
        write_table(table, args.out)
    return 0


def add_parsers(sub) -> None:
    r = sub.add_parser("rate", help="blind pairwise rating of an axis's levels on 127.0.0.1")
    r.add_argument("run_dir")
    r.add_argument("--by", required=True, help="the axis whose levels are compared")
    r.add_argument("--levels", nargs="+", help="only these levels (default: all)")
    r.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free port)")
    r.add_argument("--active", action="store_true",
                   help="favour pairs of levels whose order is still uncertain")
    r.add_argument("--seed", type=int, help="seed of the pair choice (default: random)")
    r.set_defaults(func=cmd_rate)

    a = sub.add_parser("agreement", help="how well each metric agrees with the human votes")
    a.add_argument("run_dir")
    a.add_argument("--metric", action="append", help="score column (repeatable; default: all)")
    a.add_argument("--out", help="write the table to .csv, .parquet or .md")
    a.set_defaults(func=cmd_agreement)
