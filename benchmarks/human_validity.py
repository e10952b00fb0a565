"""Error rates of `compare --metric human` and `agreement` over many simulated sets of votes
(analysis/simulate_votes.py): coverage of the planted strengths, false verdicts, detection of a
planted preference, and coverage of a planted agreement rate.

    python benchmarks/human_validity.py [--reps N]

Prints one line per configuration and, last, one JSON object with all of them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# (prompts, votes per prompt, strengths, prompt-to-prompt sd)
HUMAN = [(5, 12, [0.0, 0.8], 0.0), (5, 12, [0.0, 0.0], 0.3), (10, 12, [0.0, 0.5, 1.0], 0.3),
         (20, 10, [0.0, 0.4, -0.4, 0.0], 0.3), (20, 10, [0.0, 0.8], 0.3),
         (50, 10, [0.0, 0.3, 0.0, 0.6, 0.0], 0.3), (66, 10, [0.0, 0.0, 0.0, 0.0, 0.0], 0.3)]
# (prompts, votes per prompt, agreement rate, prompt-to-prompt sd)
AGREEMENT = [(5, 10, 0.8, 0.0), (5, 4, 0.9, 0.0), (5, 20, 0.99, 0.0), (20, 10, 0.8, 0.1),
             (50, 6, 0.8, 0.1), (50, 6, 0.6, 0.1)]


def main() -> int:
    from analysis import simulate_votes as sv

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5000, help="sets of votes per configuration")
    args = ap.parse_args()
    human, agreement = [], []
    for k, (prompts, votes, strengths, sd) in enumerate(HUMAN):
        r = sv.human_cell(prompts, votes, strengths, args.reps, prompt_sd=sd, seed=100 + k)
        human.append(r)
        print(f"human {prompts}x{votes} {strengths} sd {sd}: coverage {r['coverage']} "
              f"(95%: {r['coverage_95']}, planted {r['coverage_planted']}), false verdicts "
              f"{r['false_verdicts']}, detected {r['detected']}", flush=True)
    for k, (prompts, votes, rate, sd) in enumerate(AGREEMENT):
        r = sv.agreement_cell(prompts, votes, rate, args.reps, prompt_sd=sd, seed=200 + k)
        agreement.append(r)
        print(f"agreement {prompts}x{votes} rate {rate} sd {sd}: coverage {r['coverage']}, mean "
              f"estimate {r['mean_estimate']}, agrees {r['agrees']}", flush=True)
    worst = {"human_coverage_95": min(min(r["coverage_95"]) for r in human),
             "human_coverage_planted": min(min(r["coverage_planted"]) for r in human),
             "human_false_verdicts": max(r["false_verdicts"] for r in human),
             "agreement_coverage": min(r["coverage"] for r in agreement)}
    print(json.dumps({"benchmark": "human_validity", "reps": args.reps, "human": human,
                      "agreement": agreement, "worst": worst}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
