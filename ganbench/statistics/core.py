"""Constants, result types and the exact small-sample tests (see ``ganbench.statistics``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable
from warnings import catch_warnings, simplefilter

import numpy as np
from scipy import stats

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
