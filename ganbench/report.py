"""The report: every run record -> one table -> aggregates over seeds -> comparison with the baseline ->
a verdict per rule, rendered for the terminal, Markdown, CSV, JSON or one self-contained HTML page.

The stages, each a function of the one before::

    load_results(dir)            -> runs (a row per run), series (long form), warnings
    aggregate(runs)              -> per (protocol, variant, metric): n, mean, 95% t-interval, median, worst
    compare(runs, baseline)      -> per (protocol, variant, metric): difference of means, Welch's t-test
                                    (Fisher's exact test for 0/1 outcomes), Mann-Whitney as a check
    judge_claims(...)            -> per variant and claimed metric: supported / contradicted / inconclusive
    variant_verdicts, rule_verdicts -> one verdict per variant, one per rule R1..R6

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

import base64
import difflib
import html
import io
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping
from warnings import catch_warnings, simplefilter

import numpy as np
import pandas as pd
from scipy import stats

from ganbench.errors import GanbenchError
from ganbench.results import atomic_write_text, read_json, run_dirs
from ganbench.variants import RULES

ALPHA = 0.05
SAME_TOLERANCE = 0.10        # "same": |difference of means| <= 10% of the baseline's mean
COLLAPSE_MODES = 1           # covering at most this many modes counts as collapse
BINARY = ("diverged", "d_wins", "collapsed")   # 0/1 outcomes per run: compared by Fisher's exact test
FORMATS = ("md", "csv", "html", "json")
VERDICTS = ("supported", "contradicted", "inconclusive")

# Columns of the runs table that describe a run rather than measure it.
META = ("protocol", "variant", "rule", "seed", "status", "device", "dataset", "description", "claim", "expects",
        "steps", "step", "train_seconds", "run_dir", "git_commit")
# Numbers in a metrics row that are bookkeeping, not results.
NOT_METRICS = {"step", "images_seen", "interval_ips", "classifier_accuracy"}
# Directions of the values the trainer records itself (the metric plugins declare theirs).
TRAINER_DIRECTIONS: dict[str, bool | None] = {
    "g_loss": None, "d_loss": None, "d_real": None, "d_fake": None, "g_grad_norm": None, "d_grad_norm": None,
    "collapsed": False, "diverged": False,
}
# The per-variant summary shows these, where recorded.
SUMMARY_METRICS = ("fid", "fid_best", "kid_mean", "precision", "recall", "modes", "kl_modes",
                   "sample_oscillation", "fid_auc", "probe_acc")
REPRESENTATION = "probe_acc"   # the probe's accuracy on D's features (ganbench.probe): the paper's Table 1
COST_METRICS = ("train_ips", "sample_ips", "peak_mem_mb", "g_params", "d_params", "g_flops", "d_flops")


class ReportError(GanbenchError):
    """Nothing to report on: no results folder, no runs, an unknown protocol or baseline."""


# ---- loading ----------------------------------------------------------------------------------------


class _Skip(Exception):
    """A run record that cannot be used; the message says why."""


def metric_directions() -> dict[str, bool | None]:
    """Value name -> higher is better (None: neither), from every registered metric plugin."""
    from ganbench.plugins import catalog

    out = dict(TRAINER_DIRECTIONS)
    for spec in catalog().metrics:
        out.update(spec.outputs)
    return out


def _protocol_set(protocol: str | Iterable[str] | None) -> set[str] | None:
    if protocol is None:
        return None
    return {protocol} if isinstance(protocol, str) else set(protocol) or None


def load_results(results_dir: str | Path, protocol: str | Iterable[str] | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Every usable run record under ``results_dir`` (of the given protocol or protocols, if any).

    Returns ``runs`` (a row per run: protocol, variant, rule, seed, status, device, ..., every final metric),
    ``series`` (long form: protocol, variant, seed, step, images_seen, metric, value) and ``warnings``,
    one line per record that was skipped or is incomplete, naming its folder and what is wrong.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: no such results folder; train first (ganbench run --results {root}) "
                          "or point --results at one")
    rows: list[dict] = []
    series: list[dict] = []
    warnings: list[str] = []
    wanted = _protocol_set(protocol)
    for run_dir in run_dirs(root):
        if wanted is not None and run_dir.parent.parent.name not in wanted:
            continue
        try:
            row, run_series, notes = _read_run(run_dir)
        except _Skip as exc:
            warnings.append(f"skipped {run_dir}: {exc}")
            continue
        except OSError as exc:
            warnings.append(f"skipped {run_dir}: cannot be read ({exc})")
            continue
        rows.append(row)
        series += run_series
        warnings += [f"{run_dir}: {n}" for n in notes]
    runs = pd.DataFrame(rows)
    if runs.empty:
        runs = pd.DataFrame(columns=list(META))
    else:
        runs = runs.sort_values(["protocol", "variant", "seed"], kind="stable").reset_index(drop=True)
    series_df = pd.DataFrame(series, columns=["protocol", "variant", "seed", "step", "images_seen", "metric", "value"])
    return runs, series_df, warnings


def _read_json_or_skip(path: Path, what: str) -> Any:
    if not path.exists():
        raise _Skip(f"no {path.name} ({what})")
    try:
        return read_json(path)
    except ValueError as exc:
        raise _Skip(f"{path.name} is not valid JSON ({exc}); the file is truncated or damaged") from None
    except OSError as exc:
        raise _Skip(f"{path.name} cannot be read ({exc})") from None


def _read_run(run_dir: Path) -> tuple[dict, list[dict], list[str]]:
    if not any(p.name != ".lock" for p in run_dir.iterdir()):
        raise _Skip("empty run folder (a run interrupted before it started?)")
    spec = _read_json_or_skip(run_dir / "spec.json", "a run interrupted before it started?")
    summary = _read_json_or_skip(run_dir / "summary.json", "a run interrupted before it started?")
    if not isinstance(spec, dict) or not isinstance(summary, dict):
        raise _Skip("spec.json or summary.json does not hold a JSON object")
    status = summary.get("status")
    if status == "running":
        raise _Skip(f"still running, or interrupted at step {summary.get('step', '?')}; "
                    "`ganbench run` with the same arguments resumes it")
    if status == "failed":
        raise _Skip(f"the run failed: {summary.get('error', 'no error recorded')}")
    if status not in ("complete", "diverged"):
        raise _Skip(f"unknown status {status!r} in summary.json")
    final = summary.get("final")
    if not isinstance(final, dict):
        raise _Skip("summary.json has no final metrics")
    try:
        variant = spec["variant"]
        proto = spec.get("protocol") or {}
        env = spec.get("environment") or {}
        row: dict[str, Any] = {
            "protocol": proto.get("name", run_dir.parent.parent.name),
            "variant": variant["name"],
            "rule": variant.get("rule", ""),
            "seed": int(spec["seed"]),
            "status": status,
            "device": device_label(env),
            "dataset": (spec.get("dataset") or {}).get("name", proto.get("dataset", "")),
            "description": variant.get("description", ""),
            "claim": variant.get("claim", ""),
            "expects": dict(variant.get("expects") or {}),
            "steps": summary.get("steps", proto.get("steps")),
            "step": summary.get("step"),
            "train_seconds": summary.get("train_seconds"),
            "run_dir": str(run_dir),
            "git_commit": env.get("git_commit", ""),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise _Skip(f"spec.json lacks {exc} (not a ganbench run record?)") from None

    for key, value in final.items():
        if key in META:
            continue
        row[key] = _number(value) if not isinstance(value, str) else value
    row["diverged"] = 1.0 if status == "diverged" else 0.0
    row["collapsed"] = _collapsed(row)

    notes: list[str] = []
    run_series: list[dict] = []
    path = run_dir / "metrics.jsonl"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        lines = []
        notes.append("no metrics.jsonl: its curves are left out")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            notes.append(f"metrics.jsonl line {i} is not valid JSON: the rest of its curves are left out")
            break
        for key, value in rec.items():
            v = _number(value)
            if key in ("step", "images_seen") or isinstance(value, str) or v is None:
                continue
            run_series.append({"protocol": row["protocol"], "variant": row["variant"], "seed": row["seed"],
                               "step": rec.get("step"), "images_seen": rec.get("images_seen"),
                               "metric": key, "value": v})
    if "fid_best" not in row:    # the stability metric was not run: the best FID from the curve
        fids = [r["value"] for r in run_series if r["metric"] == "fid" and math.isfinite(r["value"])]
        if fids:
            row["fid_best"] = min(fids)
    return row, run_series, notes


def _number(value: Any) -> float | None:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _collapsed(row: Mapping[str, Any]) -> float:
    """1 when the run covers at most COLLAPSE_MODES modes or D won outright, 0 when neither, NaN unknown."""
    if row.get("diverged") == 1.0:
        return 0.0
    modes, d_wins = row.get("modes"), row.get("d_wins")
    known = [v for v in (modes, d_wins) if isinstance(v, float) and math.isfinite(v)]
    if not known:
        return math.nan
    hit = (isinstance(modes, float) and math.isfinite(modes) and modes <= COLLAPSE_MODES) or d_wins == 1.0
    return 1.0 if hit else 0.0


def device_label(env: Mapping[str, Any]) -> str:
    """"cpu", or "cuda:0 (NVIDIA H100 ...)" where the GPU's name was recorded."""
    device = str(env.get("device", "") or "unknown")
    return f"{device} ({env['gpu']})" if env.get("gpu") else device


