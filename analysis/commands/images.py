"""`grid`, `report` and `gallery`: what a run's images and numbers look like."""

from __future__ import annotations

import argparse

from animagine_batch.rundir import ResultsError
from animagine_batch.rundir.outputs import check_output
from animagine_batch.rundir.storage import is_remote

from ..context import load_context, run_dir

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


def cmd_grid(args) -> int:
    from ..grid import make_grids

    run = run_dir(args.run_dir)
    if is_remote(run) and not args.out:
        out = None  # RUN/grids on the object storage
    else:
        out = check_output(args.out or run / "grids", "--out",
                           allowed=None if is_remote(run) else run / "grids")
    if out is not None and out.exists() and not out.is_dir():
        raise ResultsError(f"--out {args.out}: is a file; grids are written into a folder")
    ctx = load_context(run, rows=None)
    paths = make_grids(run, ctx.table, ctx.axes, args.x, args.y, args.z, args.where, out,
                       args.cell)
    for p in paths:
        print(p)
    return 0


def cmd_report(args) -> int:
    from ..report import build_report

    run = run_dir(args.run_dir)
    baseline = run_dir(args.baseline) if args.baseline else None
    print(build_report(run, baseline, args.metric or None))
    return 0


def cmd_gallery(args) -> int:
    from ..gallery import build_gallery

    run = run_dir(args.run_dir)
    if args.serve and is_remote(run):
        raise ResultsError(f"gallery --serve: {run} is on object storage, where the server "
                           "cannot save selections; build it without --serve and download the "
                           "selection from the page (export --select reads it)")
    index, counts = build_gallery(run, args.out, args.thumb_size, args.workers)
    print(f"{counts['images']:,} images, {counts['thumbnails']:,} thumbnails ({counts['made']:,} "
          f"made, {counts['kept']:,} already there) -> {index}")
    for error in counts["errors"][:5]:
        print(f"unreadable image: {error}")
    if len(counts["errors"]) > 5:
        print(f"... and {len(counts['errors']) - 5} more unreadable images")
    if args.serve:
        from ..gallery.serve import GalleryApp
        from .people import serve

        ids = set(load_context(run, rows=None).table["task_id"])
        serve(GalleryApp(run, index.parent, ids), args.port, "gallery")
    return 0


def add_parsers(sub) -> None:
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

    p = sub.add_parser("report", help="static HTML report (RUN/report/index.html)")
    p.add_argument("run_dir")
    p.add_argument("--baseline", help="a baseline run: adds the regression section")
    p.add_argument("--metric", action="append")
    p.set_defaults(func=cmd_report)

    g = sub.add_parser("gallery", help="a browsable static gallery of a run (opens from disk)")
    g.add_argument("run_dir")
    g.add_argument("--out", help="folder of the gallery (default: RUN/gallery)")
    g.add_argument("--thumb-size", type=int, default=256, help="thumbnail size in pixels")
    g.add_argument("--workers", type=int, help="thumbnail processes (default: the CPUs)")
    g.add_argument("--serve", action="store_true",
                   help="then serve it on 127.0.0.1, saving selections to RUN/selection.json")
    g.add_argument("--port", type=int, default=8766, help="with --serve (0: any free port)")
    g.set_defaults(func=cmd_gallery)
