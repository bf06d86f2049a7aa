"""Tables for people: the report as rows of strings (terminal, Markdown, HTML)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ganbench.report.load import COST_METRICS

if TYPE_CHECKING:
    from ganbench.report import Report

# The per-variant summary shows these, where recorded.
SUMMARY_METRICS = ("fid", "fid_best", "kid_mean", "precision", "recall", "modes", "kl_modes",
                   "sample_oscillation", "fid_auc", "diversity", "probe_acc", "probe_gain")


@dataclass
class DisplayTable:
    title: str
    columns: list[str]
    rows: list[dict[str, str]]


def fmt_number(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if abs(v) >= 1e4:
            return f"{v:,.0f}"
        return f"{v:.4g}"
    return str(v)


def _p(v: Any) -> str:
    return "-" if not (isinstance(v, float) and math.isfinite(v)) else f"{v:.3g}"


def _mean_ci(agg: pd.DataFrame, proto: str, variant: str, metric: str) -> str:
    row = agg[(agg["protocol"] == proto) & (agg["variant"] == variant) & (agg["metric"] == metric)]
    if row.empty:
        return "-"
    r = row.iloc[0]
    if math.isfinite(r["ci_high"]):
        return f"{fmt_number(r['mean'])} ± {fmt_number(r['ci_high'] - r['mean'])}"
    return fmt_number(r["mean"])


COMPACT_SUMMARY = ("fid", "fid_best", "modes", "sample_oscillation", "probe_gain")
# 0/1 outcomes counted per variant (those recorded): how many seeds had each
OUTCOMES = ("diverged", "converged", "failed_to_learn", "mode_collapse", "d_wins", "collapsed", "broke_down")
LABELS = {"fid": "fid (final)", "fid_best": "fid (best)", "probe_gain": "representation (probe gain)"}


def _count(g: pd.DataFrame, m: str) -> str | None:
    if m not in g:
        return None
    vals = pd.to_numeric(g[m], errors="coerce")
    known = vals.notna() & np.isfinite(vals)
    return f"{int((vals[known] >= 0.5).sum())}/{int(known.sum())}" if known.any() else None


def display_tables(report: Report, compact: bool = False) -> list[DisplayTable]:
    """The report's tables as rows of strings: rule verdicts, the claims, per-variant summary, representation,
    throughput. ``compact`` (the terminal) leaves out the wordy columns and shows fewer metrics."""
    tables = []
    p_col = ["protocol"] if len(report.protocols) > 1 else []
    s = report.settings

    rows = [{"protocol": r.protocol, "rule": r.rule, "verdict": r.verdict, "evidence": r.summary,
             "paper's rule": r.paper_rule, "claims": r.claims} for r in report.rules.itertuples()]
    family = f" across the design's {s.family} comparisons" if s.family and s.correction != "none" else ""
    tables.append(DisplayTable(f"Verdicts per rule (baseline {report.baseline}, alpha {s.alpha:g}, {s.correction} "
                               f"correction{family})", p_col + ["rule", "verdict"] + ([] if compact else ["paper's rule"])
                               + ["claims", "evidence"], rows))

    rows = []
    for c in report.claims.itertuples():
        tested = c.verdict != "untested"
        rows.append({"protocol": c.protocol, "claim": c.claim, "variant": c.variant,
                     "vs": c.baseline, "endpoint": f"{c.metric} {c.expected}" if tested else str(c.metric),
                     "effect": c.effect if tested else "-", "p": _p(c.p_value), "p adj": _p(c.p_adjusted),
                     "test": c.test if tested else "-", "n": f"{c.n_variant:.0f} vs {c.n_baseline:.0f}" if tested else "-",
                     "converged": f"{c.converged_variant} vs {c.converged_baseline}" if tested else "-",
                     "confounded": c.confounded if tested and isinstance(c.confounded, str) else "",
                     "verdict": c.verdict, "reason": c.reason})
    tables.append(DisplayTable(
        f"Claims: each variant against its baseline arm on the claim's primary endpoint (effect: variant / baseline "
        f"for FID-like metrics, else variant - baseline; 95% interval; p adjusted by {s.correction})",
        p_col + ["claim", "variant", "vs", "endpoint", "effect", "p", "p adj"] + ([] if compact else ["test"])
        + ["n", "converged"] + ([] if compact else ["confounded"]) + ["verdict"] + ([] if compact else ["reason"]),
        rows))

    agg = report.aggregates
    shown = [m for m in (COMPACT_SUMMARY if compact else SUMMARY_METRICS) if m in set(agg["metric"])]
    outcomes = [m for m in OUTCOMES if m in report.runs and report.runs[m].notna().any()]
    rows = []
    for r in report.variants.itertuples():
        g = report.runs[(report.runs["protocol"] == r.protocol) & (report.runs["variant"] == r.variant)]
        row = {"protocol": r.protocol, "variant": r.variant, "rule": r.rule, "seeds": str(len(g)),
               "confounded": r.confounded, "claims": r.verdict}
        row.update({m: _count(g, m) or "-" for m in outcomes})
        row.update({LABELS.get(m, m): _mean_ci(agg, r.protocol, r.variant, m) for m in shown})
        rows.append(row)
    columns = (p_col + ["variant", "rule", "seeds", *outcomes, *[LABELS.get(m, m) for m in shown]]
               + ([] if compact else ["confounded", "claims"]))
    tables.append(DisplayTable("Per variant: mean ± 95% interval over seeds; outcomes as seeds with / seeds measured",
                               columns, rows))

    if len(report.representation):
        rows = [{"protocol": r.protocol, "rule": r.rule, "variant": r.variant, "effect": r.effect, "p": _p(r.p_value),
                 "p adj": _p(r.p_adjusted), "test": r.test, "changed": r.changed}
                for r in report.representation.itertuples()]
        tables.append(DisplayTable(
            f"Representation: did breaking the rule change what D learned? (probe gain: trained minus untrained D's "
            f"accuracy; variant - {report.baseline}; p adjusted by {s.correction} across these comparisons)",
            p_col + ["variant", "rule", "effect", "p", "p adj"] + ([] if compact else ["test"]) + ["changed"], rows))

    if len(report.instability):
        rows = [{"protocol": r.protocol, "rule": r.rule, "variant": r.variant,
                 **{k: getattr(r, k) if isinstance(getattr(r, k), str) else "-"
                    for k in ("diverged", "broke_down", "collapsed", "unstable")},
                 "effect": r.effect, "p": _p(r.p_value), "p adj": _p(r.p_adjusted), "test": r.test,
                 "changed": r.changed} for r in report.instability.itertuples()]
        tables.append(DisplayTable(
            f"Instability: runs that diverged, broke down or collapsed (seeds with / seeds known, variant vs "
            f"{report.baseline}; effect: difference of the shares of unstable runs; p adjusted by {s.correction} "
            f"across these comparisons)",
            p_col + ["variant", "rule"] + ([] if compact else ["diverged", "broke_down", "collapsed"])
            + ["unstable", "effect", "p", "p adj"] + ([] if compact else ["test"]) + ["changed"], rows))

    tp = report.throughput
    devices = ", ".join(dict.fromkeys(tp["device"])) if len(tp) else "-"
    rows = [{"protocol": t.protocol, "variant": t.variant, "device": t.device,
             **{m: fmt_number(getattr(t, m)) for m in COST_METRICS}} for t in tp.itertuples()]
    tables.append(DisplayTable(f"Throughput and size (device: {devices}; images/s, MiB, FLOPs per image)",
                               p_col + ["variant", "device", *COST_METRICS], rows))
    return tables

def as_of(report) -> str:
    """", as they stood at step S" for a report of the runs at one of their evaluations (``--at-step``)."""
    if report.at_step is None:
        return ""
    return f", each run as it stood after its evaluation at step {report.at_step:,} (FID at its evaluations' sample size)"
