"""Statistics that cannot overclaim: effect sizes with intervals, exact small-sample tests, multiplicity
corrections, equivalence tests, and the smallest effect a design could have detected.

A comparison is always *variant against baseline*, on the seeds' final values of one metric:

    compare_continuous(variant, baseline, log_scale=...)  -> Comparison   (FID, KID, modes, oscillation, ...)
    compare_binary(variant, baseline)                     -> Comparison   (diverged, collapsed: 0/1 per run)
    equivalence(variant, baseline)                        -> Equivalence  (TOST, for "same" claims)
    adjust_pvalues([p, ...], "holm")                      -> adjusted p-values across the report's claims
    judge(expected, higher_is_better, comparison, ...)    -> Verdict      (one claim)
    combine([verdict, ...])                               -> Verdict      (a rule, from its claims)

Planning (``ganbench plan``): ``pooled_sd`` of a pilot's log values, ``minimum_detectable_effect`` /
``minimum_detectable_ratio`` for a given number of seeds, ``seeds_needed`` / ``seeds_needed_for_ratio`` for a
given effect. Power is that of a two-sided two-sample t-test, from the noncentral t distribution with
df = n_a + n_b - 2 (solved numerically); the normal approximation is available (``method="normal"``) but
is optimistic at 3-8 seeds, where the t quantiles are far from the normal ones.

Conventions:

- Positive ratio-scale metrics (FID, KID) are compared on the log scale: the estimate is the log of the
  ratio of geometric means, variant over baseline, with a 95% Welch t-interval on the logs; it reads as
  "1.31x [1.12, 1.54]". A value <= 0 in either arm (KID's unbiased estimator can go negative) makes the
  log undefined: the comparison falls back to a difference of means and says so in ``note``.
- Other continuous metrics: a difference of means (variant - baseline) with a 95% Welch t-interval.
- The p-value: with fewer than ``EXACT_BELOW`` (6) values in either arm, an exact permutation test of the
  difference in means (on the same scale as the estimate) over every split of the pooled values; with
  6 or more in both, Welch's t-test. The exact test's p is never below 2 / C(n_a + n_b, n_a) (0.1 at 3 vs
  3): identical constant arms give 1, perfectly separated arms the smallest achievable p. The interval is
  Welch's at every n, so at 3 vs 3 it can exclude "no change" while the exact p cannot go below 0.1; the
  verdict follows the p.
- Binary outcomes: Fisher's exact test (two-sided) on the counts; the estimate is the difference of the
  proportions with Newcombe's hybrid score interval (from Wilson intervals).
- Non-finite values (a diverged run's FID) are dropped before anything is computed; ``n_a``, ``n_b``
  count what was used, and ``note`` says how many were dropped.

Every result is a frozen dataclass of plain numbers and strings: ``dataclasses.asdict`` gives a dict that
``json.dumps`` writes (NaN where a number is undefined).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable, Sequence
from warnings import catch_warnings, simplefilter

import numpy as np
from scipy import optimize, stats

from ganbench.errors import GanbenchError

ALPHA = 0.05                         # two-sided significance level of every test
POWER = 0.80                         # target power of the detectable-effect and seed-count calculations
LEVEL = 0.95                         # confidence level of effect intervals
EXACT_BELOW = 6                      # fewer values than this in either arm: an exact test instead of Welch's
MAX_EXACT_SPLITS = 200_000           # more splits than this: a Monte Carlo permutation test instead
MONTE_CARLO_RESAMPLES = 99_999       # ... with this many resamples (two-sided p >= 2 / 100 000, never 0)
EQUIVALENCE_RATIO = 1.15             # "same" on the log scale: ratio of geometric means in [1/1.15, 1.15]
EQUIVALENCE_MARGIN = math.log(EQUIVALENCE_RATIO)   # the same margin, as a log ratio: +-0.1398
RELATIVE_MARGIN = 0.15               # "same" on the difference scale: within 15% of |baseline mean|
DEFAULT_RATIO = 1.2                  # the effect ``seeds_needed_for_ratio`` sizes a study for
MULTIPLICITY = ("holm", "bh", "none")
VERDICTS = ("supported", "contradicted", "inconclusive", "underpowered", "untested")
EXPECTATIONS = ("worse", "better", "same", "higher", "lower")

LOG_RATIO = "log-ratio"              # scale of an estimate: log(geometric mean variant / geometric mean baseline)
DIFFERENCE = "difference"            # scale of an estimate: mean variant - mean baseline (proportions if binary)


class StatisticsError(GanbenchError, ValueError):
    """A statistics function was asked for something it does not offer (an unknown method, a bad level)."""


# ---- results ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Variant against baseline on one metric. The estimate and interval are on ``scale``; for a log
    ratio the ``ratio*`` fields give them as ratios (NaN on the difference scale)."""

    scale: str            # "log-ratio" or "difference"
    estimate: float       # log ratio of geometric means, or difference of means / proportions (variant - baseline)
    ci_low: float         # lower end of the ``level`` interval (Welch t; Newcombe for proportions)
    ci_high: float        # upper end
    level: float          # confidence level of the interval, 0.95
    ratio: float          # exp(estimate) on the log-ratio scale, else NaN
    ratio_low: float      # exp(ci_low) on the log-ratio scale, else NaN
    ratio_high: float     # exp(ci_high) on the log-ratio scale, else NaN
    p: float              # two-sided p-value of ``test`` (NaN when no test is possible)
    test: str             # "permutation (exact, 20 splits)", "welch", "mann-whitney (exact)", "fisher (exact)", ...
    min_p: float          # the smallest p ``test`` can give at these n (perfect separation); 0 for Welch
    n_a: int              # values of the variant used
    n_b: int              # values of the baseline used
    center_a: float       # variant: geometric mean (log-ratio), mean, or proportion (binary)
    center_b: float       # baseline: the same
    sd_pooled: float      # pooled SD of the two arms on the comparison scale (logs for a log ratio)
    mde: float            # smallest |effect| on ``scale`` detectable with power 0.8 at alpha 0.05 at these n
    mde_ratio: float      # exp(mde) on the log-ratio scale, else NaN
    note: str             # what was decided on the way: a fallback to differences, dropped values, ...