def metric_columns(runs: pd.DataFrame) -> list[str]:
    """The runs table's numeric columns that measure a run, in catalog order, then the rest by name.

    A value a metric plugin declares is a metric; so is any other number, except the trainer's bookkeeping
    (NOT_METRICS) and what a metric records beside its values under its own name (``quality_n_real``,
    ``modes_classifier_accuracy``: ``<metric>_...`` where ``<metric>`` names a registered metric)."""
    from ganbench.plugins import catalog

    directions = metric_directions()
    specs = [m.name for m in catalog().metrics]

    def measures(c: str) -> bool:
        if c in directions:
            return True
        return c not in META and c not in NOT_METRICS and not any(c.startswith(s + "_") for s in specs)

    cols = [c for c in runs.columns if measures(c) and c not in META and pd.api.types.is_numeric_dtype(runs[c])]
    order = {name: i for i, name in enumerate(directions)}
    return sorted(cols, key=lambda c: (order.get(c, len(order)), c))


def order_runs(runs: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Runs by protocol, then the baseline, then variants in the catalog's order (rule by rule), then any
    others (a plugin no longer installed) by name; seeds ascending."""
    from ganbench.plugins import catalog

    known = {v.name: i for i, v in enumerate(catalog().variants)}
    key = runs["variant"].map(lambda v: (v != baseline, known.get(v, len(known)), v))
    return (runs.assign(_key=key).sort_values(["protocol", "_key", "seed"], kind="stable")
            .drop(columns="_key").reset_index(drop=True))


# ---- aggregation over seeds -------------------------------------------------------------------------


def _finite(values: Iterable) -> np.ndarray:
    a = np.asarray(pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce"), dtype=float)
    return a[np.isfinite(a)]


def _better_word(hib: bool | None) -> str:
    return {True: "higher", False: "lower"}.get(hib, "")


def aggregate(runs: pd.DataFrame, directions: Mapping[str, bool | None] | None = None) -> pd.DataFrame:
    """Per (protocol, variant, metric) over seeds: runs, n (finite values), mean, std, 95% t-interval,
    median, worst and best (by the metric's direction; NaN where it has none). The mean of a 0/1 outcome
    (diverged, collapsed, d_wins) is the share of seeds where it happened."""
    directions = metric_directions() if directions is None else directions
    out = []
    if runs.empty:
        return pd.DataFrame(columns=AGGREGATE_COLUMNS)
    for (proto, variant), g in runs.groupby(["protocol", "variant"], sort=False):
        for m in metric_columns(runs):
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


AGGREGATE_COLUMNS = ["protocol", "variant", "rule", "metric", "better", "runs", "n", "mean", "std", "ci_low",
                     "ci_high", "median", "worst", "best"]


# ---- comparison with the baseline -------------------------------------------------------------------


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


def compare(runs: pd.DataFrame, baseline: str = "dcgan",
            directions: Mapping[str, bool | None] | None = None) -> pd.DataFrame:
    """Every variant against the baseline of its protocol, on every metric both recorded."""
    directions = metric_directions() if directions is None else directions
    out = []
    for proto, g in runs.groupby("protocol", sort=False):
        base = g[g["variant"] == baseline]
        if base.empty:
            continue
        for variant, v in g[g["variant"] != baseline].groupby("variant", sort=False):
            for m in metric_columns(runs):
                if len(_finite(v[m])) == 0 and len(_finite(base[m])) == 0:
                    continue
                hib = directions.get(m)
                out.append({"protocol": proto, "variant": variant, "rule": v["rule"].iloc[0], "metric": m,
                            "better": _better_word(hib), "baseline": baseline,
                            **compare_values(v[m].to_numpy(), base[m].to_numpy(), m, hib)})
    return pd.DataFrame(out, columns=COMPARE_COLUMNS)


# ---- verdicts ---------------------------------------------------------------------------------------


CLAIM_COLUMNS = ["protocol", "rule", "variant", "claim_metric", "metric", "expected", "better", "n_baseline",
                 "n_variant", "mean_baseline", "mean_variant", "diff", "rel", "test", "p_value", "mw_p", "observed",
                 "verdict", "reason"]


def resolve_metric(name: str, columns: Iterable[str]) -> list[str]:
    """The recorded metrics a claim names: the metric itself, else every metric named ``name_*``."""
    columns = list(columns)
    if name in columns:
        return [name]
    return [c for c in columns if c.startswith(name + "_")]


def judge(expected: str, cmp: Mapping[str, Any], hib: bool | None, alpha: float = ALPHA,
          same_tolerance: float = SAME_TOLERANCE) -> tuple[str, str]:
    """(verdict, reason) for one claimed direction ("worse", "better", "same") and one comparison."""
    p = cmp["p_value"]
    n = f"n={cmp['n_variant']} vs {cmp['n_baseline']} baseline"
    if not (isinstance(p, float) and math.isfinite(p)):
        if cmp["n_variant"] == 0 or cmp["n_baseline"] == 0:
            return "inconclusive", f"no finite values to compare ({n})"
        return "inconclusive", f"too few seeds for a test ({n}; at least 2 per side)"
    sig = p < alpha
    ptxt = f"p={p:.3g} {'<' if sig else '>='} {alpha:g}"
    if expected == "same":
        rel = cmp["rel"]
        if sig:
            return "contradicted", f"differs significantly ({ptxt}, {_pct(rel)})"
        if math.isfinite(rel) and abs(rel) <= same_tolerance:
            return "supported", f"no significant difference ({ptxt}) and within {same_tolerance:.0%} ({_pct(rel)})"
        return "inconclusive", f"not significant ({ptxt}) but the difference {_pct(rel)} exceeds {same_tolerance:.0%}"
    if hib is None:
        return "inconclusive", "the metric has no better direction"
    obs = cmp["observed"]
    if not sig:
        return "inconclusive", f"not significant ({ptxt}; observed {obs or 'no difference'}, {n})"
    if obs == expected:
        return "supported", f"significantly {obs} ({ptxt}, {n})"
    return "contradicted", f"significantly {obs}, not {expected} ({ptxt}, {n})"


def _pct(rel: float) -> str:
    return f"{rel:+.1%}" if isinstance(rel, float) and math.isfinite(rel) else "relative difference undefined"


def combine(verdicts: Iterable[str]) -> str:
    """Supported when at least one part supports and none contradicts; contradicted the other way round."""
    c = Counter(verdicts)
    if c["supported"] and not c["contradicted"]:
        return "supported"
    if c["contradicted"] and not c["supported"]:
        return "contradicted"
    return "inconclusive"


def judge_claims(runs: pd.DataFrame, baseline: str = "dcgan", alpha: float = ALPHA,
                 same_tolerance: float = SAME_TOLERANCE,
                 directions: Mapping[str, bool | None] | None = None) -> pd.DataFrame:
    """One row per (variant, claimed metric, recorded metric it names): the numbers and the verdict."""
    directions = metric_directions() if directions is None else directions
    cols = metric_columns(runs)
    out = []
    for proto, g in runs.groupby("protocol", sort=False):
        base = g[g["variant"] == baseline]
        for variant, v in g[g["variant"] != baseline].groupby("variant", sort=False):
            expects = v["expects"].iloc[0] or {}
            head = {"protocol": proto, "rule": v["rule"].iloc[0], "variant": variant}
            for claim_metric, expected in expects.items():
                row = {**head, "claim_metric": claim_metric, "expected": expected}
                if base.empty:
                    out.append({**row, "metric": claim_metric, "verdict": "inconclusive",
                                "reason": f"baseline {baseline!r} was not run under protocol {proto!r}"})
                    continue
                named = resolve_metric(claim_metric, cols)
                names = [c for c in named if len(_finite(v[c])) or len(_finite(base[c]))]
                if not names:
                    reason = ("metric not recorded" if not named else
                              f"{', '.join(named)} recorded but never finite (too few evaluations?)")
                    out.append({**row, "metric": claim_metric, "verdict": "inconclusive", "reason": reason})
                    continue
                for m in names:
                    hib = directions.get(m)
                    cmp = compare_values(v[m].to_numpy(), base[m].to_numpy(), m, hib)
                    verdict, reason = judge(expected, cmp, hib, alpha, same_tolerance)
                    if m not in BINARY and v["diverged"].sum() and cmp["n_variant"] < len(v):
                        reason += f"; {int(v['diverged'].sum())} of {len(v)} variant runs diverged and have no {m}"
                    out.append({**row, "metric": m, "better": _better_word(hib), **cmp,
                                "verdict": verdict, "reason": reason})
    return pd.DataFrame(out, columns=CLAIM_COLUMNS)


def variant_verdicts(runs: pd.DataFrame, claims: pd.DataFrame, baseline: str = "dcgan") -> pd.DataFrame:
    """One row per variant run (the baseline and plugin variants included): its verdict over its claims."""
    out = []
    for (proto, variant), g in runs.groupby(["protocol", "variant"], sort=False):
        mine = claims[(claims["protocol"] == proto) & (claims["variant"] == variant)]
        if variant == baseline:
            verdict, detail = "", "baseline"
        elif mine.empty:
            verdict, detail = "inconclusive", "the variant states no expected effect"
        else:
            per_claim = {k: combine(c["verdict"]) for k, c in mine.groupby("claim_metric", sort=False)}
            verdict = combine(per_claim.values())
            detail = "; ".join(f"{k} {mine[mine['claim_metric'] == k]['expected'].iloc[0]}: {v}"
                               for k, v in per_claim.items())
        out.append({"protocol": proto, "rule": g["rule"].iloc[0], "variant": variant, "description": g["description"].iloc[0],
                    "runs": len(g), "verdict": verdict, "claims": detail})
    return pd.DataFrame(out, columns=["protocol", "rule", "variant", "description", "runs", "verdict", "claims"])


def rule_verdicts(variants: pd.DataFrame, protocols: Iterable[str]) -> pd.DataFrame:
    """One row per (protocol, rule R1..R6): supported when more than half of the rule's variants that were
    run support it and none contradicts it; contradicted the other way round; otherwise inconclusive."""
    out = []
    for proto in protocols:
        for rule, (text, claim) in RULES.items():
            mine = variants[(variants["protocol"] == proto) & (variants["rule"] == rule)]
            c = Counter(mine["verdict"])
            n = len(mine)
            if n == 0:
                verdict, summary = "inconclusive", "no variant of this rule was run"
            else:
                if c["supported"] * 2 > n and not c["contradicted"]:
                    verdict = "supported"
                elif c["contradicted"] * 2 > n and not c["supported"]:
                    verdict = "contradicted"
                else:
                    verdict = "inconclusive"
                summary = (f"supported by {c['supported']}/{n} variants, contradicted by {c['contradicted']}, "
                           f"inconclusive {c['inconclusive']}")
            out.append({"protocol": proto, "rule": rule, "paper_rule": text, "paper_claim": claim, "verdict": verdict,
                        "variants_run": n, "supported": c["supported"], "contradicted": c["contradicted"],
                        "inconclusive": c["inconclusive"], "summary": summary,
                        "variants": ", ".join(f"{r.variant} ({r.verdict})" for r in mine.itertuples())})
    return pd.DataFrame(out, columns=["protocol", "rule", "paper_rule", "paper_claim", "verdict", "variants_run",
                                      "supported", "contradicted", "inconclusive", "summary", "variants"])


REPRESENTATION_COLUMNS = ["protocol", "rule", "paper_rule", "changed", "variants_run", "lower", "higher", "unchanged",
                          "variants"]


def representation_by_rule(comparisons: pd.DataFrame, variants: pd.DataFrame, alpha: float = ALPHA) -> pd.DataFrame:
    """Per (protocol, rule): did breaking the rule change the probe's accuracy on D's features? Each variant
    against the baseline on ``probe_acc`` (Welch's t-test over seeds): "lower" or "higher" at p < alpha,
    else "unchanged". The rule's answer: "yes" when any variant changed it, "no" when every variant was
    tested and none did, "unknown" when the probe was not recorded or too few seeds for a test. Empty when
    no run recorded the probe."""
    mine = comparisons[comparisons["metric"] == REPRESENTATION]
    if mine.empty:
        return pd.DataFrame(columns=REPRESENTATION_COLUMNS)
    out = []
    for proto in dict.fromkeys(variants["protocol"]):
        for rule, (text, _claim) in RULES.items():
            ran = variants[(variants["protocol"] == proto) & (variants["rule"] == rule)]["variant"].tolist()
            if not ran:
                continue
            counts, words, tested = Counter(), [], 0
            for name in ran:
                c = mine[(mine["protocol"] == proto) & (mine["variant"] == name)]
                if c.empty or not math.isfinite(c["p_value"].iloc[0]):
                    words.append(f"{name}: no test")
                    continue
                c = c.iloc[0]
                tested += 1
                change = ("lower" if c["diff"] < 0 else "higher") if c["p_value"] < alpha else "unchanged"
                counts[change] += 1
                words.append(f"{name}: {change} ({c['mean_variant']:.3f} vs {c['mean_baseline']:.3f}, "
                             f"p={c['p_value']:.2g})")
            changed = "yes" if counts["lower"] or counts["higher"] else ("no" if tested == len(ran) else "unknown")
            out.append({"protocol": proto, "rule": rule, "paper_rule": text, "changed": changed,
                        "variants_run": len(ran), "lower": counts["lower"], "higher": counts["higher"],
                        "unchanged": counts["unchanged"], "variants": "; ".join(words)})
    return pd.DataFrame(out, columns=REPRESENTATION_COLUMNS)


# ---- throughput -------------------------------------------------------------------------------------


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


# ---- the report -------------------------------------------------------------------------------------


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


def definitions(alpha: float = ALPHA, same_tolerance: float = SAME_TOLERANCE) -> dict[str, str]:
    return {
        "diverged": "the run's losses became non-finite; it has no quality metrics (FID is missing, not zero)",
        "collapsed": f"the run covers at most {COLLAPSE_MODES} mode of the data, or D won outright (d_wins = 1)",
        "interval": "mean +- Student's t 95% interval over seeds (n-1 degrees of freedom)",
        "worst": "the worst seed's value by the metric's direction",
        "test": ("Welch's t-test on the seeds' final values (Fisher's exact test on counts for diverged, "
                 "collapsed, d_wins); Mann-Whitney U is shown as a check; no correction for multiple claims"),
        "supported": (f"worse/better: significant at p < {alpha:g} in the claimed direction; same: not significant "
                      f"and the difference of means within {same_tolerance:.0%} of the baseline's mean"),
        "contradicted": f"worse/better: significant at p < {alpha:g} the other way; same: significant",
        "inconclusive": "anything else (not significant, too few seeds, metric not recorded)",
        "variant verdict": "supported when at least one claim is supported and none contradicted; contradicted "
                           "the other way round; otherwise inconclusive",
        "representation": (f"the probe's test accuracy (linear L2-SVM on D's conv features max-pooled to 4x4, the "
                           f"paper's Table 1); a rule changed it when a variant differs from the baseline at "
                           f"p < {alpha:g} (Welch)"),
        "rule verdict": "supported when more than half of the rule's variants that were run support it and none "
                        "contradicts it; contradicted the other way round; otherwise inconclusive",
    }


def build_report(results_dir: str | Path = "results", baseline: str = "dcgan",
                 protocol: str | Iterable[str] | None = None, alpha: float = ALPHA,
                 same_tolerance: float = SAME_TOLERANCE) -> Report:
    """Everything a report shows, from the records under ``results_dir`` (of the given protocols, if any)."""
    runs, series, warnings = load_results(results_dir, protocol)
    root = Path(results_dir)
    found = sorted({p.parent.parent.name for p in run_dirs(root)}) if root.is_dir() else []
    for name in sorted(_protocol_set(protocol) or ()):
        if name not in found:
            close = difflib.get_close_matches(name, found, n=3, cutoff=0.0)
            hint = f"protocols there: {', '.join(found)}" + (f" (did you mean {close[0]}?)" if close else "") \
                if found else "it holds no runs"
            raise ReportError(f"no runs of protocol {name!r} under {root}; {hint}")
    if runs.empty:
        detail = f" ({len(warnings)} unusable: {'; '.join(warnings)})" if warnings else ""
        raise ReportError(f"no finished runs under {root}{detail}; train some with `ganbench run --results {root}`")
    if baseline not in set(runs["variant"]):
        found = sorted(set(runs["variant"]))
        close = difflib.get_close_matches(baseline, found, n=3, cutoff=0.0)
        raise ReportError(f"baseline {baseline!r} has no finished runs under {root}; variants there: "
                          f"{', '.join(found)}" + (f"; did you mean: {', '.join(close)}?" if close else ""))
    for proto, g in runs.groupby("protocol", sort=False):
        if baseline not in set(g["variant"]):
            warnings.append(f"protocol {proto!r} has no runs of the baseline {baseline!r}: its variants get no verdicts")
    runs = order_runs(runs, baseline)
    directions = metric_directions()
    claims = judge_claims(runs, baseline, alpha, same_tolerance, directions)
    variants = variant_verdicts(runs, claims, baseline)
    tp, tp_warnings = throughput(runs)
    comparisons = compare(runs, baseline, directions)
    report = Report(
        results=str(results_dir), baseline=baseline, alpha=alpha, same_tolerance=same_tolerance, runs=runs,
        series=series, aggregates=aggregate(runs, directions), comparisons=comparisons,
        claims=claims, variants=variants, rules=rule_verdicts(variants, list(dict.fromkeys(runs["protocol"]))),
        throughput=tp, representation=representation_by_rule(comparisons, variants, alpha),
        warnings=warnings + tp_warnings,
    )
    return report


# ---- tables for people (terminal, Markdown, HTML) --------------------------------------------------


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


# ---- renderers --------------------------------------------------------------------------------------


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
        "same_tolerance": report.same_tolerance, "definitions": definitions(report.alpha, report.same_tolerance),
        "warnings": report.warnings, "rules": _records(report.rules), "variants": _records(report.variants),
        "claims": _records(report.claims), "aggregates": _records(report.aggregates),
        "comparisons": _records(report.comparisons), "throughput": _records(report.throughput),
        "representation": _records(report.representation), "runs": _records(report.runs),
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
             f"{len(report.runs)} runs from `{report.results}`, baseline `{report.baseline}`.", ""]
    parts += [_md_table(t) for t in display_tables(report)]
    parts += ["### Definitions", ""] + [f"- **{k}**: {v}" for k, v in definitions(report.alpha, report.same_tolerance).items()]
    if report.warnings:
        parts += ["", "### Warnings", ""] + [f"- {_md_cell(w)}" for w in report.warnings]
    return "\n".join(parts) + "\n"


# ---- HTML -------------------------------------------------------------------------------------------


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


def _small_multiples(report: Report, proto: str, metrics: list[str], ylabel: str) -> str | None:
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
    panels = [(m, label) for m, label in panels if m in runs and len(_finite(runs[m]))]
    if not panels:
        return None
    variants = _variant_order(report, proto)
    fig = _figure(4.5 * len(panels), 0.8 + 0.32 * len(variants))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (m, label) in zip(axes, panels):
        values = [_finite(runs[runs["variant"] == v][m]) for v in variants]
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
td.inconclusive{background:#eeeeee!important}
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
             f"<p>{len(report.runs)} runs from <code>{esc(report.results)}</code>; baseline <code>{esc(report.baseline)}</code>; "
             f"alpha {report.alpha:g}.</p>"]
    if report.warnings:
        parts.append("<h2>Warnings</h2><ul class='warn'>" + "".join(f"<li>{esc(w)}</li>" for w in report.warnings) + "</ul>")
    parts += [_html_table(t) for t in display_tables(report)]
    for proto in report.protocols:
        parts.append(f"<h2>Protocol {esc(proto)}</h2>")
        g = report.runs[report.runs["protocol"] == proto]
        total = pd.to_numeric(g.get("modes_total", pd.Series(dtype=float)), errors="coerce").dropna()
        plots = [
            ("FID over training (mean over seeds, band: ± one std; dashed: baseline)",
             _small_multiples(report, proto, ["fid"], "FID")),
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
        f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in definitions(report.alpha, report.same_tolerance).items()) + "</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)


RENDERERS = {"md": to_markdown, "csv": to_csv, "html": to_html, "json": to_json}


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
    atomic_write_text(out, render(report, fmt))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(out, 0o666 & ~umask)    # a report is for sharing: the usual mode, not the temporary file's 0600
    return out
