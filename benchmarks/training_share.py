"""How much of each run's wall time went to training, from the records (issue 18's goal: >= 85% in the study).

    python benchmarks/training_share.py results/published/records --protocol study
    python benchmarks/training_share.py results/study --protocol study --variant adam-lr-1e-3 --variant default-init

A run's share is ``train_seconds / wall_seconds`` from its summary.json (every session's wall time, each
earlier one up to its last checkpoint; recorded since 2026-12-01), else, for a run trained within one session,
``train_seconds / wall_seconds_last_session``. A run resumed before ``wall_seconds`` was recorded has only its
last session's wall time against the training time of all of them: its share is listed as "unknown" and left
out of the range.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd


def shares(root: Path, protocol: str, variants: list[str] | None = None) -> pd.DataFrame:
    rows = []
    for path in sorted((root / protocol).glob("*/seed-*/summary.json")):
        variant, seed = path.parent.parent.name, int(path.parent.name.removeprefix("seed-"))
        summary = json.loads(path.read_text())
        if summary.get("status") not in ("complete", "diverged") or (variants and variant not in variants):
            continue
        train = summary.get("train_seconds")
        wall = summary.get("wall_seconds")   # every session's wall time
        if wall is None and not summary.get("resumed"):
            wall = summary.get("wall_seconds_last_session")
        rows.append({"variant": variant, "seed": seed, "resumed": bool(summary.get("resumed")), "train_s": train,
                     "wall_s": wall, "share": train / wall if train and wall else None})
    return pd.DataFrame(rows, columns=["variant", "seed", "resumed", "train_s", "wall_s", "share"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="run records, e.g. results/published/records")
    ap.add_argument("--protocol", default="study")
    ap.add_argument("--variant", action="append", help="only these variants (repeatable)")
    args = ap.parse_args()
    df = shares(args.results, args.protocol, args.variant)
    if df.empty:
        print(f"{args.results / args.protocol}: no finished runs", file=sys.stderr)
        sys.exit(2)
    shown = df.assign(share=df["share"].map(lambda s: "unknown" if pd.isna(s) else f"{s:.1%}"))
    print(shown.round({"train_s": 0, "wall_s": 0}).to_string(index=False))
    timed = df.dropna(subset=["share"])
    known = timed["share"]
    print(f"\nruns with their whole wall time recorded: {len(known)} of {len(df)}"
          + (f"; training {known.min():.1%}-{known.max():.1%} of it (median {known.median():.1%})" if len(known) else ""))
    if len(known):   # the goal is the study's wall time, not a typical run's: the runs' seconds pooled
        train, wall = timed["train_s"].sum(), timed["wall_s"].sum()
        print(f"pooled over those runs: {train:,.0f} s training of {wall:,.0f} s wall time, {train / wall:.1%}")


if __name__ == "__main__":
    main()