@dataclass(frozen=True)
class Equivalence:
    """Two one-sided tests (TOST) that the effect lies within +-``margin`` on ``scale``."""

    scale: str            # "log-ratio" or "difference"
    estimate: float       # as in Comparison
    ci_low: float         # lower end of the (1 - 2 alpha) interval, 90% at alpha 0.05
    ci_high: float        # upper end
    level: float          # 1 - 2 alpha
    margin: float         # equivalence margin on ``scale``: log(1.15) by default for a log ratio
    p_lower: float        # one-sided p for H0: effect <= -margin
    p_upper: float        # one-sided p for H0: effect >= +margin
    p: float              # TOST p-value: max(p_lower, p_upper)
    equivalent: bool      # p < alpha, i.e. the (1 - 2 alpha) interval lies inside (-margin, +margin)
    test: str             # "TOST (Welch t on logs)" or "TOST (Welch t)"
    n_a: int
    n_b: int
    note: str


@dataclass(frozen=True)
class Verdict:
    """One of ``VERDICTS`` and a short reason a reader can check."""

    verdict: str
    reason: str


# ---- helpers ------------------------------------------------------------------------------------------


def _clean(values: Iterable[float]) -> tuple[np.ndarray, int]:
    """The finite values as floats, and how many non-finite ones were dropped."""
    x = np.asarray(list(values), dtype=float).ravel()
    keep = np.isfinite(x)
    return x[keep], int((~keep).sum())


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def _check_level(value: float, name: str) -> None:
    if not 0 < value < 1:
        raise StatisticsError(f"{name} must lie strictly between 0 and 1, got {value!r}")


