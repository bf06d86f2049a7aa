"""ganbench.statistics: exact small-sample p-values that never reach 0, multiplicity corrections against
hand-computed values, TOST, Fisher at few seeds, detectable effects against scipy's noncentral t, interval
coverage by simulation, and the verdict rules."""

import json
import math
from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from ganbench import statistics as S
from ganbench.errors import GanbenchError

# ---- exact small-sample tests --------------------------------------------------------------------------


@pytest.mark.parametrize("log_scale", [False, True])
def test_three_vs_three_perfectly_separated_gives_exactly_one_tenth(log_scale):
    c = S.compare_continuous([30.0, 31.0, 32.0], [20.0, 21.0, 22.0], log_scale=log_scale)
    assert c.p == pytest.approx(0.1)
    assert c.min_p == pytest.approx(0.1)
    assert c.test.startswith("permutation (exact")
    assert c.scale == (S.LOG_RATIO if log_scale else S.DIFFERENCE)


def test_constant_identical_arms_give_one_and_constant_different_arms_the_smallest_p():
    assert S.compare_continuous([5, 5, 5], [5, 5, 5]).p == 1.0
    assert S.compare_continuous([5] * 6, [5] * 6).p == 1.0                # Welch is undefined: exact test, not 0
    assert S.compare_continuous([3, 3, 3], [1, 1, 1]).p == pytest.approx(0.1)
    c = S.compare_continuous([3] * 6, [1] * 6)
    assert c.p == pytest.approx(2 / math.comb(12, 6)) and c.p > 0
    assert c.test.startswith("permutation")
    assert math.isnan(c.ci_low) and "no spread" in c.note                # no zero-width interval


