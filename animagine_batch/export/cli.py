"""`animagine-batch export`: its command-line options, whose choices are the registries'."""

from __future__ import annotations

from .base import SHARD_ROWS
from .captions import SOURCES
from .formats import FORMATS
from .kohya import LAYOUTS


def cmd_export(args) -> int:
    from ..rundir.layout import named_run

    from . import export

    run = named_run(args.run_dir)
    n, damaged = export(run, args.format, args.out, args.where, args.min_aesthetic,
                        args.dedupe, args.dedupe_threshold, args.caption_source, args.overwrite,
                        args.kohya_layout, args.shard_rows, args.select, args.reject)
    layout = f", {args.kohya_layout} layout" if args.format == "kohya" else ""
    print(f"{n:,} images exported ({args.format}{layout}) -> {args.out}"
          + (f"; {len(damaged):,} damaged image(s) left out" if damaged else ""))
    return 0


def add_parsers(sub) -> None:
    e = sub.add_parser("export", help="filtered, captioned dataset export (kohya or hf-parquet)")
    e.add_argument("run_dir")
    e.add_argument("--format", required=True, choices=list(FORMATS))
    e.add_argument("--out", required=True, help="target folder (must be empty unless --overwrite)")
    e.add_argument("--where", help="pandas query over the results table")
    e.add_argument("--min-aesthetic", type=float, help="keep images with aesthetic_score >= X")
    e.add_argument("--dedupe", action="store_true",
                   help="also drop near-duplicates by CLIP image-embedding cosine")
    e.add_argument("--dedupe-threshold", type=float, default=0.95,
                   help="cosine above which two images are near-duplicates (default 0.95)")
    e.add_argument("--caption-source", default="prompt", choices=list(SOURCES),
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
