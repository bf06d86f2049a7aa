"""The order in which the decisive study's pass to its design's seeds trains the arms: soonest decided first.

    python benchmarks/seed_order.py results/published/study-plan.json      # one variant name a line

Every arm still goes to the design's seeds (study.toml's ``seeds``); only the order changes, so that a session
that stops part-way has spent its hours on the arms whose verdicts the extra seeds can settle. The key is the
plan's ``seeds_for_effect`` (``ganbench plan``: the seeds per arm at which the effect observed so far would pass
the strictest step of Holm's correction with 80% power), the smallest over the arm's comparisons; arms the plan
gives no figure for (no effect, or no interval) come last, in the plan's order. The plan is the published one,
rendered from the published records, so the order is fixed by what was published, not by runs in progress.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path


def seeds_needed(row: dict) -> float:
    value = row.get("seeds_for_effect")
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else math.inf


def order(plan: list[dict]) -> list[str]:
    """Variants (the compared arms, then their baselines) by the fewest seeds that would decide any of their
    comparisons; ties keep the plan's order."""
    need: dict[str, float] = {}
    for row in plan:
        need[row["variant"]] = min(need.get(row["variant"], math.inf), seeds_needed(row))
    for row in plan:
        need.setdefault(row["vs"], math.inf)
    return sorted(need, key=lambda v: need[v])          # sorted() is stable: ties stay in the plan's order


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("plan", type=Path, help="a plan as `ganbench plan --format json` writes it")
    args = parser.parse_args()
    try:
        plan = json.loads(args.plan.read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"{args.plan}: {e}", file=sys.stderr)
        return 2
    print("\n".join(order(plan)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
