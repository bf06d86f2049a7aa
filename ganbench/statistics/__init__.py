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

from ganbench.statistics.core import (ALPHA, DEFAULT_RATIO, DIFFERENCE, EQUIVALENCE_MARGIN, EQUIVALENCE_RATIO,
                                      EXACT_BELOW, EXPECTATIONS, LEVEL, LOG_RATIO, MAX_EXACT_SPLITS,
                                      MONTE_CARLO_RESAMPLES, MULTIPLICITY, POWER, RELATIVE_MARGIN, VERDICTS,
                                      Comparison, Equivalence, StatisticsError, Verdict, can_reach_alpha, exact_p,
                                      pooled_sd, smallest_p)
from ganbench.statistics.power import (minimum_detectable_effect, minimum_detectable_ratio, power,
                                       seeds_needed, seeds_needed_for_ratio)
from ganbench.statistics.compare import (adjust_pvalues, adjusted_floors, compare_binary, compare_continuous,
                                         equivalence, fisher_events_needed, format_effect, format_ratio)
from ganbench.statistics.judge import combine, judge, strict_mde

__all__ = ["ALPHA", "DEFAULT_RATIO", "DIFFERENCE", "EQUIVALENCE_MARGIN", "EQUIVALENCE_RATIO", "EXACT_BELOW", "EXPECTATIONS",
           "LEVEL", "LOG_RATIO", "MAX_EXACT_SPLITS", "MONTE_CARLO_RESAMPLES", "MULTIPLICITY", "POWER", "RELATIVE_MARGIN",
           "VERDICTS", "Comparison", "Equivalence", "StatisticsError", "Verdict", "can_reach_alpha", "exact_p",
           "pooled_sd", "smallest_p", "minimum_detectable_effect", "minimum_detectable_ratio", "power", "seeds_needed",
           "seeds_needed_for_ratio", "adjust_pvalues", "adjusted_floors", "compare_binary", "compare_continuous",
           "equivalence", "fisher_events_needed", "format_effect", "format_ratio", "combine", "judge", "strict_mde"]
