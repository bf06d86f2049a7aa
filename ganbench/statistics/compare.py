"""Comparisons, equivalence, multiplicity and formatting (see ``ganbench.statistics``)."""

from __future__ import annotations

import math
from typing import Iterable, Sequence
from warnings import catch_warnings, simplefilter

import numpy as np
from scipy import stats

from ganbench.statistics.core import (ALPHA, Comparison, DIFFERENCE, EQUIVALENCE_MARGIN, EXACT_BELOW, Equivalence, LEVEL, LOG_RATIO, MONTE_CARLO_RESAMPLES, MULTIPLICITY, RELATIVE_MARGIN, StatisticsError, _check_level, _clean, _welch, exact_p, pooled_sd, smallest_p)
from ganbench.statistics.power import minimum_detectable_effect



# ---- comparisons ----------------------------------------------------------------------------------------


def compare_continuous(variant: Iterable[float], baseline: Iterable[float], *, log_scale: bool = False,
                       level: float = LEVEL, alpha: float = ALPHA, exact_test: str = "permutation") -> Comparison:
    """Variant against baseline on a continuous metric: the effect with its ``level`` interval, a p-value
    and the smallest effect these seeds could detect.

    ``log_scale`` (for positive ratio-scale metrics: FID, KID): the effect is the log of the ratio of
    geometric means, variant over baseline, with Welch's t-interval on the logs; any value <= 0 makes the
    comparison fall back to a difference of means, said in ``note``. Otherwise a difference of means
    (variant - baseline) with Welch's t-interval.
    The p-value: ``exact_p`` (``exact_test``) when either arm has fewer than ``EXACT_BELOW`` values, or when
    neither arm has any spread; otherwise Welch's t-test. Both on the scale of the estimate.
    The MDE: ``minimum_detectable_effect`` at ``alpha`` and power 0.8 with the arms' pooled SD and sizes (NaN
    when neither arm varies: a pooled SD of 0 gives no power estimate).
    Assumes independent seeds; Welch's test and interval assume roughly normal (log) values."""
    _check_level(level, "level")
    a, dropped_a = _clean(variant)
    b, dropped_b = _clean(baseline)
    notes = []
    if dropped_a or dropped_b:
        notes.append(f"dropped non-finite values: {dropped_a} of the variant's, {dropped_b} of the baseline's")
    scale = DIFFERENCE
    if log_scale:
        if len(a) and len(b) and min(a.min(), b.min()) <= 0:
            notes.append(f"a value <= 0 (min {min(a.min(), b.min()):.3g}) has no log: compared as a difference "
                         "of means, not a log ratio")
        else:
            scale = LOG_RATIO
    xa, xb = (np.log(a), np.log(b)) if scale == LOG_RATIO else (a, b)
    ca = float(np.mean(xa)) if len(xa) else math.nan
    cb = float(np.mean(xb)) if len(xb) else math.nan
    estimate = ca - cb
    welch_p, low, high = _welch(xa, xb, level)
    if len(xa) >= 2 and len(xb) >= 2 and np.ptp(xa) == 0 and np.ptp(xb) == 0:
        notes.append("no spread in either arm: no interval")
    sd = pooled_sd(xa, xb)
    if len(xa) < 1 or len(xb) < 1:
        p, test, min_p = math.nan, "none (an arm has no values)", math.nan
    elif min(len(xa), len(xb)) < EXACT_BELOW or (np.ptp(xa) == 0 and np.ptp(xb) == 0):
        p, test = exact_p(xa, xb, exact_test)
        min_p = (smallest_p(len(xa), len(xb), "permutation") if not test.startswith("permutation (Monte")
                 else 2 / (MONTE_CARLO_RESAMPLES + 1))
    else:
        p, test, min_p = welch_p, "welch", 0.0
    # no spread in either arm: an MDE of 0 would claim any change shows; these seeds give no power estimate
    mde = minimum_detectable_effect(sd, len(xa), len(xb), alpha) if len(xa) and len(xb) and sd != 0 else math.nan
    log = scale == LOG_RATIO
    return Comparison(
        scale=scale, estimate=estimate, ci_low=low, ci_high=high, level=level,
        ratio=math.exp(estimate) if log else math.nan, ratio_low=math.exp(low) if log else math.nan,
        ratio_high=math.exp(high) if log else math.nan, p=p, test=test, min_p=min_p, n_a=len(a), n_b=len(b),
        center_a=math.exp(ca) if log else ca, center_b=math.exp(cb) if log else cb, sd_pooled=sd, mde=mde,
        mde_ratio=math.exp(mde) if log else math.nan, note="; ".join(notes))


def _newcombe(k_a: int, n_a: int, k_b: int, n_b: int, level: float) -> tuple[float, float]:
    """Newcombe's hybrid score interval for k_a/n_a - k_b/n_b, from the two Wilson intervals."""
    pa, pb = k_a / n_a, k_b / n_b
    wa = stats.binomtest(k_a, n_a).proportion_ci(level, method="wilson")
    wb = stats.binomtest(k_b, n_b).proportion_ci(level, method="wilson")
    d = pa - pb
    return (d - math.hypot(pa - wa.low, wb.high - pb), d + math.hypot(wa.high - pa, pb - wb.low))


