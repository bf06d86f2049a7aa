"""Renderers: the report as Markdown, CSV or JSON (HTML: ``ganbench.report.html``), and writing it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ganbench.errors import one_line
from ganbench.files import atomic_write_text
from ganbench.report.load import ReportError
from ganbench.report.tables import DisplayTable, as_of, display_tables
from ganbench.report.verdicts import definitions

if TYPE_CHECKING:
    from ganbench.report import Report


FORMATS = ("md", "csv", "html", "json")


def to_csv(report: Report) -> str:
    """The per-variant aggregate table (long form: a row per protocol, variant and metric)."""
    return report.aggregates.to_csv(index=False, float_format="%.17g")


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: _json_value(v) for k, v in row.items()} for row in df.to_dict(orient="records")]


def _json_value(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.bool_):
        return bool(v)
    return v


def to_json(report: Report) -> str:
    doc = {
        "results": report.results, "baseline": report.baseline, "alpha": report.alpha,
        "correction": report.settings.correction, "family": report.settings.family,
        "equivalence_ratio": report.settings.margin,
        "definitions": definitions(report.settings), "warnings": report.warnings, "rules": _records(report.rules),
        "claim_verdicts": _records(report.claim_verdicts), "claims": _records(report.claims),
        "variants": _records(report.variants), "aggregates": _records(report.aggregates),
        "comparisons": _records(report.comparisons), "throughput": _records(report.throughput),
        "representation": _records(report.representation), "instability": _records(report.instability),
        "runs": _records(report.runs),
    }
    return json.dumps(doc, indent=2, allow_nan=False, default=str) + "\n"


def _md_cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _md_table(t: DisplayTable) -> str:
    lines = [f"### {t.title}", "", "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    lines += ["| " + " | ".join(_md_cell(r.get(c, "")) for c in t.columns) + " |" for r in t.rows]
    return "\n".join(lines) + "\n"


def to_markdown(report: Report) -> str:
    parts = [f"# ganbench report: {', '.join(report.protocols)}", "",
             f"{len(report.runs)} runs from `{report.results}`, baseline `{report.baseline}`{as_of(report)}.", ""]
    parts += [_md_table(t) for t in display_tables(report)]
    parts += ["### Definitions", ""] + [f"- **{k}**: {v}" for k, v in definitions(report.settings).items()]
    if report.warnings:
        parts += ["", "### Warnings", ""] + [f"- {_md_cell(w)}" for w in report.warnings]
    return "\n".join(parts) + "\n"


def _html(report: Report) -> str:
    from ganbench.report.html import to_html

    return to_html(report)


RENDERERS = {"md": to_markdown, "csv": to_csv, "html": _html, "json": to_json}


def render(report: Report, fmt: str) -> str:
    if fmt not in RENDERERS:
        raise ReportError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](report)


def format_for(path: str | Path) -> str:
    """The format a file name asks for (.md, .csv, .html/.htm, .json)."""
    suffix = Path(path).suffix.lower().lstrip(".")
    suffix = {"htm": "html", "markdown": "md"}.get(suffix, suffix)
    if suffix not in FORMATS:
        raise ReportError(f"--out {path}: cannot tell the format from its suffix; give --format "
                          f"({', '.join(FORMATS)}) or name the file .md, .csv, .html or .json")
    return suffix


def write_report(report: Report, fmt: str, out: str | Path) -> Path:
    """Render and write atomically; returns the path."""
    out = Path(out)
    text = render(report, fmt)
    try:
        atomic_write_text(out, text)   # with the usual file mode: a report is for sharing
    except OSError as exc:
        raise ReportError(f"--out {out}: cannot write there ({exc.strerror or one_line(exc)}: "
                          f"{exc.filename or out})") from None
    return out

