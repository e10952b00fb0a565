"""`control`: do the special tags do what the card says (and `--bias size`)."""

from __future__ import annotations

from pathlib import Path

from animagine_batch.jobspec.tags import SPECIAL_TAG_GROUPS
from animagine_batch.rundir import ResultsError

from ..context import load_context, show, write_table
from .tables import MISMATCH_HELP, SHOW, compare_footer


def cmd_control(args) -> int:
    from .. import control_output
    from ..control import control
    from ..provenance import require_comparable

    ctx = load_context(args.run_dir)
    if args.bias:
        from ..bias import size_bias

        metrics = ctx.metrics(args.metric)
        if not metrics:
            raise ResultsError(f"{ctx.path} has no score columns; name one with --metric")
        require_comparable({"": ctx.path}, metrics, args.allow_scorer_mismatch,
                           "control --bias size")
        table = size_bias(ctx.table, metrics, ctx.directions, ctx.axes, args.reference)
        print(show(table, ["level", "aspect", *SHOW[2:]]))
        print(compare_footer(table))
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            write_table(table, str(Path(args.out) / "size_bias.csv"))
        return 0
    if args.metric or args.reference:
        raise ResultsError("control: --metric and --reference go with --bias size; the "
                           "special-tag analysis uses each group's own measure")
    require_comparable({"": ctx.path}, control_output.measured_columns(ctx.table),
                       args.allow_scorer_mismatch, "control")
    results, trend, notes = control(ctx.table, ctx.axes, args.group)
    print(control_output.text(results, trend, notes))
    if args.out:
        for path in control_output.write(results, trend, Path(args.out)):
            print(f"-> {path}")
    return 0


def add_parsers(sub) -> None:
    k = sub.add_parser("control", help="do the special tags do what the card says: prompted "
                       "against measured level per special-tag axis (or --bias size)")
    k.add_argument("run_dir")
    k.add_argument("--group", action="append", choices=list(SPECIAL_TAG_GROUPS),
                   help="a special-tag group (repeatable; default: every one that is an axis)")
    k.add_argument("--bias", choices=["size"],
                   help="size: the measured scores per size bucket on the same prompts and seeds")
    k.add_argument("--metric", action="append", help="with --bias: score column (repeatable)")
    k.add_argument("--reference", help="with --bias: reference size (default: the squarest)")
    k.add_argument("--out", help="folder for the tables (CSV) and plots (PNG)")
    k.add_argument("--allow-scorer-mismatch", action="store_true", help=MISMATCH_HELP)
    k.set_defaults(func=cmd_control)