def _welch(a: np.ndarray, b: np.ndarray, level: float) -> tuple[float, float, float]:
    """(two-sided p, low, high) of Welch's t-test and t-interval for mean(a) - mean(b); NaN when either arm
    has fewer than 2 values or neither has any spread (a zero-width interval from two seeds would overclaim)."""
    if len(a) < 2 or len(b) < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return math.nan, math.nan, math.nan
    with catch_warnings():     # nearly identical values: scipy warns about precision, the result is still right
        simplefilter("ignore", RuntimeWarning)
        res = stats.ttest_ind(a, b, equal_var=False)
        ci = res.confidence_interval(level)
    return float(res.pvalue), float(ci.low), float(ci.high)


def pooled_sd(*arms: Iterable[float]) -> float:
    """The pooled standard deviation of several arms, sqrt(sum (n_i - 1) s_i^2 / sum (n_i - 1)).

    Assumes the arms share one SD (as a t-test with pooled variance does). Pass log values to get the
    spread of a ratio-scale metric such as FID. Non-finite values are dropped; an arm with fewer than 2
    values adds nothing; NaN when no arm has 2 values."""
    num = den = 0.0
    for arm in arms:
        x, _ = _clean(arm)
        if len(x) >= 2:
            num += (len(x) - 1) * float(np.var(x, ddof=1))
            den += len(x) - 1
    return math.sqrt(num / den) if den else math.nan


# ---- exact tests --------------------------------------------------------------------------------------


def smallest_p(n_a: int, n_b: int, test: str = "permutation") -> float:
    """The smallest two-sided p-value ``test`` can return with ``n_a`` and ``n_b`` values, reached when the
    arms are perfectly separated (or, for "fisher", when every run of one arm has the event and none of
    the other's).

    - "permutation" / "mann-whitney" (exact): 2 / C(n_a + n_b, n_a), at most 1 (3 vs 3: 0.1; 4 vs 4: 0.029).
    - "fisher": Fisher's exact test on n_a/n_a against 0/n_b (3 vs 3: 0.1; 8 vs 8: 0.00016).
    - "welch": 0 (no lower bound: a t-test can give any p given small enough spread).
    NaN when an arm is empty."""
    if n_a < 1 or n_b < 1:
        return math.nan
    if test in ("permutation", "mann-whitney"):
        return min(1.0, 2.0 / math.comb(n_a + n_b, n_a))
    if test == "fisher":
        return float(stats.fisher_exact([[n_a, 0], [0, n_b]]).pvalue)
    if test == "welch":
        return 0.0
    raise StatisticsError(f"unknown test {test!r}; known: permutation, mann-whitney, fisher, welch")


def can_reach_alpha(n_a: int, n_b: int, alpha: float = ALPHA, test: str = "fisher") -> bool:
    """Whether ``test`` could give p < ``alpha`` at all with these seed counts, even with the most extreme
    outcome (n/n events against 0/n, or perfectly separated values). 3 vs 3: best p 0.1, so no.

    This is the bound before any multiplicity correction; a corrected p is never smaller than the raw
    one, so a claim that cannot reach alpha raw cannot reach it corrected either."""
    _check_level(alpha, "alpha")
    best = smallest_p(n_a, n_b, test)
    return bool(math.isfinite(best) and best < alpha)


