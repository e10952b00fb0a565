"""Blind pairwise rating of a run's images, served on 127.0.0.1 (`animagine-batch rate`).

The page shows two images of the same prompt and seed from two levels of one axis, in random
order and without labels; the images are re-encoded without their PNG text chunks, so neither
the file name nor the infotext tells the level. Each vote (left, right, tie or skip) is appended
to `<run>/ratings/` (analysis.ratings) before the page is told it is saved.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections import OrderedDict
from pathlib import Path

import pandas as pd
from PIL import Image

from . import ratings
from .pairs import Pair, PairScheduler
from .webserver import file_reply, json_reply

STATIC = Path(__file__).parent / "gallery" / "static"
MAX_OPEN = 10_000  # pairs handed out and not yet voted on, per server


class RatingApp:
    def __init__(self, run_dir: Path, df: pd.DataFrame, by: str, levels: list, axes: list[str],
                 active: bool = False, seed: int | None = None):
        self.run_dir, self.by = Path(run_dir), by
        votes, _ = ratings.read_votes(run_dir)
        self.scheduler = PairScheduler(df, by, levels, axes, votes, active, seed)
        self.mode = "active" if active else "balanced"
        self.log = ratings.VoteLog(run_dir)
        self.open: OrderedDict[str, tuple[Pair, bool, float]] = OrderedDict()
        self.counts: dict[str, int] = votes[votes["axis"] == by].groupby("rater").size().to_dict()
        self.lock = threading.Lock()

    def get(self, path: str, query: dict):
        if path in ("/", "/index.html"):
            return file_reply(STATIC, "rate.html")
        if path in ("/rate.js", "/rate.css"):
            return file_reply(STATIC, path)
        if path == "/api/next":
            return self.next_pair(query.get("rater"))
        if path.startswith("/image/"):
            return self.image(path)
        return json_reply(404, {"error": f"no such page: {path}"})

    def post(self, path: str, body: dict):
        if path != "/api/vote":
            return 404, {"error": f"no such endpoint: {path}"}
        return self.vote(body)

    def next_pair(self, rater):
        try:
            rater = ratings.check_rater(rater)
        except ValueError as e:
            return json_reply(400, {"error": str(e)})
        with self.lock:
            pair, a_left = self.scheduler.next(rater)
            token = secrets.token_urlsafe(12)
            self.open[token] = (pair, a_left, time.monotonic())
            while len(self.open) > MAX_OPEN:
                self.open.popitem(last=False)
            done = self.counts.get(rater, 0)
        return json_reply(200, {"token": token, "left": f"/image/{token}/left",
                                "right": f"/image/{token}/right", "prompt": pair.prompt,
                                "votes": done, "candidates": len(self.scheduler.candidates)})

    def image(self, path: str):
        _, _, token, side = (path.split("/") + ["", ""])[:4]
        entry = self.open.get(token)
        if entry is None or side not in ("left", "right"):
            return json_reply(404, {"error": "no such pair (the server was restarted?)"})
        pair, a_left, _ = entry
        rel = pair.image_a if (side == "left") == a_left else pair.image_b
        with Image.open(self.run_dir / rel) as im:
            buf = io.BytesIO()
            im.convert("RGB").save(buf, format="PNG", compress_level=1)  # no text chunks
        return 200, "image/png", buf.getvalue()

    def vote(self, body: dict):
        try:
            rater = ratings.check_rater(body.get("rater"))
        except ValueError as e:
            return 400, {"error": str(e)}
        choice = body.get("choice")
        if choice not in ratings.CHOICES:
            return 400, {"error": f"choice {choice!r}: allowed: {', '.join(ratings.CHOICES)}"}
        with self.lock:
            entry = self.open.pop(str(body.get("token")), None)
            if entry is None:
                return 409, {"error": "this pair was already voted on or has expired; "
                                      "load the next one"}
            pair, a_left, shown = entry
            left, right = (pair.task_a, pair.task_b) if a_left else (pair.task_b, pair.task_a)
            levels = (pair.level_a, pair.level_b) if a_left else (pair.level_b, pair.level_a)
            record = {"vote_id": secrets.token_hex(8), "time": ratings.now(), "rater": rater,
                      "axis": self.by, "prompt_key": pair.prompt_key, "seed": pair.seed,
                      "left_task": left, "right_task": right, "left_level": levels[0],
                      "right_level": levels[1], "choice": choice, "mode": self.mode,
                      "shown_ms": int((time.monotonic() - shown) * 1000)}
            self.log.append(record)
            self.scheduler.record(pair.index, rater, choice, left)
            self.counts[rater] = self.counts.get(rater, 0) + 1
            return 200, {"saved": True, "votes": self.counts[rater]}