values = st.lists(st.sampled_from([0.5, 1.0, 1.0, 2.0, 3.5]) | st.floats(0.1, 100), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(a=values, b=values, log_scale=st.booleans())
def test_exact_p_never_below_the_smallest_achievable(a, b, log_scale):
    c = S.compare_continuous(a, b, log_scale=log_scale)
    floor = min(1.0, 2 / math.comb(len(a) + len(b), len(a)))
    assert S.smallest_p(len(a), len(b)) == pytest.approx(floor)
    assert floor - 1e-12 <= c.p <= 1.0
    if len(a) == len(b) == 3:
        assert c.p >= 0.1 - 1e-12


def test_six_or_more_seeds_use_welch():
    rng = np.random.default_rng(3)
    a, b = rng.normal(1.0, 0.3, 7), rng.normal(0.8, 0.3, 6)
    c = S.compare_continuous(a, b)
    assert c.test == "welch" and c.min_p == 0.0
    assert c.p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert c.estimate == pytest.approx(a.mean() - b.mean())


def test_too_many_splits_fall_back_to_a_seeded_monte_carlo_test(monkeypatch):
    monkeypatch.setattr(S.core, "MAX_EXACT_SPLITS", 10)
    c = S.compare_continuous([5.0, 5.1, 5.2, 5.3, 5.4], [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6])
    assert c.test.startswith("permutation (Monte Carlo")
    assert c.p > 0 and c.p == S.compare_continuous([5.0, 5.1, 5.2, 5.3, 5.4], [1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6]).p


def test_an_arm_of_one_value_gets_exact_mann_whitney():
    c = S.compare_continuous([9.0], [1.0, 2.0, 3.0, 4.0, 5.0])
    assert c.test == "mann-whitney (exact)"
    assert c.p == pytest.approx(2 / 6)


# ---- effects on the log scale -------------------------------------------------------------------------


def test_log_ratio_is_the_ratio_of_geometric_means_with_welchs_interval_on_logs():
    a, b = np.array([40.0, 44.0, 51.0, 47.0]), np.array([30.0, 33.0, 36.0])
    c = S.compare_continuous(a, b, log_scale=True)
    assert c.ratio == pytest.approx(stats.gmean(a) / stats.gmean(b))
    ci = stats.ttest_ind(np.log(a), np.log(b), equal_var=False).confidence_interval(0.95)
    assert (c.ci_low, c.ci_high) == pytest.approx((ci.low, ci.high))
    assert (c.ratio_low, c.ratio_high) == pytest.approx((math.exp(ci.low), math.exp(ci.high)))
    assert c.center_a == pytest.approx(stats.gmean(a))
    assert S.format_effect(c) == f"{c.ratio:.2f}x [{c.ratio_low:.2f}, {c.ratio_high:.2f}]"


def test_format_ratio():
    assert S.format_ratio(math.log(1.31), math.log(1.12), math.log(1.54)) == "1.31x [1.12, 1.54]"
    assert S.format_ratio(math.log(0.8), math.nan, math.nan) == "0.80x [no interval]"


def test_non_positive_values_fall_back_to_a_difference_and_say_so():
    c = S.compare_continuous([0.002, -0.001, 0.003], [0.01, 0.012, 0.011], log_scale=True)
    assert c.scale == S.DIFFERENCE and math.isnan(c.ratio)
    assert "<= 0" in c.note and "difference" in c.note
    assert c.estimate == pytest.approx(np.mean([0.002, -0.001, 0.003]) - 0.011)


def test_non_finite_values_are_dropped_and_counted():
    c = S.compare_continuous([1.0, math.nan, 2.0, math.inf], [1.0, 2.0, 3.0])
    assert (c.n_a, c.n_b) == (2, 3)
    assert "2 of the variant's" in c.note


def test_log_ratio_interval_covers_the_true_ratio_95_percent_of_the_time():
    rng = np.random.default_rng(12345)
    true = 1.3
    hits = 0
    sims = 2000
    for _ in range(sims):
        a = np.exp(rng.normal(math.log(50 * true), 0.12, 6))
        b = np.exp(rng.normal(math.log(50), 0.12, 8))
        c = S.compare_continuous(a, b, log_scale=True)
        hits += c.ratio_low <= true <= c.ratio_high
    assert 0.93 <= hits / sims <= 0.97


# ---- multiplicity ---------------------------------------------------------------------------------------


def test_holm_against_hand_computed_values():
    # sorted 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> stays at 0.06
    assert S.adjust_pvalues([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert S.adjust_pvalues([0.5, 0.6]) == pytest.approx([1.0, 1.0])          # capped at 1


def test_bh_matches_scipy_and_none_changes_nothing():
    p = [0.01, 0.04, 0.03, 0.005, 0.2, 0.7]
    assert S.adjust_pvalues(p, "bh") == pytest.approx(stats.false_discovery_control(p, method="bh"))
    assert S.adjust_pvalues(p, "none") == p


@pytest.mark.parametrize("method", S.MULTIPLICITY)
def test_nan_passes_through_and_does_not_count_as_a_test(method):
    out = S.adjust_pvalues([0.01, math.nan, 0.04], method)
    assert math.isnan(out[1])
    assert [out[0], out[2]] == pytest.approx(S.adjust_pvalues([0.01, 0.04], method))


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_a_part_of_a_larger_family_is_corrected_as_the_whole_family_would_be(method):
    """An interim report of a study whose design fixed 5 comparisons, 2 of them run: the 3 missing ones count
    as never significant (p = 1), so the 2 are adjusted as strictly as in the full family, not as a family
    of 2 (Holm by hand: 0.01 x 5 = 0.05, 0.04 x 4 = 0.16)."""
    part = S.adjust_pvalues([0.04, math.nan, 0.01], method, family=5)
    assert math.isnan(part[1])
    assert [part[0], part[2]] == pytest.approx(S.adjust_pvalues([0.04, 0.01, 1.0, 1.0, 1.0], method)[:2])
    alone = S.adjust_pvalues([0.04, 0.01], method)
    assert all(a > b for a, b in zip([part[0], part[2]], alone))                 # each stricter than the part alone
    if method == "holm":
        assert [part[0], part[2]] == pytest.approx([0.16, 0.05])
    assert S.adjust_pvalues([0.04, 0.01], method, family=2) == S.adjust_pvalues([0.04, 0.01], method)
    with pytest.raises(GanbenchError, match="family of 1 comparisons cannot hold the 2 given"):
        S.adjust_pvalues([0.04, 0.01], method, family=1)


def test_unknown_correction_names_the_allowed_ones():
    with pytest.raises(ValueError, match="holm, bh, none"):
        S.adjust_pvalues([0.1], "bonferonni")
    with pytest.raises(GanbenchError):
        S.adjust_pvalues([0.1], "fdr")


# ---- equivalence ------------------------------------------------------------------------------------------


def _lognormal_arms(ratio, sd, n, seed):
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(math.log(40 * ratio), sd, n)), np.exp(rng.normal(math.log(40), sd, n))


def test_tost_supports_sameness_with_a_small_ratio_and_small_spread():
    a, b = _lognormal_arms(1.02, 0.03, 8, seed=1)
    e = S.equivalence(a, b)
    assert e.margin == pytest.approx(math.log(1.15)) and e.level == pytest.approx(0.90)
    assert e.equivalent and e.p < 0.05
    assert -e.margin < e.ci_low < e.ci_high < e.margin
    # the TOST p is the larger of the two one-sided Welch tests on the logs
    la, lb = np.log(a), np.log(b)
    lower = stats.ttest_ind(la + e.margin, lb, equal_var=False, alternative="greater").pvalue
    upper = stats.ttest_ind(la - e.margin, lb, equal_var=False, alternative="less").pvalue
    assert e.p == pytest.approx(max(lower, upper))
    v = S.judge("same", False, S.compare_continuous(a, b, log_scale=True), equivalence=e)
    assert v.verdict == "supported"


def test_tost_does_not_call_noisy_arms_equivalent_even_when_the_difference_is_not_significant():
    a, b = _lognormal_arms(1.02, 0.4, 8, seed=2)
    c, e = S.compare_continuous(a, b, log_scale=True), S.equivalence(a, b)
    assert c.p >= 0.05                      # non-significance ...
    assert not e.equivalent and e.p >= 0.05  # ... is not equivalence
    assert not (-e.margin < e.ci_low and e.ci_high < e.margin)
    assert S.judge("same", False, c, equivalence=e).verdict in ("inconclusive", "underpowered")


def test_same_is_contradicted_by_a_clear_difference():
    a, b = _lognormal_arms(1.6, 0.05, 8, seed=3)
    v = S.judge("same", False, S.compare_continuous(a, b, log_scale=True), equivalence=S.equivalence(a, b))
    assert v.verdict == "contradicted"


def test_equivalence_on_the_difference_scale_uses_a_relative_margin():
    e = S.equivalence([10.1, 9.9, 10.0, 10.2], [10.0, 10.1, 9.8, 10.0], log_scale=False)
    assert e.scale == S.DIFFERENCE and e.margin == pytest.approx(0.15 * 9.975)


# ---- binary outcomes ----------------------------------------------------------------------------------------


def test_fisher_three_of_three_against_none_cannot_reach_significance():
    c = S.compare_binary([1, 1, 1], [0, 0, 0])
    assert c.p == pytest.approx(0.1) and c.test == "fisher (exact)"
    assert not S.can_reach_alpha(3, 3)
    assert S.fisher_events_needed(3, 3) is None
    v = S.judge("worse", False, c)
    assert v.verdict == "underpowered" and "0.1" in v.reason


def test_fisher_five_of_eight_against_none_is_supported():
    c = S.compare_binary([1] * 5 + [0] * 3, [0] * 8)
    assert c.p == pytest.approx(0.0256, abs=5e-4)
    assert S.can_reach_alpha(8, 8) and S.fisher_events_needed(8, 8) == 5
    assert c.estimate == pytest.approx(5 / 8) and c.ci_low > 0
    assert S.judge("worse", False, c).verdict == "supported"
    assert S.judge("better", False, c).verdict == "contradicted"


# ---- power ------------------------------------------------------------------------------------------------


def _nct_power(effect, sd, n):
    df, nc = 2 * n - 2, effect / (sd * math.sqrt(2 / n))
    t = stats.t.ppf(0.975, df)
    return stats.nct.sf(t, df, nc) + stats.nct.cdf(-t, df, nc)


def test_mde_at_three_seeds_matches_the_noncentral_t():
    mde = S.minimum_detectable_effect(0.12, 3)
    assert _nct_power(mde, 0.12, 3) == pytest.approx(0.80, abs=1e-6)
    assert _nct_power(0.98 * mde, 0.12, 3) < 0.80
    ratio = S.minimum_detectable_ratio(0.12, 3)
    assert ratio == pytest.approx(math.exp(mde)) and 1.35 < ratio < 1.6
    assert S.minimum_detectable_ratio(0.12, 3, method="normal") < S.minimum_detectable_ratio(0.12, 3)
    assert S.minimum_detectable_ratio(0.12, 8) < S.minimum_detectable_ratio(0.12, 3)


def test_seeds_needed_falls_as_the_ratio_grows_and_meets_the_target_exactly():
    ns = [S.seeds_needed_for_ratio(0.12, r) for r in (1.05, 1.1, 1.2, 1.35, 1.5, 2.0)]
    assert all(x >= y for x, y in zip(ns, ns[1:])) and ns[0] > ns[1] > ns[2]
    n = S.seeds_needed_for_ratio(0.12, 1.2)
    assert _nct_power(math.log(1.2), 0.12, n) >= 0.8 > _nct_power(math.log(1.2), 0.12, n - 1)
    assert ns[-1] == 4          # never below the seeds at which the exact test can reach 0.05 at all
    assert S.seeds_needed(0.0, 0.1) is None


def test_pooled_sd():
    a, b = [1.0, 2.0, 4.0], [3.0, 3.5, 5.0, 6.0]
    expected = math.sqrt((2 * np.var(a, ddof=1) + 3 * np.var(b, ddof=1)) / 5)
    assert S.pooled_sd(a, b, [7.0]) == pytest.approx(expected)
    assert math.isnan(S.pooled_sd([1.0], []))


# ---- verdicts ----------------------------------------------------------------------------------------------


def test_judge_directions_and_the_adjusted_p():
    worse = S.compare_continuous([50, 52, 55, 51, 53, 54], [40, 41, 39, 42, 40, 41], log_scale=True)   # FID up
    assert S.judge("worse", False, worse).verdict == "supported"
    assert S.judge("better", False, worse).verdict == "contradicted"
    assert S.judge("higher", None, worse).verdict == "supported"
    v = S.judge("worse", False, worse, p_adjusted=0.2)
    assert v.verdict == "inconclusive" and "detectable at 80% power: >= 1." in v.reason and "x" in v.reason
    assert S.judge("worse", None, worse).verdict == "inconclusive"
    with pytest.raises(ValueError, match="worse, better, same"):
        S.judge("bigger", False, worse)


def test_arms_that_never_vary_get_no_mde_of_zero():
    flat = S.compare_continuous([10, 10, 10, 10, 10], [10, 10, 10, 10, 10])     # modes saturated in both arms
    assert math.isnan(flat.mde)                                             # not 0: no power estimate
    reason = S.judge("worse", True, flat).reason
    assert "neither arm varied" in reason and ">= 0" not in reason
    varied = S.compare_continuous([9, 10, 10, 10, 10], [10, 10, 10, 10, 10])
    assert "detectable at 80% power: >= " in S.judge("worse", True, varied).reason


def test_three_seeds_are_underpowered_for_a_continuous_claim_at_005():
    c = S.compare_continuous([50.0, 52.0, 55.0], [40.0, 41.0, 39.0], log_scale=True)
    v = S.judge("worse", False, c)
    assert v.verdict == "underpowered" and "smallest p 0.1" in v.reason


def test_seeds_needed_at_a_corrected_alpha_stop_at_welchs_threshold():
    # a huge effect needs only the fewest seeds whose test can reach alpha: 4 at 0.05 (exact test); at
    # 0.05/31 no exact test below 6 seeds can, and from 6 seeds on the report uses Welch's t, so 6, not 7
    assert S.seeds_needed(10.0, 0.1, alpha=0.05) == 4
    assert S.seeds_needed(10.0, 0.1, alpha=0.05 / 31) == S.EXACT_BELOW == 6


def test_five_seeds_cannot_pass_holm_over_many_comparisons_and_say_so():
    # 5 vs 5, perfectly separated: the exact test's smallest p is 2/C(10, 5) = 0.0079, below 0.05 alone
    c = S.compare_continuous([50.0, 52.0, 55.0, 51.0, 53.0], [40.0, 41.0, 39.0, 42.0, 40.5], log_scale=True)
    assert c.min_p == pytest.approx(2 / 252) and S.judge("worse", False, c).verdict == "supported"
    family = 31
    floor = S.adjust_pvalues([c.min_p] * family, "holm")[0]          # every comparison at its best: 31 x 0.0079
    assert floor == pytest.approx(family * 2 / 252)
    v = S.judge("worse", False, c, p_adjusted=floor, p_floor=floor, family=family)
    assert v.verdict == "underpowered"
    assert "after the correction across 31 comparisons" in v.reason and "adjusted 0.246" in v.reason
    # where the test alone cannot reach alpha (3 vs 3), the reason does not blame the correction
    three = S.compare_continuous([50.0, 52.0, 55.0], [40.0, 41.0, 39.0], log_scale=True)
    v = S.judge("worse", False, three, p_adjusted=1.0, p_floor=0.5, family=5)
    assert v.verdict == "underpowered" and "correction" not in v.reason.split(";")[0]
    # with a family whose best case could pass, the same comparison is merely not significant
    v = S.judge("worse", False, c, p_adjusted=0.2, p_floor=0.04, family=5)
    assert v.verdict == "inconclusive"


def test_the_mde_at_the_corrections_strictest_level_is_larger():
    c = S.compare_continuous([50.0, 60.0, 55.0, 45.0, 52.0, 58.0], [50.0, 47.0, 53.0, 49.0, 51.0, 55.0],
                             log_scale=True)
    assert S.strict_mde(c, 0.05, 1) == c.mde
    strict = S.strict_mde(c, 0.05, 20)
    assert strict == pytest.approx(S.minimum_detectable_effect(c.sd_pooled, 6, 6, 0.05 / 20)) and strict > c.mde
    reason = S.judge("worse", False, c, family=20).reason
    assert f">= {math.exp(c.mde):.2f}x in one test" in reason
    assert f", {math.exp(strict):.2f}x at the correction's strictest level (alpha/20)" in reason
    events = S.compare_binary([1, 1, 1, 0, 0, 0, 0, 0], [0] * 8)       # Fisher: 5 of 8 in one test, 8 of 8 at /4
    assert S.strict_mde(events, 0.05, 1) == pytest.approx(5 / 8)
    assert S.strict_mde(events, 0.05, 4) == pytest.approx(S.fisher_events_needed(8, 8, 0.0125) / 8)


@pytest.mark.parametrize("verdicts, expected", [
    ([], "untested"),
    (["untested", "untested"], "untested"),
    (["supported", "inconclusive", "untested"], "supported"),
    (["contradicted", "underpowered"], "contradicted"),
    (["supported", "contradicted"], "inconclusive"),
    (["underpowered", "underpowered", "untested"], "underpowered"),
    (["underpowered", "inconclusive"], "inconclusive"),
])
def test_combine(verdicts, expected):
    assert S.combine(verdicts).verdict == expected


def test_combine_rejects_unknown_verdicts():
    with pytest.raises(ValueError, match="unknown verdicts"):
        S.combine(["supported", "maybe"])


def test_results_are_json_serialisable():
    c = S.compare_continuous([1.0, 2.0, 3.0], [2.0, 3.0, 4.0], log_scale=True)
    e = S.equivalence([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    for result in (c, e, S.judge("worse", False, c), S.compare_binary([1, 0], [0, 0])):
        assert json.loads(json.dumps(asdict(result))).keys() == asdict(result).keys()