def exact_p(a: Iterable[float], b: Iterable[float], test: str = "permutation") -> tuple[float, str]:
    """(two-sided p, name of the test) for the difference in means of ``a`` and ``b`` by an exact test.

    "permutation": scipy's permutation test over every split of the pooled values into arms of the
    original sizes (a Monte Carlo test with ``MONTE_CARLO_RESAMPLES`` resamples and a fixed seed when there
    are more than ``MAX_EXACT_SPLITS`` splits); an arm with a single value, which scipy's permutation
    test refuses, gets the exact Mann-Whitney test instead (with one value the two agree on ranks).
    "mann-whitney": scipy's exact Mann-Whitney U test.
    Assumes exchangeability under the null (the seeds of both arms are draws from one distribution).
    The p is never below ``smallest_p``: identical constant arms give 1. NaN with an empty arm."""
    x, _ = _clean(a)
    y, _ = _clean(b)
    if len(x) < 1 or len(y) < 1:
        return math.nan, "none (an arm has no values)"
    if test == "mann-whitney" or min(len(x), len(y)) < 2:
        if np.all(x == x[0]) and np.all(y == x[0]):
            return 1.0, "mann-whitney (exact)"
        return float(stats.mannwhitneyu(x, y, alternative="two-sided", method="exact").pvalue), "mann-whitney (exact)"
    if test != "permutation":
        raise StatisticsError(f"unknown exact test {test!r}; known: permutation, mann-whitney")
    splits = math.comb(len(x) + len(y), len(x))
    if splits <= MAX_EXACT_SPLITS:
        res = stats.permutation_test((x, y), _mean_difference, permutation_type="independent", vectorized=True,
                                     n_resamples=np.inf, alternative="two-sided")
        return float(res.pvalue), f"permutation (exact, {splits} splits)"
    res = stats.permutation_test((x, y), _mean_difference, permutation_type="independent", vectorized=True,
                                 n_resamples=MONTE_CARLO_RESAMPLES, alternative="two-sided",
                                 rng=np.random.default_rng(0))
    return float(res.pvalue), f"permutation (Monte Carlo, {MONTE_CARLO_RESAMPLES} resamples)"


# ---- power ----------------------------------------------------------------------------------------------


def power(effect: float, sd: float, n_a: int, n_b: int | None = None, alpha: float = ALPHA,
          method: str = "nct") -> float:
    """Power of a two-sided two-sample t-test at level ``alpha`` to detect a true difference ``effect``
    between arms of ``n_a`` and ``n_b`` (default ``n_a``) values with common SD ``sd``.

    "nct": exact for the pooled-variance t-test with normal data: P(|T'| > t_crit) for T' noncentral t with
    df = n_a + n_b - 2 and noncentrality effect / (sd * sqrt(1/n_a + 1/n_b)); a good approximation to
    Welch's test when the SDs are similar. "normal": the large-sample approximation (optimistic at few seeds)."""
    n_b = n_a if n_b is None else n_b
    _check_level(alpha, "alpha")
    if n_a < 1 or n_b < 1 or not sd > 0:
        return math.nan
    nc = abs(effect) / (sd * math.sqrt(1 / n_a + 1 / n_b))
    if method == "normal":
        z = stats.norm.ppf(1 - alpha / 2)
        return float(stats.norm.sf(z - nc) + stats.norm.cdf(-z - nc))
    if method != "nct":
        raise StatisticsError(f"unknown power method {method!r}; known: nct, normal")
    df = n_a + n_b - 2
    if df < 1:
        return math.nan
    return _power_nct(nc, df, float(stats.t.ppf(1 - alpha / 2, df)))


def _power_nct(nc: float, df: int, t: float) -> float:
    """P(|T'| > t) for T' noncentral t (df, nc): P(T' > t) + P(T' < -t), the lower tail written as the upper
    tail of -T' (scipy's nct.cdf returns NaN there for large nc)."""
    return float(min(1.0, stats.nct.sf(t, df, nc) + stats.nct.sf(t, df, -nc)))


