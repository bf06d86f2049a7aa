"""Stage (e) of the decisive study: which arms to replicate on Fashion-MNIST, chosen from the MNIST study's records.

    python benchmarks/choose_replicate.py RESULTS --protocol study                      # the choice and why
    python benchmarks/choose_replicate.py RESULTS --protocol study --write benchmarks/replicate.toml

The rule (issue 18, stated in results/published/README.md before the study's results): replicate, with the same
design on Fashion-MNIST, every arm of a tested claim

- whose effect lies **within a factor 1.5 of its MDE** (the smallest effect the design detects at 80% power):
  |effect| between MDE / 1.5 and 1.5 x MDE on the endpoint's scale (the log of the ratio for FID-like metrics,
  the difference otherwise), i.e. at the edge of what the MNIST study can see; or
- whose **MNIST result saturates**: on a modes endpoint both arms found every class (10 of 10), or on the
  representation probe both arms' accuracy is at or above the ceiling (``--probe-ceiling``, 0.97), where MNIST
  cannot tell the arms apart.

Each chosen arm comes with its claim's baseline arm. ``--write`` writes a suite file: the study's suite with
``dataset = "fashion-mnist"``, its own protocol name, and the chosen arms.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pandas as pd

from ganbench.report import build_report
from ganbench.statistics import LOG_RATIO

FACTOR = 1.5
PROBE_CEILING = 0.97
CLASSES = 10                     # MNIST's modes


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def near_mde(row, factor: float = FACTOR) -> str | None:
    """Why this claim row's effect is within ``factor`` of its MDE, or None."""
    if not (_finite(row.estimate) and _finite(row.mde)):
        return None
    mde = math.log(row.mde) if row.scale == LOG_RATIO else row.mde
    effect = abs(row.estimate)
    if mde <= 0 or not mde / factor <= effect <= mde * factor:
        return None
    return f"{row.claim}: {row.metric} {row.effect} within {factor}x of its MDE ({row.mde:.3g}{'x' if row.scale == LOG_RATIO else ''})"


def mean_of(aggregates: pd.DataFrame, variant: str, metric: str) -> float | None:
    rows = aggregates[(aggregates["variant"] == variant) & (aggregates["metric"] == metric)]
    return float(rows["mean"].iloc[0]) if len(rows) and _finite(float(rows["mean"].iloc[0])) else None


def saturated(row, aggregates: pd.DataFrame, ceiling: float = PROBE_CEILING) -> str | None:
    """Why MNIST cannot tell this claim row's arms apart on its endpoint, or None."""
    arms = (row.variant, row.baseline)
    if row.metric == "modes":
        modes = [mean_of(aggregates, a, "modes") for a in arms]
        if all(m is not None and m >= CLASSES for m in modes):
            return f"{row.claim}: both arms found all {CLASSES} modes"
    if row.metric in ("probe_acc", "probe_gain"):
        acc = [mean_of(aggregates, a, "probe_acc") for a in arms]
        if all(a is not None and a >= ceiling for a in acc):
            return f"{row.claim}: both arms' probe accuracy >= {ceiling}"
    return None


def probe_at_ceiling(aggregates: pd.DataFrame, baseline: str, ceiling: float = PROBE_CEILING) -> dict[str, str]:
    """Arms whose representation probe is at the ceiling together with the baseline's (the report's
    representation comparison, which no claim row carries)."""
    base = mean_of(aggregates, baseline, "probe_acc")
    if base is None or base < ceiling:
        return {}
    out = {}
    for variant in dict.fromkeys(aggregates["variant"]):
        acc = mean_of(aggregates, variant, "probe_acc")
        if variant != baseline and acc is not None and acc >= ceiling:
            out[variant] = f"representation: probe accuracy {acc:.3f} and the baseline's {base:.3f} >= {ceiling}"
    return out


def choose(claims: pd.DataFrame, aggregates: pd.DataFrame, baseline: str = "dcgan", factor: float = FACTOR,
           ceiling: float = PROBE_CEILING) -> dict[str, list[str]]:
    """Arm -> the reasons it is replicated (baseline arms included, with the claims they serve)."""
    chosen: dict[str, list[str]] = {}
    tested = claims[claims["verdict"] != "untested"]
    for row in tested.itertuples():
        why = near_mde(row, factor) or saturated(row, aggregates, ceiling)
        if why:
            chosen.setdefault(row.variant, []).append(why)
            chosen.setdefault(row.baseline, []).append(f"baseline of {row.claim}")
    for variant, why in probe_at_ceiling(aggregates, baseline, ceiling).items():
        chosen.setdefault(variant, []).append(why)
        chosen.setdefault(baseline, []).append("baseline of the representation comparison")
    return chosen


def suite_text(study_suite: Path, chosen: list[str], name: str) -> str:
    """The study's suite file with Fashion-MNIST, its own name and the chosen arms (comments say where from)."""
    text = study_suite.read_text()
    body = text[text.index("[protocol]"):]
    body = re.sub(r'(?m)^dataset = ".*"$', 'dataset = "fashion-mnist"', body)
    body = re.sub(r'(?m)^description = ".*"$', f'description = "replicate of {study_suite.stem} on Fashion-MNIST: '
                  'same design, the arms stage (e) chose"', body)
    body = body.replace("[protocol]\n", f'[protocol]\nname = "{name}"\n', 1)
    variants = ", ".join(f'"{v}"' for v in chosen)
    seeds = re.search(r"(?m)^seeds = \d+$", text)
    return (f"# Stage (e): the arms of {study_suite.name} replicated on Fashion-MNIST, chosen from its MNIST records by\n"
            f"# benchmarks/choose_replicate.py (rule: its docstring and results/published/README.md).\n"
            f"#   nice -n 19 ganbench run --suite benchmarks/{name}.toml --seeds 3 --jobs 2 --results results/study\n"
            f"variants = [{variants}]\n{seeds.group(0) if seeds else 'seeds = 5'}\n\n{body}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="run records (e.g. results/published/records)")
    ap.add_argument("--protocol", default="study")
    ap.add_argument("--suite", default="benchmarks/study.toml", help="the study's suite file the replicate copies")
    ap.add_argument("--factor", type=float, default=FACTOR)
    ap.add_argument("--probe-ceiling", type=float, default=PROBE_CEILING)
    ap.add_argument("--write", help="write the replicate's suite file here")
    args = ap.parse_args()
    report = build_report(args.results, protocol=args.protocol)
    chosen = choose(report.claims, report.aggregates, report.baseline, args.factor, args.probe_ceiling)
    if not chosen:
        print(f"no arm of {args.protocol} is near its MDE or saturated: nothing to replicate")
        return
    for variant, why in chosen.items():
        print(f"{variant}: {'; '.join(why)}")
    if args.write:
        name = f"{args.protocol}-fashion-mnist"
        order = [report.baseline] + [v for v in chosen if v != report.baseline]
        Path(args.write).write_text(suite_text(Path(args.suite), order, name))
        print(f"wrote {args.write} ({len(order)} arms)")


if __name__ == "__main__":
    main()
