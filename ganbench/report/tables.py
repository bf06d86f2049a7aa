"""Tables for people: the report as rows of strings (terminal, Markdown, HTML)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ganbench.report.load import COST_METRICS
from ganbench.report.verdicts import _pct

if TYPE_CHECKING:
    from ganbench.report import Report

# The per-variant summary shows these, where recorded.
SUMMARY_METRICS = ("fid", "fid_best", "kid_mean", "precision", "recall", "modes", "kl_modes",
                   "sample_oscillation", "fid_auc", "probe_acc")


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

COMPACT_SUMMARY = ("fid", "fid_best", "modes", "sample_oscillation", "probe_acc")

def display_tables(report: Report, compact: bool = False) -> list[DisplayTable]:
    """The report's tables as rows of strings: rule verdicts, per-variant summary, claims, throughput.
    ``compact`` (the terminal) leaves out the wordy columns and shows fewer metrics."""
    tables = []
    multi = len(report.protocols) > 1
    p_col = ["protocol"] if multi else []

    rows = [{"protocol": r.protocol, "rule": r.rule, "verdict": r.verdict, "evidence": r.summary,
             "paper's rule": r.paper_rule, "variants": r.variants} for r in report.rules.itertuples()]
    tables.append(DisplayTable(f"Verdicts per rule (baseline {report.baseline}, alpha {report.alpha:g})",
                               p_col + ["rule", "verdict", "evidence"] + ([] if compact else ["paper's rule"])
                               + ["variants"], rows))

    agg = report.aggregates
    shown = [m for m in (COMPACT_SUMMARY if compact else SUMMARY_METRICS) if m in set(agg["metric"])]
    rows = []
    for r in report.variants.itertuples():
        g = report.runs[(report.runs["protocol"] == r.protocol) & (report.runs["variant"] == r.variant)]
        row = {"protocol": r.protocol, "variant": r.variant, "rule": r.rule, "seeds": str(len(g)),
               "diverged": f"{int(g['diverged'].sum())}/{len(g)}",
               "collapsed": f"{int((g['collapsed'] == 1).sum())}/{int(g['collapsed'].notna().sum())}",
               "verdict": r.verdict or "baseline"}
        for m in shown:
            row[m] = _mean_ci(agg, r.protocol, r.variant, m)
        rows.append(row)
    labels = {"fid": "fid (final)", "fid_best": "fid (best)", "probe_acc": "representation (probe)"}
    columns = p_col + ["variant", "rule", "seeds", "diverged", "collapsed", *shown, "verdict"]
    tables.append(DisplayTable("Per variant: mean ± 95% interval over seeds", columns,
                               [{**r, **{labels.get(m, m): r[m] for m in shown}} for r in rows]))
    tables[-1].columns = [labels.get(c, c) for c in columns]

    rows = [{"protocol": c.protocol, "variant": c.variant, "rule": c.rule, "claim": f"{c.metric} {c.expected}",
             "baseline": fmt_number(c.mean_baseline), "variant mean": fmt_number(c.mean_variant),
             "diff": _pct(c.rel) if isinstance(c.rel, float) and math.isfinite(c.rel) else fmt_number(c.diff),
             "p": _p(c.p_value), "test": c.test if isinstance(c.test, str) else "-", "MW p": _p(c.mw_p),
             "n": f"{fmt_number(c.n_variant)} vs {fmt_number(c.n_baseline)}", "verdict": c.verdict, "reason": c.reason}
            for c in report.claims.itertuples()]
    tables.append(DisplayTable("Claims tested (variant vs baseline, final values)",
                               p_col + ["variant", "rule", "claim", "baseline", "variant mean", "diff", "p"]
                               + ([] if compact else ["test", "MW p"]) + ["n", "verdict"] + ([] if compact else ["reason"]), rows))

    if len(report.representation):
        rows = [{"protocol": r.protocol, "rule": r.rule, "changed": r.changed, "paper's rule": r.paper_rule,
                 "lower": str(r.lower), "higher": str(r.higher), "unchanged": str(r.unchanged), "variants": r.variants}
                for r in report.representation.itertuples()]
        tables.append(DisplayTable(
            f"Representation: did breaking the rule change the probe's accuracy on D's features? "
            f"(variant vs {report.baseline}, Welch p < {report.alpha:g})",
            p_col + ["rule", "changed"] + ([] if compact else ["paper's rule"]) + ["lower", "higher", "unchanged",
                                                                                    "variants"], rows))

    tp = report.throughput
    devices = ", ".join(dict.fromkeys(tp["device"])) if len(tp) else "-"
    rows = [{"protocol": t.protocol, "variant": t.variant, "device": t.device,
             **{m: fmt_number(getattr(t, m)) for m in COST_METRICS}} for t in tp.itertuples()]
    tables.append(DisplayTable(f"Throughput and size (device: {devices}; images/s, MiB, FLOPs per image)",
                               p_col + ["variant", "device", *COST_METRICS], rows))
    return tables
