"""Error rates of `compare` and `regress` on simulated result tables (analysis/simulate.py).

Tables: prompt effect sd 0.15, seed noise sd 0.1, scores clipped to [0, 1], with and without a
prompt x level interaction (sd 0.05), at (prompts, seeds, levels) = (5, 4, 2), (20, 4, 4),
(50, 8, 4) and (66, 8, 5), null and with planted effects. Figures:

- compare: family-wise rate of false better/worse verdicts, coverage of the true difference by
  the printed (Bonferroni-corrected) interval and by the 95% interval, detection of planted
  effects, and verdicts that disagree with their interval (must be 0);
- regress: false alarms of the gate with 5 metrics and a 2% failure rate in both runs, and
  detection of a planted drop of 0.05 in one metric.

    python benchmarks/stats_validity.py [--reps N]

Prints one line per figure and, last, one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CELLS = [(5, 4, 2), (20, 4, 4), (50, 8, 4), (66, 8, 5)]
PLANTED = {2: [0.0, 0.1], 4: [0.0, -0.05, 0.05, 0.0], 5: [0.0, 0.03, -0.03, 0.0, 0.1]}


def main() -> None:
    from analysis import simulate

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=10_000, help="tables per configuration")
    args = p.parse_args()
    start = time.perf_counter()
    compare, regress = [], []
    for i, (prompts, seeds, levels) in enumerate(CELLS):
        for isd in (0.0, 0.05):
            for effects in ([0.0] * levels, PLANTED[levels]):
                r = simulate.compare_cell(prompts, seeds, effects, args.reps, isd, seed=100 + i)
                compare.append(r)
                print(f"compare {prompts}x{seeds}x{levels} interaction {isd} effects {effects}: "
                      f"false verdicts {r['false_verdicts']:.4f}, coverage min "
                      f"{min(r['coverage']):.4f} (95%: {min(r['coverage_95']):.4f}), detected "
                      f"{r['detected']}, disagreements {r['disagreements']}")
        for isd, drops in ((0.05, [0.0] * 5), (0.0, [-0.05, 0, 0, 0, 0]),
                           (0.05, [-0.05, 0, 0, 0, 0])):
            r = simulate.regress_cell(prompts, seeds, levels, drops, args.reps,
                                      interaction_sd=isd, seed=200 + i)
            regress.append(r)
            print(f"regress {prompts}x{seeds}x{levels} interaction {isd} drops {drops}: false "
                  f"alarms {r['false_alarms']:.4f}, detected {r['detected'][0]}")
    at_50 = [r["detected"][0] for r in regress if r["prompts"] == 50 and r["detected"][0]]
    worst = {"compare_false_verdicts": max(r["false_verdicts"] for r in compare),
             "compare_coverage": min(min(r["coverage"]) for r in compare),
             "compare_coverage_95": min(min(r["coverage_95"]) for r in compare),
             "regress_false_alarms": max(r["false_alarms"] for r in regress),
             "regress_detected_005_at_50": min(at_50)}
    print(f"worst: {worst}")
    print(json.dumps({"benchmark": "stats_validity", "reps": args.reps, "worst": worst,
                      "seconds": round(time.perf_counter() - start, 1), "compare": compare,
                      "regress": regress}))


if __name__ == "__main__":
    main()