def minimum_detectable_effect(sd: float, n_a: int, n_b: int | None = None, alpha: float = ALPHA,
                              target: float = POWER, method: str = "nct") -> float:
    """The smallest true difference a two-sided t-test at ``alpha`` detects with power ``target`` between
    arms of ``n_a`` and ``n_b`` (default ``n_a``) values with common SD ``sd`` (see ``power``).

    On the scale of ``sd``: give the SD of log values and the result is a log ratio (``exp`` it, or use
    ``minimum_detectable_ratio``). "nct" solves for the noncentrality numerically (brentq); "normal" is
    (z_{1-alpha/2} + z_target) * sd * sqrt(1/n_a + 1/n_b). NaN when it cannot be computed (sd not
    finite, fewer than 3 values in all); 0 when sd is 0. The noncentrality depends only on df, alpha and
    the target, and is cached."""
    n_b = n_a if n_b is None else n_b
    _check_level(alpha, "alpha")
    _check_level(target, "target power")
    if n_a < 1 or n_b < 1 or not math.isfinite(sd) or sd < 0:
        return math.nan
    se = sd * math.sqrt(1 / n_a + 1 / n_b)
    if method == "normal":
        return float((stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(target)) * se)
    if method != "nct":
        raise StatisticsError(f"unknown power method {method!r}; known: nct, normal")
    if n_a + n_b - 2 < 1:
        return math.nan
    return _noncentrality_needed(n_a + n_b - 2, alpha, target) * se


@lru_cache(maxsize=256)
def _noncentrality_needed(df: int, alpha: float, target: float) -> float:
    """The noncentrality at which a two-sided t-test with ``df`` degrees of freedom at ``alpha`` has power
    ``target`` (brentq on the noncentral t; depends on nothing else, hence cached)."""
    t = float(stats.t.ppf(1 - alpha / 2, df))

    def shortfall(nc: float) -> float:
        return _power_nct(nc, df, t) - target

    if shortfall(0.0) >= 0:          # a target power at or below alpha: no effect needed
        return 0.0
    # Power rises with the noncentrality; the normal approximation's nc is a lower bound for the t-test's.
    low = max(0.0, float(stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(target)))
    high = max(1.0, 1.5 * low)
    while shortfall(high) < 0:
        low, high = high, high * 2
    return float(optimize.brentq(shortfall, low, high, xtol=1e-10))


def minimum_detectable_ratio(log_sd: float, n_a: int, n_b: int | None = None, alpha: float = ALPHA,
                             target: float = POWER, method: str = "nct") -> float:
    """``minimum_detectable_effect`` for a ratio-scale metric, as a ratio > 1: with the SD of the logs
    ``log_sd``, the smallest change (x or /) that the seeds detect with power ``target``."""
    return math.exp(minimum_detectable_effect(log_sd, n_a, n_b, alpha, target, method))


def seeds_needed(effect: float, sd: float, alpha: float = ALPHA, target: float = POWER, method: str = "nct",
                 max_n: int = 1000) -> int | None:
    """The smallest number of seeds per arm (equal arms) at which a two-sided t-test at ``alpha`` detects
    a true difference ``effect`` with power ``target`` (see ``power``), given the common SD ``sd`` (e.g.
    ``pooled_sd`` of a pilot). Never fewer than the smallest n at which the exact test, used below
    ``EXACT_BELOW`` seeds, could reach ``alpha`` at all (4 at alpha 0.05). None when more than ``max_n``
    would be needed or the effect is 0."""
    _check_level(alpha, "alpha")
    _check_level(target, "target power")
    if not (math.isfinite(effect) and math.isfinite(sd)) or sd < 0:
        raise StatisticsError(f"effect and sd must be finite, sd >= 0; got effect={effect!r}, sd={sd!r}")
    if effect == 0:
        return None
    n = 2
    while n <= max_n and not can_reach_alpha(n, n, alpha, "permutation"):
        n += 1
    while n <= max_n:
        if sd == 0 or power(effect, sd, n, n, alpha, method) >= target:
            return n
        n += 1
    return None


