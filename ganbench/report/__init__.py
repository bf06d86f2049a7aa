"""The report: every run record -> one table -> aggregates over seeds -> each paper claim judged on its
primary endpoint -> a verdict per claim and per rule, rendered for the terminal, Markdown, CSV, JSON or one
self-contained HTML page (a forest plot of the claims first).

The flow, one module per stage, each a function of the one before::

    load.load_results(dir)         -> runs (a row per run), series (long form), warnings, and the metrics'
                                      directions as the records declared them
    stats.aggregate(runs)          -> per (protocol, variant, metric): n, mean, 95% t-interval, median, worst
    stats.compare(runs, baseline)  -> per (protocol, variant, metric): effect, 95% interval, uncorrected p
                                      (descriptive)
    verdicts.judge_claims(...)     -> per claim and variant: the primary comparison, corrected p, verdict
    verdicts.claim_verdicts, rule_verdicts -> one verdict per claim, one per rule
    verdicts.representation, instability -> secondary families: probe gain, and runs that failed
    tables.display_tables(report)  -> rows of strings; render (md, csv, json) and html (with plots)

How a verdict is formed is in ``verdicts`` (and written into every report, ``verdicts.definitions``).
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
from ganbench.report.verdicts import (ALPHA, CORRECTIONS, EQUIVALENCE_RATIO, INSTABILITY_COLUMNS,
                                      REPRESENTATION_COLUMNS, VERDICTS, Settings, claim_verdicts, definitions,
                                      instability, judge_claims, representation, rule_verdicts, study_claims,
                                      variant_table)

__all__ = ["Report", "ReportError", "build_report", "display_tables", "DisplayTable", "render", "write_report",
           "format_for", "load_results", "definitions", "FORMATS", "VERDICTS", "ALPHA", "CORRECTIONS", "Settings"]


@dataclass
class Report:
    results: str
    baseline: str
    settings: Settings
    runs: pd.DataFrame
    series: pd.DataFrame
    aggregates: pd.DataFrame
    comparisons: pd.DataFrame        # every metric, descriptive
    claims: pd.DataFrame             # the primary comparisons: a row per (protocol, claim, variant)
    claim_verdicts: pd.DataFrame     # a row per (protocol, claim)
    rules: pd.DataFrame              # a row per (protocol, rule)
    variants: pd.DataFrame
    throughput: pd.DataFrame
    representation: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REPRESENTATION_COLUMNS))
    instability: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=INSTABILITY_COLUMNS))
    warnings: list[str] = field(default_factory=list)
    at_step: int | None = None       # the runs as they stood after this step's evaluation (None: their ends)

    @property
    def protocols(self) -> list[str]:
        return list(dict.fromkeys(self.runs["protocol"]))

    @property
    def alpha(self) -> float:
        return self.settings.alpha


def build_report(results_dir: str | Path = "results", baseline: str = "dcgan",
                 protocol: str | Iterable[str] | None = None, alpha: float = ALPHA, correction: str = "holm",
                 margin: float = EQUIVALENCE_RATIO, at_step: int | None = None, family: int | None = None) -> Report:
    """Everything a report shows, from the records under ``results_dir`` (of the given protocols, if any);
    with ``at_step``, from the runs as they stood after their evaluation at that step; with ``family``, the
    correction is over that many primary comparisons (a study's design), of which the report holds some."""
    if correction not in CORRECTIONS:
        raise ReportError(f"--correction {correction}: unknown; use one of {', '.join(CORRECTIONS)}")
    settings = Settings(alpha, correction, margin, family)
    loaded = load_results(results_dir, protocol, at_step)
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
        if at_step is not None:
            raise ReportError(f"no run under {root} has an evaluation at step {at_step}{detail}")
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
    study = study_claims(runs, loaded.claims)     # the records' claims, the package's for the rest
    claims = judge_claims(runs, directions, columns, settings, study, loaded.log_scale)
    per_claim = claim_verdicts(claims)
    tp, tp_warnings = throughput(runs)
    return Report(
        results=str(results_dir), baseline=baseline, settings=settings, runs=runs, series=series,
        aggregates=aggregate(runs, directions, columns),
        comparisons=compare(runs, baseline, directions, columns, loaded.log_scale), claims=claims,
        claim_verdicts=per_claim, rules=rule_verdicts(per_claim, loaded.rules, study), variants=variant_table(runs, claims, baseline, study),
        throughput=tp, representation=representation(runs, baseline, settings),
        instability=instability(runs, baseline, settings), warnings=warnings + tp_warnings,
        at_step=at_step,
    )
