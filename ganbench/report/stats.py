"""Statistics over seeds: per-variant aggregates, and each variant against the baseline on every metric."""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from ganbench import statistics as st
from ganbench.report.load import COST_METRICS

# 0/1 outcomes per run: compared by Fisher's exact test
BINARY = ("diverged", "d_wins", "collapsed", "failed_to_learn", "mode_collapse", "converged", "broke_down",
          "unstable")


def finite_values(values: Iterable) -> np.ndarray:
    """The finite numbers among ``values`` (a column of seeds' values: None, NaN and text left out)."""
    a = np.asarray(pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce"), dtype=float)
    return a[np.isfinite(a)]


def _better_word(hib: bool | None) -> str:
    return {True: "higher", False: "lower"}.get(hib, "")


AGGREGATE_COLUMNS = ["protocol", "variant", "rule", "metric", "better", "runs", "n", "mean", "std", "ci_low",
                     "ci_high", "median", "worst", "best"]


def aggregate(runs: pd.DataFrame, directions: Mapping[str, bool | None], columns: Iterable[str]) -> pd.DataFrame:
    """Per (protocol, variant, metric) over seeds: runs, n (finite values), mean, std, 95% t-interval,
    median, worst and best (by the metric's direction; NaN where it has none). The mean of a 0/1 outcome
    (diverged, collapsed, d_wins) is the share of seeds where it happened."""
    out = []
    if runs.empty:
        return pd.DataFrame(columns=AGGREGATE_COLUMNS)
    for (proto, variant), g in runs.groupby(["protocol", "variant"], sort=False):
        for m in columns:
            vals = finite_values(g[m])
            if len(vals) == 0:
                continue
            hib = directions.get(m)
            n = len(vals)
            mean = float(vals.mean())
            std = float(vals.std(ddof=1)) if n > 1 else math.nan
            half = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n)) if n > 1 else math.nan
            worst = best = math.nan
            if hib is not None:
                worst, best = (vals.min(), vals.max()) if hib else (vals.max(), vals.min())
            out.append({"protocol": proto, "variant": variant, "rule": g["rule"].iloc[0], "metric": m,
                        "better": _better_word(hib), "runs": len(g), "n": n, "mean": mean, "std": std,
                        "ci_low": mean - half, "ci_high": mean + half, "median": float(np.median(vals)),
                        "worst": float(worst), "best": float(best)})
    return pd.DataFrame(out, columns=AGGREGATE_COLUMNS)


COMPARE_COLUMNS = ["protocol", "variant", "rule", "metric", "better", "baseline", "n_baseline", "n_variant",
                   "center_baseline", "center_variant", "scale", "estimate", "ci_low", "ci_high", "effect", "test",
                   "p_value", "observed"]


def observed_direction(estimate: float, hib: bool | None) -> str:
    """"better" / "worse" by the metric's direction ("higher" / "lower" where it has none), "same" at 0."""
    if not math.isfinite(estimate):
        return ""
    if estimate == 0:
        return "same"
    if hib is None:
        return "higher" if estimate > 0 else "lower"
    return "better" if (estimate > 0) == hib else "worse"


def compare(runs: pd.DataFrame, baseline: str, directions: Mapping[str, bool | None], columns: Iterable[str],
            log_scale: Iterable[str] = ()) -> pd.DataFrame:
    """Every variant against the baseline of its protocol, on every metric both recorded: the effect with
    its 95% interval and an uncorrected p (descriptive: only the claims' primary endpoints are judged)."""
    log_scale = set(log_scale)
    out = []
    for proto, g in runs.groupby("protocol", sort=False):
        base = g[g["variant"] == baseline]
        if base.empty:
            continue
        for variant, v in g[g["variant"] != baseline].groupby("variant", sort=False):
            for m in columns:
                if len(finite_values(v[m])) == 0 and len(finite_values(base[m])) == 0:
                    continue
                hib = directions.get(m)
                c = (st.compare_binary(v[m], base[m]) if m in BINARY else
                     st.compare_continuous(v[m], base[m], log_scale=m in log_scale))
                out.append({"protocol": proto, "variant": variant, "rule": v["rule"].iloc[0], "metric": m,
                            "better": _better_word(hib), "baseline": baseline, "n_baseline": c.n_b,
                            "n_variant": c.n_a, "center_baseline": c.center_b, "center_variant": c.center_a,
                            "scale": c.scale, "estimate": c.estimate, "ci_low": c.ci_low, "ci_high": c.ci_high,
                            "effect": st.format_effect(c), "test": c.test, "p_value": c.p,
                            "observed": observed_direction(c.estimate, hib)})
    return pd.DataFrame(out, columns=COMPARE_COLUMNS)


def throughput(runs: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per (protocol, variant): training and sampling images/s, peak memory, parameters and FLOPs (means
    over seeds), from the protocol's most common device only; a warning names runs on other devices."""
    out, warnings = [], []
    if runs.empty:
        return pd.DataFrame(columns=["protocol", "variant", "device", "runs", *COST_METRICS]), warnings
    for proto, g in runs.groupby("protocol", sort=False):
        counts = g["device"].value_counts()
        device = counts.index[0]
        if len(counts) > 1:
            others = ", ".join(f"{d} ({k} runs)" for d, k in counts.iloc[1:].items())
            warnings.append(f"protocol {proto!r}: runs were trained on different devices; throughput is from "
                            f"{device} ({counts.iloc[0]} runs) only, leaving out {others}")
        same = g[g["device"] == device]
        for variant, v in same.groupby("variant", sort=False):
            row = {"protocol": proto, "variant": variant, "device": device, "runs": len(v)}
            for m in COST_METRICS:
                vals = finite_values(v[m]) if m in v else np.array([])
                row[m] = float(vals.mean()) if len(vals) else math.nan
            out.append(row)
    return pd.DataFrame(out, columns=["protocol", "variant", "device", "runs", *COST_METRICS]), warnings