def fisher_events_needed(n_a: int, n_b: int, alpha: float = ALPHA) -> int | None:
    """The fewest events among ``n_a`` variant runs, with none among ``n_b`` baseline runs, for which
    Fisher's exact test gives p < ``alpha`` (8 vs 8: 5). None when even n_a/n_a is not enough (3 vs 3)."""
    for k in range(1, n_a + 1):
        if stats.fisher_exact([[k, n_a - k], [0, n_b]]).pvalue < alpha:
            return k
    return None


def compare_binary(variant: Iterable[float], baseline: Iterable[float], *, level: float = LEVEL,
                   alpha: float = ALPHA) -> Comparison:
    """Variant against baseline on a 0/1 outcome per run (diverged, collapsed): Fisher's exact test
    (two-sided) on the 2x2 counts; the estimate is the difference of the proportions (variant - baseline)
    with Newcombe's hybrid score interval. A value >= 0.5 counts as the event; non-finite values (not
    measured) are dropped. ``mde`` is the smallest proportion of variant runs with the event, against none
    of the baseline's, that Fisher's test detects at ``alpha`` (``fisher_events_needed`` / n_a; NaN when
    no count can). Assumes independent runs."""
    _check_level(level, "level")
    a, dropped_a = _clean(variant)
    b, dropped_b = _clean(baseline)
    note = (f"dropped unmeasured values: {dropped_a} of the variant's, {dropped_b} of the baseline's"
            if dropped_a or dropped_b else "")
    na, nb = len(a), len(b)
    if na < 1 or nb < 1:
        return Comparison(DIFFERENCE, math.nan, math.nan, math.nan, level, math.nan, math.nan, math.nan, math.nan,
                          "none (an arm has no values)", math.nan, na, nb, math.nan, math.nan, math.nan, math.nan,
                          math.nan, note)
    ka, kb = int((a >= 0.5).sum()), int((b >= 0.5).sum())
    low, high = _newcombe(ka, na, kb, nb, level)
    needed = fisher_events_needed(na, nb, alpha)
    return Comparison(
        scale=DIFFERENCE, estimate=ka / na - kb / nb, ci_low=low, ci_high=high, level=level, ratio=math.nan,
        ratio_low=math.nan, ratio_high=math.nan, p=float(stats.fisher_exact([[ka, na - ka], [kb, nb - kb]]).pvalue),
        test="fisher (exact)", min_p=smallest_p(na, nb, "fisher"), n_a=na, n_b=nb, center_a=ka / na, center_b=kb / nb,
        sd_pooled=math.nan, mde=needed / na if needed else math.nan, mde_ratio=math.nan, note=note)


def equivalence(variant: Iterable[float], baseline: Iterable[float], *, log_scale: bool = True,
                margin: float | None = None, alpha: float = ALPHA) -> Equivalence:
    """Two one-sided Welch t-tests (TOST) that the effect lies inside (-margin, +margin), for "same" claims.

    On the log scale (default; positive ratio-scale metrics) the effect is the log ratio of geometric
    means and the default margin is log(1.15): equivalent means a ratio within [1/1.15, 1.15] =
    [0.870, 1.150], symmetric on the log scale, so "15% higher" and "15% lower" weigh the same. On the
    difference scale (or after the fallback for a value <= 0, said in ``note``) the default margin is
    ``RELATIVE_MARGIN`` (15%) of |baseline mean|. The TOST p is the larger one-sided p; equivalent when it
    is below ``alpha``, which is when the 1 - 2 alpha (90%) Welch interval lies inside the margin.
    Assumes roughly normal (log) values; non-significance of a difference test is never used as evidence
    of sameness. NaN p (not equivalent) when an arm has fewer than 2 values or neither has any spread."""
    _check_level(alpha, "alpha")
    a, _ = _clean(variant)
    b, _ = _clean(baseline)
    notes = []
    log = log_scale
    if log and len(a) and len(b) and min(a.min(), b.min()) <= 0:
        notes.append("a value <= 0 has no log: tested as a difference of means")
        log = False
    xa, xb = (np.log(a), np.log(b)) if log else (a, b)
    if margin is None and log:
        margin = EQUIVALENCE_MARGIN
    elif margin is None:
        margin = RELATIVE_MARGIN * abs(float(np.mean(xb))) if len(xb) else math.nan
    if not margin > 0:
        notes.append(f"margin {margin!r} is not positive: no equivalence test")
    scale, test = (LOG_RATIO, "TOST (Welch t on logs)") if log else (DIFFERENCE, "TOST (Welch t)")
    est = float(np.mean(xa) - np.mean(xb)) if len(xa) and len(xb) else math.nan
    nan = math.nan
    if len(xa) < 2 or len(xb) < 2 or (np.ptp(xa) == 0 and np.ptp(xb) == 0) or not margin > 0:
        if len(xa) >= 2 and len(xb) >= 2 and np.ptp(xa) == 0 and np.ptp(xb) == 0:
            notes.append("no spread in either arm: no equivalence test")
        return Equivalence(scale, est, nan, nan, 1 - 2 * alpha, float(margin), nan, nan, nan, False, test,
                           len(a), len(b), "; ".join(notes))
    with catch_warnings():
        simplefilter("ignore", RuntimeWarning)
        lower = stats.ttest_ind(xa + margin, xb, equal_var=False, alternative="greater")   # H0: effect <= -margin
        upper = stats.ttest_ind(xa - margin, xb, equal_var=False, alternative="less")      # H0: effect >= +margin
    p = max(float(lower.pvalue), float(upper.pvalue))
    _, low, high = _welch(xa, xb, 1 - 2 * alpha)
    return Equivalence(scale, est, low, high, 1 - 2 * alpha, float(margin), float(lower.pvalue), float(upper.pvalue),
                       p, bool(p < alpha), test, len(a), len(b), "; ".join(notes))


