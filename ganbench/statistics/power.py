"""Power, the minimum detectable effect and the seeds a study needs (see ``ganbench.statistics``)."""

from __future__ import annotations

import math
from functools import lru_cache

from scipy import optimize, stats

from ganbench.statistics.core import (ALPHA, DEFAULT_RATIO, EXACT_BELOW, POWER, StatisticsError, _check_level,
                                      can_reach_alpha)



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
    ``EXACT_BELOW`` seeds, could reach ``alpha`` at all (4 at alpha 0.05; at a corrected alpha below 2/252,
    ``EXACT_BELOW``, where Welch's test takes over). None when more than ``max_n`` would be needed or the
    effect is 0."""
    _check_level(alpha, "alpha")
    _check_level(target, "target power")
    if not (math.isfinite(effect) and math.isfinite(sd)) or sd < 0:
        raise StatisticsError(f"effect and sd must be finite, sd >= 0; got effect={effect!r}, sd={sd!r}")
    if effect == 0:
        return None
    n = 2
    while n < EXACT_BELOW and not can_reach_alpha(n, n, alpha, "permutation"):    # from EXACT_BELOW: Welch's t
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