def seeds_needed_for_ratio(log_sd: float, ratio: float = DEFAULT_RATIO, alpha: float = ALPHA,
                           target: float = POWER, method: str = "nct", max_n: int = 1000) -> int | None:
    """``seeds_needed`` for a ratio-scale metric: seeds per arm to detect a change by ``ratio`` (1.2: 20%
    higher, or equally 1/1.2) given the SD of the logs ``log_sd``."""
    if not ratio > 0:
        raise StatisticsError(f"ratio must be positive, got {ratio!r}")
    return seeds_needed(abs(math.log(ratio)), log_sd, alpha, target, method, max_n)


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
    The MDE: ``minimum_detectable_effect`` at ``alpha`` and power 0.8 with the arms' pooled SD and sizes.
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
    mde = minimum_detectable_effect(sd, len(xa), len(xb), alpha) if len(xa) and len(xb) else math.nan
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


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> list[float]:
    """p-values adjusted for testing them together, in the order given.

    "holm" (default): Holm's step-down method, controlling the family-wise error rate (the chance of any
    false "significant") under any dependence. "bh": Benjamini-Hochberg (scipy's
    ``false_discovery_control``), controlling the expected share of false discoveries; assumes
    independent or positively dependent tests. "none": unchanged. NaN values (claims without a test) are
    passed through and do not count towards the number of tests."""
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
    if method == "bh":
        out[ok] = stats.false_discovery_control(q, method="bh")
    else:
        m = len(q)
        order = np.argsort(q, kind="stable")
        stepped = np.maximum.accumulate((m - np.arange(m)) * q[order])
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(stepped, 1.0)
        out[ok] = adjusted
    return [float(v) for v in out]


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


def _detectable(c: Comparison) -> str:
    if c.test.startswith("fisher"):
        return (f"detectable: at least {c.mde:.0%} of variant runs against none of the baseline's"
                if math.isfinite(c.mde) else "no count of events is detectable at these n")
    if not math.isfinite(c.mde):
        return "no detectable effect could be computed"
    if c.scale == LOG_RATIO:
        return f"detectable at 80% power: >= {c.mde_ratio:.2f}x"
    return f"detectable at 80% power: >= {c.mde:.3g}"


def _observed(estimate: float, higher_is_better: bool | None) -> str:
    if estimate == 0:
        return "same"
    if higher_is_better is None:
        return "higher" if estimate > 0 else "lower"
    return "better" if (estimate > 0) == higher_is_better else "worse"


