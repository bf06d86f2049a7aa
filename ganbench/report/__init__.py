"""The report: every run record -> one table -> aggregates over seeds -> comparison with the baseline ->
a verdict per rule, rendered for the terminal, Markdown, CSV, JSON or one self-contained HTML page.

The flow, one module per stage, each a function of the one before::

    load.load_results(dir)        -> runs (a row per run), series (long form), warnings, and the metrics'
                                     directions as the records declared them
    stats.aggregate(runs)         -> per (protocol, variant, metric): n, mean, 95% t-interval, median, worst
    stats.compare(runs, baseline) -> per (protocol, variant, metric): difference of means, Welch's t-test
                                     (Fisher's exact test for 0/1 outcomes), Mann-Whitney as a check
    verdicts.judge_claims(...)    -> per variant and claimed metric: supported / contradicted / inconclusive
    verdicts.variant_verdicts, rule_verdicts -> one verdict per variant, one per rule R1..R6
    tables.display_tables(report) -> rows of strings; render (md, csv, json) and html (with plots)

Definitions (also written into every report):

- A run is *diverged* when its losses became non-finite (status "diverged"); it has no quality metrics.
- A run is *collapsed* when it covers at most ``COLLAPSE_MODES`` mode (class) of the data, or D won
  outright at the end (``d_wins`` = 1); 0 when neither holds; unknown when neither was measured.
- A claim that a metric is "worse" or "better" is *supported* when the variant differs from the baseline
  at p < alpha in the claimed direction, *contradicted* when it differs at p < alpha the other way,
  otherwise *inconclusive*. A claim of "same" is *supported* when p >= alpha and the difference of means
  is within ``same_tolerance`` of the baseline's mean, *contradicted* when p < alpha, otherwise
  inconclusive. p is Welch's t-test on the seeds' final values (Fisher's exact test on counts for 0/1
  outcomes: diverged, d_wins, collapsed); no correction for multiple claims.
- A claim named by a prefix of recorded metrics ("loss_oscillation" -> loss_oscillation_g, _d) is judged
  on each; it (and a variant with several claims) is supported when at least one part supports it and
  none contradicts it, contradicted the other way round, otherwise inconclusive.
- A rule is supported when more than half of its variants that were run support it and none contradicts
  it, contradicted the other way round, otherwise inconclusive.

Library code: nothing here prints; a user's mistake raises ``ReportError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import pandas as pd

from ganbench.errors import closest, did_you_mean
from ganbench.record import run_dirs
from ganbench.report.load import ReportError, _protocol_set, load_results, metric_columns, order_runs
from ganbench.report.render import FORMATS, format_for, render, write_report
from ganbench.report.stats import aggregate, compare, throughput
from ganbench.report.tables import DisplayTable, display_tables
from ganbench.report.verdicts import (ALPHA, REPRESENTATION_COLUMNS, SAME_TOLERANCE, VERDICTS, definitions,
                                          judge_claims, representation_by_rule, rule_verdicts, variant_verdicts)

__all__ = ["Report", "ReportError", "build_report", "display_tables", "DisplayTable", "render", "write_report",
           "format_for", "load_results", "definitions", "FORMATS", "VERDICTS", "ALPHA", "SAME_TOLERANCE"]


@dataclass
class Report:
    results: str
    baseline: str
    alpha: float
    same_tolerance: float
    runs: pd.DataFrame
    series: pd.DataFrame
    aggregates: pd.DataFrame
    comparisons: pd.DataFrame
    claims: pd.DataFrame
    variants: pd.DataFrame
    rules: pd.DataFrame
    throughput: pd.DataFrame
    representation: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REPRESENTATION_COLUMNS))
    warnings: list[str] = field(default_factory=list)

    @property
    def protocols(self) -> list[str]:
        return list(dict.fromkeys(self.runs["protocol"]))


def build_report(results_dir: str | Path = "results", baseline: str = "dcgan",
                 protocol: str | Iterable[str] | None = None, alpha: float = ALPHA,
                 same_tolerance: float = SAME_TOLERANCE) -> Report:
    """Everything a report shows, from the records under ``results_dir`` (of the given protocols, if any)."""
    loaded = load_results(results_dir, protocol)
    runs, series, warnings = loaded.runs, loaded.series, loaded.warnings
    root = Path(results_dir)
    found = sorted({p.parent.parent.name for p in run_dirs(root)}) if root.is_dir() else []
    for name in sorted(_protocol_set(protocol) or ()):
        if name not in found:
            close = closest(name, found)
            hint = f"protocols there: {', '.join(found)}" + (f" (did you mean {close[0]}?)" if close else "") \
                if found else "it holds no runs"
            raise ReportError(f"no runs of protocol {name!r} under {root}; {hint}")
    if runs.empty:
        detail = f" ({len(warnings)} unusable: {'; '.join(warnings)})" if warnings else ""
        raise ReportError(f"no finished runs under {root}{detail}; train some with `ganbench run --results {root}`")
    if baseline not in set(runs["variant"]):
        found = sorted(set(runs["variant"]))
        hint = did_you_mean(baseline, found)
        raise ReportError(f"baseline {baseline!r} has no finished runs under {root}; variants there: "
                          f"{', '.join(found)}" + (f"; {hint}" if hint else ""))
    for proto, g in runs.groupby("protocol", sort=False):
        if baseline not in set(g["variant"]):
            warnings.append(f"protocol {proto!r} has no runs of the baseline {baseline!r}: its variants get no verdicts")
    runs = order_runs(runs, baseline)
    directions = loaded.directions
    columns = metric_columns(runs, directions, loaded.metrics)
    claims = judge_claims(runs, baseline, alpha, same_tolerance, directions, columns)
    variants = variant_verdicts(runs, claims, baseline)
    tp, tp_warnings = throughput(runs)
    comparisons = compare(runs, baseline, directions, columns)
    report = Report(
        results=str(results_dir), baseline=baseline, alpha=alpha, same_tolerance=same_tolerance, runs=runs,
        series=series, aggregates=aggregate(runs, directions, columns), comparisons=comparisons,
        claims=claims, variants=variants, rules=rule_verdicts(variants, list(dict.fromkeys(runs["protocol"]))),
        throughput=tp, representation=representation_by_rule(comparisons, variants, alpha),
        warnings=warnings + tp_warnings,
    )
    return report
