"""The one scoring loop: scorers over a batch of images, their columns written into the images'
rows. Generation calls it on a unit's images while they are in memory (`engine/finish.py`);
`animagine-batch score` on a chunk of a run's PNGs (`score.py`)."""

from __future__ import annotations


def score(scorers, images: list, rows: list[dict]) -> None:
    """Run every scorer on `images` (PIL, aligned with `rows`) and put its columns into the
    rows; a scorer that returns a column of another length is an error naming it."""
    if not scorers or not images:
        return
    for scorer in scorers:
        for column, values in scorer(images, rows).items():
            if len(values) != len(rows):
                raise ValueError(f"scorer {getattr(scorer, 'name', scorer)!r} gave {len(values)} "
                                 f"values of {column} for {len(rows)} images")
            for row, value in zip(rows, values):
                row[column] = value