def judge(expected: str, higher_is_better: bool | None, comparison: Comparison, *, p_adjusted: float | None = None,
          equivalence: Equivalence | None = None, p_equivalence_adjusted: float | None = None,
          alpha: float = ALPHA) -> Verdict:
    """The verdict on one claim: the variant's metric is expected "worse", "better" or "same" as the
    baseline's ("higher" / "lower" for a metric with no better direction).

    ``p_adjusted`` is the comparison's p after the report's multiplicity correction (default: the raw p).
    "worse"/"better": supported when the adjusted p < ``alpha`` and the effect goes the predicted way;
    contradicted when it is significant the other way; otherwise underpowered when the test could not
    reach ``alpha`` at these n even with perfect separation (``comparison.min_p >= alpha``), else
    inconclusive, with the smallest detectable effect in the reason.
    "same": needs ``equivalence`` (TOST; its p adjusted by ``p_equivalence_adjusted`` if given): supported
    when the TOST p < ``alpha``; contradicted when the difference is significant; otherwise underpowered
    when the detectable effect is larger than the equivalence margin (the seeds could not tell a change of
    the margin's size from none), else inconclusive."""
    if expected not in EXPECTATIONS:
        raise StatisticsError(f"unknown expectation {expected!r}; allowed: {', '.join(EXPECTATIONS)}")
    _check_level(alpha, "alpha")
    c = comparison
    n = f"n={c.n_a} vs {c.n_b}"
    if c.n_a < 1 or c.n_b < 1:
        return Verdict("inconclusive", f"no values to compare ({n})")
    p = c.p if p_adjusted is None else p_adjusted
    effect = format_effect(c)
    sig = math.isfinite(p) and p < alpha
    ptxt = f"p={p:.3g}{' adjusted' if p_adjusted is not None else ''}, {c.test}" if math.isfinite(p) else "no p-value"
    observed = _observed(c.estimate, higher_is_better) if math.isfinite(c.estimate) else ""

    if expected == "same":
        if equivalence is None:
            return Verdict("inconclusive", f"no equivalence test for a 'same' claim ({effect}, {ptxt}, {n})")
        pe = equivalence.p if p_equivalence_adjusted is None else p_equivalence_adjusted
        margin = (f"[{math.exp(-equivalence.margin):.3f}, {math.exp(equivalence.margin):.3f}]x"
                  if equivalence.scale == LOG_RATIO else f"+-{equivalence.margin:.3g}")
        if math.isfinite(pe) and pe < alpha:
            return Verdict("supported", f"equivalent within {margin} (TOST p={pe:.3g}; {effect}, {n})")
        if sig:
            return Verdict("contradicted", f"differs significantly: {observed} ({effect}, {ptxt}, {n})")
        tost = f"TOST p={pe:.3g}" if math.isfinite(pe) else "no TOST p"
        wide = (c.mde > equivalence.margin) if math.isfinite(c.mde) else not math.isfinite(pe)
        if wide:
            return Verdict("underpowered", f"cannot show sameness at these n: {_detectable(c)}, wider than the margin "
                                           f"{margin} ({effect}, {tost}, {n})")
        blind = (f"; {c.test} cannot reach p < {alpha:g} at these n, so no difference can be shown"
                 if not (math.isfinite(c.min_p) and c.min_p < alpha) else "")
        return Verdict("inconclusive", f"neither equivalent nor different ({effect}, {tost}, {ptxt}; "
                                       f"{_detectable(c)}, {n}){blind}")

    if expected in ("worse", "better") and higher_is_better is None:
        return Verdict("inconclusive", f"the metric has no better direction; expect 'higher' or 'lower' ({effect})")
    if expected in ("higher", "lower"):
        observed = _observed(c.estimate, None) if math.isfinite(c.estimate) else ""
    if sig and observed == expected:
        return Verdict("supported", f"significantly {observed} ({effect}, {ptxt}, {n})")
    if sig and observed and observed != "same":
        return Verdict("contradicted", f"significantly {observed}, not {expected} ({effect}, {ptxt}, {n})")
    if not (math.isfinite(c.min_p) and c.min_p < alpha):
        return Verdict("underpowered", f"{c.test} cannot reach p < {alpha:g} at {n} even with perfect separation "
                                       f"(smallest p {c.min_p:.3g}); {effect}, {_detectable(c)}")
    return Verdict("inconclusive", f"not significant ({effect}, {ptxt}; {_detectable(c)}, {n})")


def combine(verdicts: Iterable[str | Verdict]) -> Verdict:
    """A rule's verdict from the verdicts on its primary claims.

    Untested claims are set aside. The rule is *untested* when no claim was tested; *supported* when at
    least one claim is supported and none is contradicted; *contradicted* when at least one is
    contradicted and none is supported; *inconclusive* when claims are both supported and contradicted
    (the evidence disagrees) or when none is either and at least one claim was inconclusive;
    *underpowered* when every tested claim was underpowered (the seeds could not have decided any of them)."""
    names = [v.verdict if isinstance(v, Verdict) else v for v in verdicts]
    unknown = sorted(set(names) - set(VERDICTS))
    if unknown:
        raise StatisticsError(f"unknown verdicts {unknown}; allowed: {', '.join(VERDICTS)}")
    c = Counter(names)
    tested = len(names) - c["untested"]
    counts = (f"{c['supported']} supported, {c['contradicted']} contradicted, {c['inconclusive']} inconclusive, "
              f"{c['underpowered']} underpowered of {tested} tested claims"
              + (f"; {c['untested']} untested" if c["untested"] else ""))
    if tested == 0:
        return Verdict("untested", f"no claim was tested ({len(names)} untested)")
    if c["supported"] and c["contradicted"]:
        return Verdict("inconclusive", f"claims disagree: {counts}")
    if c["supported"]:
        return Verdict("supported", counts)
    if c["contradicted"]:
        return Verdict("contradicted", counts)
    if c["underpowered"] == tested:
        return Verdict("underpowered", counts)
    return Verdict("inconclusive", counts)
