"""Verdicts on claims and their combination into a rule's verdict (see ``ganbench.statistics``)."""

from __future__ import annotations

import math
from collections import Counter
from typing import Iterable


from ganbench.statistics.core import (ALPHA, Comparison, EXPECTATIONS, Equivalence, LOG_RATIO, StatisticsError, VERDICTS, Verdict, _check_level)
from ganbench.statistics.compare import fisher_events_needed, format_effect
from ganbench.statistics.power import minimum_detectable_effect



def strict_mde(c: Comparison, alpha: float, family: int) -> float:
    """The comparison's MDE at the correction's strictest level, ``alpha / family`` (Holm's first step,
    Bonferroni's every step), on the scale of ``c.mde``: what these seeds detect at 80% power whatever the
    other comparisons of the family show. ``c.mde`` itself is the MDE of one test at ``alpha``."""
    if family <= 1:
        return c.mde
    if c.test.startswith("fisher"):
        needed = fisher_events_needed(c.n_a, c.n_b, alpha / family)
        return needed / c.n_a if needed else math.nan
    if not (math.isfinite(c.sd_pooled) and c.sd_pooled > 0):
        return math.nan
    return minimum_detectable_effect(c.sd_pooled, c.n_a, c.n_b, alpha / family)


def _mde_text(c: Comparison, mde: float) -> str:
    if c.test.startswith("fisher"):
        return f"{mde:.0%} of variant runs against none of the baseline's"
    return f"{math.exp(mde):.2f}x" if c.scale == LOG_RATIO else f"{mde:.3g}"


def _detectable_prefix(c: Comparison) -> str:
    # Fisher's count is the fewest events that can be significant at all, not an 80%-power effect
    return "detectable: at least" if c.test.startswith("fisher") else "detectable at 80% power: >="


def _detectable(c: Comparison, alpha: float = ALPHA, family: int = 1) -> str:
    if c.sd_pooled == 0:
        return "no detectable effect from these seeds: neither arm varied (every run the same value)"
    if not math.isfinite(c.mde):
        return ("no count of events is detectable at these n" if c.test.startswith("fisher")
                else "no detectable effect could be computed")
    text = f"{_detectable_prefix(c)} {_mde_text(c, c.mde)} in one test"
    if family > 1:
        strict = strict_mde(c, alpha, family)
        text += (f", {_mde_text(c, strict)} at the correction's strictest level (alpha/{family})"
                 if math.isfinite(strict) else f", none at the correction's strictest level (alpha/{family})")
    return text


def _observed(estimate: float, higher_is_better: bool | None) -> str:
    if estimate == 0:
        return "same"
    if higher_is_better is None:
        return "higher" if estimate > 0 else "lower"
    return "better" if (estimate > 0) == higher_is_better else "worse"


def judge(expected: str, higher_is_better: bool | None, comparison: Comparison, *, p_adjusted: float | None = None,
          equivalence: Equivalence | None = None, p_equivalence_adjusted: float | None = None,
          p_floor: float | None = None, family: int = 1, alpha: float = ALPHA) -> Verdict:
    """The verdict on one claim: the variant's metric is expected "worse", "better" or "same" as the
    baseline's ("higher" / "lower" for a metric with no better direction).

    ``p_adjusted`` is the comparison's p after the report's multiplicity correction (default: the raw p).
    "worse"/"better": supported when the adjusted p < ``alpha`` and the effect goes the predicted way;
    contradicted when it is significant the other way; otherwise underpowered when the test could not
    reach ``alpha`` at these n even with perfect separation, else inconclusive, with the smallest
    detectable effect in the reason. ``p_floor``: the smallest adjusted p the comparison could get at
    these n (the correction applied to every comparison's smallest p, ``comparison.min_p``: a lower bound
    on its adjusted p whatever the data, since Holm's and BH's adjusted p-values never fall when a p
    rises); default ``comparison.min_p``. ``family``: how many comparisons were corrected together; above
    1 the reason gives the detectable effect at ``alpha / family`` too (``strict_mde``).
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
    floor = c.min_p if p_floor is None else p_floor
    # the correction is the reason only where the test alone could have reached alpha
    by_correction = family > 1 and math.isfinite(c.min_p) and c.min_p < alpha
    corrected = f" after the correction across {family} comparisons" if by_correction else ""

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
        wide = (c.mde > equivalence.margin) if math.isfinite(c.mde) else (c.sd_pooled != 0 and not math.isfinite(pe))
        if wide:
            return Verdict("underpowered", f"cannot show sameness at these n: {_detectable(c)}, wider than the margin "
                                           f"{margin} ({effect}, {tost}, {n})")
        blind = (f"; {c.test} cannot reach p < {alpha:g}{corrected} at these n, so no difference can be shown"
                 if not (math.isfinite(floor) and floor < alpha) else "")
        return Verdict("inconclusive", f"neither equivalent nor different ({effect}, {tost}, {ptxt}; "
                                       f"{_detectable(c, alpha, family)}, {n}){blind}")

    if expected in ("worse", "better") and higher_is_better is None:
        return Verdict("inconclusive", f"the metric has no better direction; expect 'higher' or 'lower' ({effect})")
    if expected in ("higher", "lower"):
        observed = _observed(c.estimate, None) if math.isfinite(c.estimate) else ""
    if sig and observed == expected:
        return Verdict("supported", f"significantly {observed} ({effect}, {ptxt}, {n})")
    if sig and observed and observed != "same":
        return Verdict("contradicted", f"significantly {observed}, not {expected} ({effect}, {ptxt}, {n})")
    if not (math.isfinite(floor) and floor < alpha):
        smallest = f"smallest p {c.min_p:.3g}" + (f", adjusted {floor:.3g}" if by_correction else "")
        return Verdict("underpowered", f"{c.test} cannot reach p < {alpha:g}{corrected} at {n} even with perfect "
                                       f"separation ({smallest}); {effect}, {_detectable(c, alpha, family)}")
    return Verdict("inconclusive", f"not significant ({effect}, {ptxt}; {_detectable(c, alpha, family)}, {n})")


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