# ---- multiplicity ---------------------------------------------------------------------------------------


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm", family: int | None = None) -> list[float]:
    """p-values adjusted for testing them together, in the order given.

    "holm" (default): Holm's step-down method, controlling the family-wise error rate (the chance of any
    false "significant") under any dependence. "bh": Benjamini-Hochberg (scipy's
    ``false_discovery_control``), controlling the expected share of false discoveries; assumes
    independent or positively dependent tests. "none": unchanged. NaN values (claims without a test) are
    passed through and do not count towards the number of tests.

    ``family``: the size of the family the correction is over, when these p-values are only part of it (a
    study's interim report, with the comparisons its design fixed not all run yet): each missing comparison
    counts as p = 1, one that is never significant, so the part is corrected no less strictly than the whole
    family would correct it. Default: the finite p-values given, the whole family."""
    if method not in MULTIPLICITY:
        raise StatisticsError(f"unknown multiplicity correction {method!r}; allowed: {', '.join(MULTIPLICITY)}")
    p = np.asarray(list(pvalues), dtype=float)
    out = p.copy()
    ok = np.isfinite(p)
    if method == "none" or not ok.any():
        return [float(v) for v in out]
    q = p[ok]
    if np.any((q < 0) | (q > 1)):
        raise StatisticsError(f"p-values must lie in [0, 1], got {q[(q < 0) | (q > 1)].tolist()}")
    if family is not None:
        if family < len(q):
            raise StatisticsError(f"a family of {family} comparisons cannot hold the {len(q)} given")
        q = np.concatenate([q, np.ones(family - len(q))])   # the missing comparisons, as if never significant
    if method == "bh":
        out[ok] = stats.false_discovery_control(q, method="bh")[:ok.sum()]
    else:
        m = len(q)
        order = np.argsort(q, kind="stable")
        stepped = np.maximum.accumulate((m - np.arange(m)) * q[order])
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
        out[ok] = adjusted[:ok.sum()]
    return [float(v) for v in out]


def adjusted_floors(comparisons: Sequence[Comparison], method: str = "holm", family: int | None = None) -> list[float]:
    """Each comparison's smallest possible p after the correction: ``adjust_pvalues`` of every comparison's
    ``min_p`` (those without a p left out, as there; ``family`` as there). A lower bound on its adjusted p
    whatever the data: Holm's and BH's adjusted p-values never fall when a p rises."""
    return adjust_pvalues([c.min_p if math.isfinite(c.p) else math.nan for c in comparisons], method, family)


# ---- verdicts -------------------------------------------------------------------------------------------


def format_ratio(log_estimate: float, log_low: float, log_high: float, digits: int = 2) -> str:
    """A log ratio and its interval as ratios: "1.31x [1.12, 1.54]" ("1.31x [no interval]" without one)."""
    if not math.isfinite(log_estimate):
        return "no estimate"
    head = f"{math.exp(log_estimate):.{digits}f}x"
    if not (math.isfinite(log_low) and math.isfinite(log_high)):
        return f"{head} [no interval]"
    return f"{head} [{math.exp(log_low):.{digits}f}, {math.exp(log_high):.{digits}f}]"


def format_effect(c: Comparison | Equivalence, digits: int = 2) -> str:
    """The effect of a comparison with its interval: a ratio on the log-ratio scale ("1.31x [1.12, 1.54]"),
    a signed difference otherwise ("+0.42 [+0.10, +0.74]")."""
    if c.scale == LOG_RATIO:
        return format_ratio(c.estimate, c.ci_low, c.ci_high, digits)
    if not math.isfinite(c.estimate):
        return "no estimate"
    head = f"{c.estimate:+.{digits}g}"
    if not (math.isfinite(c.ci_low) and math.isfinite(c.ci_high)):
        return f"{head} [no interval]"
    return f"{head} [{c.ci_low:+.{digits}g}, {c.ci_high:+.{digits}g}]"
