"""The HTML report: one self-contained page with the tables, plots (matplotlib) and sample grids."""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ganbench.report.stats import finite_values
from ganbench.report.tables import DisplayTable, as_of, display_tables
from ganbench.report.verdicts import VERDICTS, definitions

if TYPE_CHECKING:
    from ganbench.report import Report


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _curve_stats(series: pd.DataFrame, proto: str, metric: str) -> pd.DataFrame:
    s = series[(series["protocol"] == proto) & (series["metric"] == metric)]
    s = s[np.isfinite(s["value"].astype(float))]
    if s.empty:
        return s
    return (s.groupby(["variant", "images_seen"])["value"].agg(["mean", "std", "min", "max", "count"])
            .reset_index().sort_values(["variant", "images_seen"]))


VERDICT_COLORS = {"supported": "tab:green", "contradicted": "tab:red", "inconclusive": "tab:grey",
                  "underpowered": "tab:orange"}


def _forest(report: Report) -> str | None:
    """Each primary comparison's effect with its 95% interval, grouped by rule and coloured by verdict: one
    panel for ratios (FID-like metrics, log axis, 1x marked) and one for differences (other metrics, 0
    marked)."""
    c = report.claims[(report.claims["verdict"] != "untested") & np.isfinite(report.claims["estimate"].astype(float))]
    if c.empty:
        return None
    multi = len(report.protocols) > 1
    panels = [(scale, c[c["scale"] == scale]) for scale in ("log-ratio", "difference")]
    panels = [(scale, g.sort_values(["rule", "claim"], kind="stable")) for scale, g in panels if len(g)]
    fig = _figure(11, 1.2 + 0.3 * sum(len(g) for _, g in panels))
    axes = fig.subplots(len(panels), 1, squeeze=False, height_ratios=[len(g) for _, g in panels])[:, 0]
    for ax, (scale, g) in zip(axes, panels):
        y = np.arange(len(g))[::-1]
        ratio = scale == "log-ratio"
        est, lo, hi = (np.exp(g[k].astype(float)) if ratio else g[k].astype(float) for k in ("estimate", "ci_low", "ci_high"))
        colors = [VERDICT_COLORS.get(v, "black") for v in g["verdict"]]
        for yi, e, a, b, col in zip(y, est, lo, hi, colors):
            if np.isfinite(a) and np.isfinite(b):
                ax.plot([a, b], [yi, yi], color=col, lw=2)
            ax.plot([e], [yi], "o", color=col, ms=5)
        ax.axvline(1.0 if ratio else 0.0, color="black", lw=0.8, ls="--")
        if ratio:
            ax.set_xscale("log")
        labels = [(f"{r.protocol}: " if multi else "") + f"{r.claim}  {r.variant} ({r.metric} {r.expected})"
                  for r in g.itertuples()]
        ax.set_yticks(y, labels, fontsize=7)
        ax.set_xlabel("variant / baseline (95% interval)" if ratio else "variant - baseline (95% interval)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    handles = [axes[0].plot([], [], "o", color=col, label=v)[0] for v, col in VERDICT_COLORS.items()]
    axes[0].legend(handles=handles, fontsize=7, loc="best")
    fig.tight_layout()
    return _png_uri(fig)


def _small_multiples(report: Report, proto: str, metrics: list[str], ylabel: str, log: bool = False) -> str | None:
    """One panel per variant: mean over seeds with a band of +- one std, the baseline's mean dashed."""
    curves = {m: _curve_stats(report.series, proto, m) for m in metrics}
    curves = {m: c for m, c in curves.items() if not c.empty}
    if not curves:
        return None
    variants = _variant_order(report, proto)
    ncols = min(4, len(variants))
    nrows = math.ceil(len(variants) / ncols)
    fig = _figure(3.4 * ncols, 2.5 * nrows)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True, sharey=True)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for ax, variant in zip(axes.flat, variants):
        for (m, c), color in zip(curves.items(), colors):
            base = c[c["variant"] == report.baseline]
            if variant != report.baseline and not base.empty and len(curves) == 1:
                ax.plot(base["images_seen"], base["mean"], "--", color="grey", lw=1, label=f"{report.baseline}")
            mine = c[c["variant"] == variant]
            if mine.empty:
                continue
            std = mine["std"].fillna(0)
            ax.plot(mine["images_seen"], mine["mean"], color=color, lw=1.6, marker="o", ms=3, label=m)
            ax.fill_between(mine["images_seen"], mine["mean"] - std, mine["mean"] + std, color=color, alpha=0.25)
        mine_runs = report.runs[(report.runs["protocol"] == proto) & (report.runs["variant"] == variant)]
        k = int(mine_runs["diverged"].sum())
        if k:
            ax.text(0.5, 0.5, f"{k}/{len(mine_runs)} seeds diverged", transform=ax.transAxes, ha="center",
                    va="center", color="tab:red", fontsize=9)
        ax.set_title(variant, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
    for ax in list(axes.flat)[len(variants):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("images seen", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return _png_uri(fig)


def _bars(report: Report, proto: str, panels: list[tuple[str, str]], ref: float | None = None) -> str | None:
    """Horizontal bars per variant: the mean over seeds, the whiskers spanning the seeds' min to max."""
    runs = report.runs[report.runs["protocol"] == proto]
    panels = [(m, label) for m, label in panels if m in runs and len(finite_values(runs[m]))]
    if not panels:
        return None
    variants = _variant_order(report, proto)
    fig = _figure(4.5 * len(panels), 0.8 + 0.32 * len(variants))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (m, label) in zip(axes, panels):
        values = [finite_values(runs[runs["variant"] == v][m]) for v in variants]
        mean = np.array([x.mean() if len(x) else 0.0 for x in values])
        lo = np.array([x.min() if len(x) else 0.0 for x in values])
        hi = np.array([x.max() if len(x) else 0.0 for x in values])
        y = np.arange(len(variants))
        colors = ["tab:grey" if v == report.baseline else "tab:blue" for v in variants]
        ax.barh(y, mean, xerr=np.vstack([mean - lo, hi - mean]), color=colors, capsize=2)
        ax.set_yticks(y, variants, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(label, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        if ref is not None and m == "modes":
            ax.axvline(ref, color="tab:green", ls="--", lw=1, label="modes in the data")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return _png_uri(fig)


def _variant_order(report: Report, proto: str) -> list[str]:
    return list(dict.fromkeys(report.runs[report.runs["protocol"] == proto]["variant"]))


def _last_samples(report: Report, proto: str) -> list[tuple[str, int, str, str]]:
    """(variant, seed, file name, data URI) of the last sample grid of each variant's lowest seed that has one."""
    out = []
    for variant in _variant_order(report, proto):
        g = report.runs[(report.runs["protocol"] == proto) & (report.runs["variant"] == variant)].sort_values("seed")
        for r in g.itertuples():
            grids = sorted((Path(r.run_dir) / "samples").glob("step-*.png"))
            if grids:
                data = base64.b64encode(grids[-1].read_bytes()).decode()
                out.append((variant, int(r.seed), grids[-1].name, "data:image/png;base64," + data))
                break
    return out


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#1d1d1f;background:#fff}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}h3{font-size:15px}
table{border-collapse:collapse;margin:8px 0 20px;font-size:12px}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f2f5}tr:nth-child(even) td{background:#fafafa}
td.supported{background:#d7f5dd!important;font-weight:600}td.contradicted{background:#fbd5d5!important;font-weight:600}
td.inconclusive{background:#eeeeee!important}td.underpowered{background:#fde9c8!important}
td.untested{color:#777}
img.plot{max-width:100%;border:1px solid #eee}figure{display:inline-block;margin:6px;text-align:center}
figure img{image-rendering:pixelated;width:192px;border:1px solid #ccc}figcaption{font-size:11px}
ul.warn li{color:#8a4b00}
"""


def _html_table(t: DisplayTable) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in t.columns)
    body = []
    for r in t.rows:
        cells = []
        for c in t.columns:
            v = str(r.get(c, ""))
            cls = f' class="{v}"' if c == "verdict" and v in VERDICTS else ""
            cells.append(f"<td{cls}>{html.escape(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<h3>{html.escape(t.title)}</h3>\n<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>\n"


def to_html(report: Report) -> str:
    """One self-contained page: tables, plots and sample grids embedded as data URIs."""
    esc = html.escape
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>ganbench report: {esc(', '.join(report.protocols))}</title><style>{_CSS}</style></head><body>",
             f"<h1>ganbench report: {esc(', '.join(report.protocols))}</h1>",
             f"<p>{len(report.runs)} runs from <code>{esc(report.results)}</code>; baseline <code>{esc(report.baseline)}</code>{esc(as_of(report))}; "
             f"alpha {report.alpha:g}.</p>"]
    if report.warnings:
        parts.append("<h2>Warnings</h2><ul class='warn'>" + "".join(f"<li>{esc(w)}</li>" for w in report.warnings) + "</ul>")
    forest = _forest(report)
    if forest:
        parts.append("<h2>The claims at a glance</h2><p>Each claim's primary comparison: the effect with its 95% "
                     "interval against the baseline arm, coloured by verdict (after the multiplicity correction).</p>"
                     f"<img class='plot' alt='forest plot of the claims' src='{forest}'>")
    parts += [_html_table(t) for t in display_tables(report)]
    for proto in report.protocols:
        parts.append(f"<h2>Protocol {esc(proto)}</h2>")
        g = report.runs[report.runs["protocol"] == proto]
        total = pd.to_numeric(g.get("modes_total", pd.Series(dtype=float)), errors="coerce").dropna()
        plots = [
            ("FID over training (mean over seeds, band: ± one std; dashed: baseline)",
             _small_multiples(report, proto, ["fid"], "FID (log axis)", log=True)),
            ("Losses over training (mean over seeds, band: ± one std)",
             _small_multiples(report, proto, ["g_loss", "d_loss"], "loss")),
            ("Mode coverage at the end (mean over seeds; whiskers: min to max)",
             _bars(report, proto, [("modes", "modes covered"), ("kl_modes", "KL to the data's classes (nats)")],
                   ref=float(total.iloc[0]) if len(total) else None)),
            ("Throughput (mean over seeds; whiskers: min to max)",
             _bars(report, proto, [("train_ips", "training images/s"), ("sample_ips", "sampling images/s")])),
        ]
        for title, uri in plots:
            parts.append(f"<h3>{esc(title)}</h3>")
            parts.append(f"<img class='plot' alt='{esc(title)}' src='{uri}'>" if uri else "<p>not recorded</p>")
        samples = _last_samples(report, proto)
        parts.append("<h3>Last sample grid per variant (fixed z, one seed)</h3><div>")
        for variant, seed, name, uri in samples:
            parts.append(f"<figure><img alt='{esc(variant)} samples' src='{uri}'>"
                         f"<figcaption>{esc(variant)}, seed {seed}, {esc(name[:-4])}</figcaption></figure>")
        parts.append("</div>" if samples else "<p>no sample grids</p></div>")
    parts.append("<h2>Definitions</h2><ul>" + "".join(
        f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in definitions(report.settings).items()) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
