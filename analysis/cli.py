"""The analysis subcommands of `animagine-batch` (table, compare, regress, control, grid,
report, gallery, rate, agreement). They import neither Hydra nor the generation stack, so they
run where only the analysis dependencies are installed; `animagine_batch/cli.py` adds them to
its parser."""

from __future__ import annotations

from .commands import control, images, people, tables


def add_parsers(sub) -> None:
    """Register every analysis subcommand on an argparse subparsers object."""
    for area in (tables, control, images, people):
        area.add_parsers(sub)
