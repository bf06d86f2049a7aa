"""Statistics over seeds: per-variant aggregates, and each variant against the baseline on every metric."""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping
from warnings import catch_warnings, simplefilter

import numpy as np
import pandas as pd
from scipy import stats

from ganbench.report.load import COST_METRICS

BINARY = ("diverged", "d_wins", "collapsed")   # 0/1 outcomes per run: compared by Fisher's exact test


def _finite(values: Iterable) -> np.ndarray:
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
            vals = _finite(g[m])
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
                   "mean_baseline", "mean_variant", "diff", "rel", "test", "p_value", "mw_p", "observed"]

def _welch(a: np.ndarray, b: np.ndarray) -> tuple[float, str]:
    if len(a) < 2 or len(b) < 2:
        return math.nan, "welch"
    if a.std() == 0 and b.std() == 0:   # no noise on either side: the t statistic is 0 or infinite
        return (1.0 if a.mean() == b.mean() else 0.0), "exact (no variance)"
    with catch_warnings():     # nearly identical values: scipy warns about precision, the p is still right
        simplefilter("ignore", RuntimeWarning)
        return float(stats.ttest_ind(a, b, equal_var=False).pvalue), "welch"

def _mann_whitney(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 1 or len(b) < 1:
        return math.nan
    if np.all(a == a[0]) and np.all(b == a[0]):
        return 1.0
    with catch_warnings():
        simplefilter("ignore", RuntimeWarning)
        return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)

def _fisher(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 1 or len(b) < 1:
        return math.nan
    ya, yb = int((a >= 0.5).sum()), int((b >= 0.5).sum())
    return float(stats.fisher_exact([[ya, len(a) - ya], [yb, len(b) - yb]]).pvalue)

def observed_direction(diff: float, hib: bool | None) -> str:
    """"better" / "worse" by the metric's direction ("higher" / "lower" where it has none), "same" at 0."""
    if not math.isfinite(diff):
        return ""
    if diff == 0:
        return "same"
    if hib is None:
        return "higher" if diff > 0 else "lower"
    return "better" if (diff > 0) == hib else "worse"

def compare_values(variant: np.ndarray, base: np.ndarray, metric: str, hib: bool | None) -> dict[str, Any]:
    """The variant's values against the baseline's on one metric: means, difference (variant - baseline),
    relative difference (over |baseline mean|), the test's p-value, Mann-Whitney's, observed direction."""
    a, b = _finite(variant), _finite(base)
    ma = float(a.mean()) if len(a) else math.nan
    mb = float(b.mean()) if len(b) else math.nan
    diff = ma - mb
    if not math.isfinite(diff):
        rel = math.nan
    elif mb == 0:
        rel = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    else:
        rel = diff / abs(mb)
    if metric in BINARY:
        p, test = _fisher(a, b), "fisher"
    else:
        p, test = _welch(a, b)
    return {"n_baseline": len(b), "n_variant": len(a), "mean_baseline": mb, "mean_variant": ma, "diff": diff,
            "rel": rel, "test": test, "p_value": p, "mw_p": _mann_whitney(a, b) if metric not in BINARY else math.nan,
            "observed": observed_direction(diff, hib)}

def compare(runs: pd.DataFrame, baseline: str,
            directions: Mapping[str, bool | None], columns: Iterable[str]) -> pd.DataFrame:
    """Every variant against the baseline of its protocol, on every metric both recorded."""
    out = []
    for proto, g in runs.groupby("protocol", sort=False):
        base = g[g["variant"] == baseline]
        if base.empty:
            continue
        for variant, v in g[g["variant"] != baseline].groupby("variant", sort=False):
            for m in columns:
                if len(_finite(v[m])) == 0 and len(_finite(base[m])) == 0:
                    continue
                hib = directions.get(m)
                out.append({"protocol": proto, "variant": variant, "rule": v["rule"].iloc[0], "metric": m,
                            "better": _better_word(hib), "baseline": baseline,
                            **compare_values(v[m].to_numpy(), base[m].to_numpy(), m, hib)})
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
                vals = _finite(v[m]) if m in v else np.array([])
                row[m] = float(vals.mean()) if len(vals) else math.nan
            out.append(row)
    return pd.DataFrame(out, columns=["protocol", "variant", "device", "runs", *COST_METRICS]), warnings
