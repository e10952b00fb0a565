"""Which two images a rater sees next.

A candidate is two images of the same prompt, seed and every other factor that differ only in
the rated axis (the pairing of `compare`). The next pair is chosen in three steps: the pair of
levels with the fewest votes (or, when active, the one whose order is most uncertain), then the
prompt with the fewest votes for that pair of levels, then its least-voted candidate that this
rater has not seen; ties are broken at random. Votes so far (from earlier sessions too) count.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import numpy as np
import pandas as pd

from animagine_batch.rundir import ResultsError

from .compare import group_codes, pair_key
from .human import fit_strengths


@dataclass(frozen=True)
class Pair:
    index: int
    prompt_key: str
    seed: int
    task_a: str
    task_b: str
    level_a: str
    level_b: str
    image_a: str
    image_b: str
    prompt: str | None  # the content prompt, when both images share it


class PairScheduler:
    def __init__(self, df: pd.DataFrame, by: str, levels: list, axes: list[str],
                 votes: pd.DataFrame | None = None, active: bool = False, seed: int | None = None):
        ok = df[(df["status"] == "ok") & df["image_path"].notna() & df[by].isin(levels)]
        self.by, self.levels, self.active = by, [str(x) for x in levels], active
        self.rng = random.Random(seed)
        key = pair_key(ok, by, axes)
        groups = group_codes(ok, key)
        level_code = {str(x): i for i, x in enumerate(levels)}
        pairs = list(itertools.combinations(range(len(levels)), 2))
        self.level_pairs = pairs
        records, rows = [], ok.to_dict("records")
        for members in pd.Series(range(len(ok))).groupby(groups).groups.values():
            at = {level_code[str(rows[i][by])]: rows[i] for i in members}
            for k, (a, b) in enumerate(pairs):
                if a in at and b in at:
                    records.append((k, at[a], at[b]))
        if not records:
            raise ResultsError(f"rate --by {by}: no two finished images differ only in {by} "
                               f"(levels {', '.join(self.levels)}); nothing to rate")
        self.candidates = []
        for i, (k, ra, rb) in enumerate(records):
            same = ra.get("content_prompt") == rb.get("content_prompt")
            self.candidates.append(Pair(i, str(ra["prompt_key"]), int(ra["seed"]), ra["task_id"],
                                        rb["task_id"], str(ra[by]), str(rb[by]),
                                        ra["image_path"], rb["image_path"],
                                        ra.get("content_prompt") if same else None))
        self.cand_pair = np.array([r[0] for r in records])
        prompts, self.cand_prompt = np.unique([c.prompt_key for c in self.candidates],
                                              return_inverse=True)
        self.cand_votes = np.zeros(len(records))
        self.prompt_votes = np.zeros((len(prompts), len(pairs)))
        self.pair_votes = np.zeros(len(pairs))
        self.wins = np.zeros((len(levels), len(levels)))
        self.seen: dict[str, set[int]] = {}
        self.by_tasks = {frozenset((c.task_a, c.task_b)): c.index for c in self.candidates}
        for v in (votes if votes is not None else pd.DataFrame()).itertuples():
            if v.axis == by:
                self.record(self.by_tasks.get(frozenset((v.left_task, v.right_task))), v.rater,
                            v.choice, v.left_task)

    def record(self, index: int | None, rater: str, choice: str, left_task: str) -> None:
        """Count a vote on candidate `index` (skips count as seen, not as votes)."""
        if index is None:
            return
        self.seen.setdefault(rater, set()).add(index)
        if choice == "skip":
            return
        c, k = self.candidates[index], self.cand_pair[index]
        self.cand_votes[index] += 1
        self.prompt_votes[self.cand_prompt[index], k] += 1
        self.pair_votes[k] += 1
        if choice in ("left", "right"):
            a_won = (choice == "left") == (left_task == c.task_a)
            i, j = self.level_pairs[k]
            self.wins[(i, j) if a_won else (j, i)] += 1

    def _pick(self, values: np.ndarray, among: np.ndarray) -> int:
        best = values[among].min()
        return int(self.rng.choice(list(among[values[among] == best])))

    def next(self, rater: str) -> tuple[Pair, bool]:
        """The next candidate for `rater` and whether its first image goes on the left."""
        present = np.unique(self.cand_pair)
        if self.active and self.wins.sum() > 0:
            theta = fit_strengths(self.wins)
            s = np.array([1 / (1 + np.exp(theta[j] - theta[i])) for i, j in self.level_pairs])
            priority = -(s * (1 - s)) / (self.pair_votes + 1)  # near a coin flip, few votes
            k = self._pick(priority, present)
        else:
            k = self._pick(self.pair_votes, present)
        in_pair = np.flatnonzero(self.cand_pair == k)
        prompts = np.unique(self.cand_prompt[in_pair])
        prompt = self._pick(self.prompt_votes[:, k], prompts)
        options = in_pair[self.cand_prompt[in_pair] == prompt]
        unseen = np.array([i for i in options if i not in self.seen.get(rater, ())], dtype=int)
        index = self._pick(self.cand_votes, unseen if len(unseen) else options)
        return self.candidates[index], self.rng.random() < 0.5
