"""Verdicts: each of the paper's claims judged on its one primary endpoint, claim by claim, then rule by rule.

The claims come from the records: each run records the claims its variant takes part in (``ganbench.claims``:
the paper's words or a plugin author's, the variants that test each claim, its primary endpoint, the
predicted direction and the arm compared with), and the report judges the union of them over its runs.
Records from before runs carried their claims, and the package's own claims no record carries (so that an
untested claim still shows as untested), come from the package's claims table; a variant that no claim
names (a plugin's without claims) gets one claim from what its record states (``expects`` and its
``primary`` endpoint, in older records its first entry). A rule's text and claim come from the records too,
else from the package's ``RULES``.

For each claim, protocol and variant that was run, the variant's final values are compared with the
claim's baseline arm by ``ganbench.statistics``: FID-like metrics as a ratio of geometric means with a
95% interval, others as a difference of means; an exact permutation test below 6 seeds per arm, Welch's
t-test from 6, Fisher's exact test for 0/1 outcomes; "same" claims by equivalence (TOST). The p-values of
all primary comparisons of a report are corrected together (Holm by default; the TOST p-values of "same"
claims as their own family), and each comparison gets a verdict: supported, contradicted, inconclusive
(with the smallest effect its seeds could detect) or underpowered (no outcome could have reached alpha
at its seed counts). A claim no arm of the study can test is *untested*, with the reason.

A claim tested by several variants, and a rule, combine their parts with ``statistics.combine``.
Each comparison also says whether its runs converged (FID plateaued: ``metrics.stability.plateau``) and
whether its arms differ by more than ``CONFOUND_RATIO`` in parameters, FLOPs or learning rate (the
comparison is then confounded: the variant changes more than its rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from ganbench import statistics as st
from ganbench.claims import CLAIMS, Claim
from ganbench.metrics import BUILTIN_METRICS
from ganbench.metrics.stability import BREAKDOWN_RATIO
from ganbench.report.load import ReportError
from ganbench.report.stats import BINARY, _better_word, finite_values
from ganbench.variants import CONFOUND_RATIO, CONFOUNDS, RULES, Rule

ALPHA = st.ALPHA
CORRECTIONS = st.MULTIPLICITY
EQUIVALENCE_RATIO = st.EQUIVALENCE_RATIO
VERDICTS = st.VERDICTS
REPRESENTATION = "probe_gain"   # trained minus untrained D's probe accuracy (ganbench.metrics.probe)
# The built-in metrics' ratio-scale values (``MetricSpec.ratio_scale``), compared as log ratios: the default
# for callers that do not pass what their records declared (``load.Loaded.log_scale``)
LOG_SCALE = tuple(v for m in BUILTIN_METRICS for v in m.ratio_scale)


@dataclass(frozen=True)
class Settings:
    alpha: float = ALPHA
    correction: str = "holm"
    margin: float = EQUIVALENCE_RATIO    # "same": the ratio of geometric means within [1/margin, margin]
    family: int | None = None            # the primary comparisons the correction is over, fixed by a study's design
    #                                      before all were run (those not in the report count as never significant);
    #                                      None: the ones the report tests


CLAIM_COLUMNS = ["protocol", "rule", "claim", "text", "variant", "baseline", "metric", "expected", "better", "n_variant",
                 "n_baseline", "center_variant", "center_baseline", "scale", "estimate", "ci_low", "ci_high", "effect",
                 "test", "p_value", "p_adjusted", "p_equivalence", "mde", "mde_corrected", "converged_variant",
                 "converged_baseline", "confounded", "verdict", "reason"]


def resolve_metric(name: str, columns: Iterable[str]) -> list[str]:
    """The recorded metrics a claim names: the metric itself, else every metric named ``name_*``."""
    columns = list(columns)
    if name in columns:
        return [name]
    return [c for c in columns if c.startswith(name + "_")]


def study_claims(runs: pd.DataFrame, recorded: Iterable[Claim] = (), table: Iterable[Claim] = CLAIMS) -> list[Claim]:
    """The claims the records carry (``recorded``: one per id), and the package's ``table`` for ids no record
    carries, in the table's order, then the recorded claims the table lacks (a plugin's) in the order seen;
    then one claim per run variant that no claim names and whose record states an expected effect (its
    ``primary`` endpoint, else its first ``expects`` entry)."""
    recorded = {c.id: c for c in recorded}
    table = list(table)
    claims = [recorded.get(c.id, c) for c in table] + [c for i, c in recorded.items() if i not in {t.id for t in table}]
    named = {v for c in claims for v in c.variants} | {c.baseline for c in claims}
    for variant, g in runs.groupby("variant", sort=False):
        expects = g["expects"].iloc[0] or {}
        if variant in named or not expects:
            continue
        primary = g["primary"].iloc[0] if "primary" in g else ""
        metric = primary if primary in expects else next(iter(expects))
        direction = expects[metric]
        rule = str(g["rule"].iloc[0] or "-")
        claims.append(Claim(f"{rule}.{variant}", rule, g["claim"].iloc[0] or g["description"].iloc[0],
                            variants=(variant,), metric=metric, direction=direction))
    return claims


def _converged(g: pd.DataFrame) -> str:
    if "converged" not in g:
        return "-"
    vals = finite_values(g["converged"])
    return f"{int(vals.sum())}/{len(g)}" if len(vals) else "-"


def confounds(variant: pd.DataFrame, baseline: pd.DataFrame, by_design: Iterable[str] = ()) -> str:
    """The cost quantities whose means differ by more than CONFOUND_RATIO between the arms, e.g. "g_params
    6.4x, d_flops 2x"; empty when none does (or none was recorded). Those in ``by_design`` are what the claim
    under test changes by design (``Claim.changes``: a learning rate, for a claim about the learning rate),
    not confounds."""
    out = []
    for q in CONFOUNDS:
        if q in by_design or q not in variant or q not in baseline:
            continue
        a, b = finite_values(variant[q]), finite_values(baseline[q])
        if len(a) and len(b) and a.mean() > 0 and b.mean() > 0:
            ratio = a.mean() / b.mean()
            if ratio > CONFOUND_RATIO or ratio < 1 / CONFOUND_RATIO:
                out.append(f"{q} {ratio:.3g}x")
    return ", ".join(out)


def _comparison(v: np.ndarray, b: np.ndarray, metric: str, alpha: float, log_scale: Iterable[str]) -> st.Comparison:
    if metric in BINARY:
        return st.compare_binary(v, b, alpha=alpha)
    return st.compare_continuous(v, b, log_scale=metric in log_scale, alpha=alpha)


def judge_claims(runs: pd.DataFrame, directions: Mapping[str, bool | None], columns: Iterable[str],
                 settings: Settings = Settings(), claims: Iterable[Claim] | None = None,
                 log_scale: Iterable[str] = LOG_SCALE) -> pd.DataFrame:
    """One row per (protocol, claim, variant): the comparison on the claim's primary endpoint and its
    verdict; untested claims get one row each with the reason. ``claims``: ``study_claims``' list (default:
    from the runs and the package's table alone)."""
    columns = list(columns)
    claims = study_claims(runs) if claims is None else list(claims)
    rows: list[dict] = []
    pending: list[tuple[dict, st.Comparison, st.Equivalence | None, bool | None]] = []
    for proto, g in runs.groupby("protocol", sort=False):
        channels, resolution = int(g["channels"].iloc[0] or 1), int(g["resolution"].iloc[0] or 32)
        present = set(g["variant"])
        for claim in claims:
            head = {"protocol": proto, "rule": claim.rule, "claim": claim.id, "text": claim.text,
                    "baseline": claim.baseline, "metric": claim.metric, "expected": claim.direction}
            why = claim.untested_reason(channels, resolution)
            ran = [v for v in claim.variants if v in present]
            if not why and not ran:
                why = f"not run in this study (variants: {', '.join(claim.variants)})"
            if not why and claim.baseline not in present:
                why = f"its baseline arm {claim.baseline!r} was not run"
            named = resolve_metric(claim.metric, columns) if not why else []
            if not why and not named:
                why = f"{claim.metric} not recorded"
            if why:
                rows.append({**head, "variant": ", ".join(claim.variants), "verdict": "untested", "reason": why})
                continue
            base = g[g["variant"] == claim.baseline]
            for variant in ran:
                v = g[g["variant"] == variant]
                for metric in named:
                    hib = directions.get(metric)
                    c = _comparison(v[metric].to_numpy(), base[metric].to_numpy(), metric, settings.alpha, log_scale)
                    eq = None
                    if claim.direction == "same":
                        margin = math.log(settings.margin) if c.scale == st.LOG_RATIO else None
                        eq = st.equivalence(v[metric].to_numpy(), base[metric].to_numpy(),
                                            log_scale=c.scale == st.LOG_RATIO, margin=margin, alpha=settings.alpha)
                    row = {**head, "variant": variant, "metric": metric, "better": _better_word(hib),
                           "n_variant": c.n_a, "n_baseline": c.n_b, "center_variant": c.center_a,
                           "center_baseline": c.center_b, "scale": c.scale, "estimate": c.estimate,
                           "ci_low": c.ci_low, "ci_high": c.ci_high, "effect": st.format_effect(c),
                           "test": c.test, "p_value": c.p, "mde": c.mde_ratio if c.scale == st.LOG_RATIO else c.mde,
                           "p_equivalence": eq.p if eq else math.nan,
                           "converged_variant": _converged(v), "converged_baseline": _converged(base),
                           "confounded": confounds(v, base, claim.changes)}
                    rows.append(row)
                    pending.append((row, c, eq, hib))
    # multiplicity: every primary comparison of the report together; "same" claims' TOST p as their own family
    tested = sum(math.isfinite(c.p) for _, c, _, _ in pending)
    if settings.family is not None and settings.family < tested:
        raise ReportError(f"--comparisons {settings.family}: the report holds {tested} primary comparisons; the "
                          f"family corrected across must count at least those")
    adjusted = st.adjust_pvalues([c.p for _, c, _, _ in pending], settings.correction, settings.family)
    tost = [i for i, (_, _, eq, _) in enumerate(pending) if eq is not None]
    tost_adjusted = dict(zip(tost, st.adjust_pvalues([pending[i][2].p for i in tost], settings.correction)))
    floors = st.adjusted_floors([c for _, c, _, _ in pending], settings.correction, settings.family)   # best cases
    family = (settings.family or tested) if settings.correction != "none" else 1
    for i, (row, c, eq, hib) in enumerate(pending):
        verdict = st.judge(row["expected"], hib, c, p_adjusted=adjusted[i], equivalence=eq,
                           p_equivalence_adjusted=tost_adjusted.get(i), p_floor=floors[i], family=family,
                           alpha=settings.alpha)
        reason = verdict.reason
        unconverged = [f"{arm} {k}" for arm, k in (("variant", row["converged_variant"]),
                                                  ("baseline", row["converged_baseline"]))
                       if k != "-" and k.split("/")[0] != k.split("/")[1]]
        if unconverged:
            reason += f"; drawn from unconverged runs (converged: {', '.join(unconverged)})"
        if row["confounded"]:
            reason += f"; confounded: the arms differ in {row['confounded']}"
        strict = st.strict_mde(c, settings.alpha, family)
        row.update(p_adjusted=adjusted[i], verdict=verdict.verdict, reason=reason,
                   mde_corrected=math.exp(strict) if c.scale == st.LOG_RATIO else strict)
    return pd.DataFrame(rows, columns=CLAIM_COLUMNS)


def claim_verdicts(claims: pd.DataFrame) -> pd.DataFrame:
    """One row per (protocol, claim): its verdict over the variants that test it."""
    out = []
    for (proto, claim), g in claims.groupby(["protocol", "claim"], sort=False):
        v = st.combine(g["verdict"])
        parts = "; ".join(f"{r.variant}: {r.verdict}" + (f" ({r.effect})" if isinstance(r.effect, str) else "")
                          for r in g.itertuples())
        out.append({"protocol": proto, "rule": g["rule"].iloc[0], "claim": claim, "metric": g["metric"].iloc[0],
                    "expected": g["expected"].iloc[0], "verdict": v.verdict, "variants": parts})
    return pd.DataFrame(out, columns=["protocol", "rule", "claim", "metric", "expected", "verdict", "variants"])


def rule_of(rule: str, rules: Mapping[str, Rule] | None = None) -> Rule | None:
    """A rule by id: as the records carry it (``rules``), else the package's own (``RULES``), else None."""
    return (rules or {}).get(rule) or RULES.get(rule)


def rule_text(rule: str, claims: Iterable[Claim], rules: Mapping[str, Rule] | None = None) -> str:
    """The rule's text as the records carry it, else the package's; else the first claim's about it."""
    known = rule_of(rule, rules)
    if known is not None:
        return known.text
    return next((c.text for c in claims if c.rule == rule), "")


def rule_verdicts(per_claim: pd.DataFrame, rules: Mapping[str, Rule] | None = None,
                  claims: Iterable[Claim] = CLAIMS) -> pd.DataFrame:
    """One row per (protocol, rule): ``statistics.combine`` over its claims, with the rule's text and its
    author's claim (from the records' ``rules``, else the package's)."""
    claims = list(claims)
    out = []
    for (proto, rule), g in per_claim.groupby(["protocol", "rule"], sort=False):
        v = st.combine(g["verdict"])
        known = rule_of(rule, rules)
        out.append({"protocol": proto, "rule": rule, "paper_rule": rule_text(rule, claims, rules),
                    "rule_claim": known.claim if known else "", "verdict": v.verdict, "summary": v.reason,
                    "claims": "; ".join(f"{r.claim} {r.verdict}" for r in g.itertuples())})
    return pd.DataFrame(out, columns=RULE_COLUMNS)


RULE_COLUMNS = ["protocol", "rule", "paper_rule", "rule_claim", "verdict", "summary", "claims"]


def variant_table(runs: pd.DataFrame, claims: pd.DataFrame, baseline: str,
                  study: Iterable[Claim] = ()) -> pd.DataFrame:
    """One row per variant run: seeds, how many converged, what confounds it against the baseline (not what
    the ``study`` claims it is an arm of change by design), and the verdicts of the claims it takes part in."""
    study = list(study)
    out = []
    for (proto, variant), g in runs.groupby(["protocol", "variant"], sort=False):
        base = runs[(runs["protocol"] == proto) & (runs["variant"] == baseline)]
        mine = claims[(claims["protocol"] == proto) & (claims["variant"] == variant)]
        by_design = {q for c in study if variant in c.variants for q in c.changes}
        out.append({"protocol": proto, "rule": g["rule"].iloc[0], "variant": variant,
                    "description": g["description"].iloc[0], "runs": len(g), "converged": _converged(g),
                    "confounded": "" if variant == baseline else confounds(g, base, by_design),
                    "verdict": "baseline" if variant == baseline else
                    ("; ".join(f"{r.claim} {r.verdict}" for r in mine.itertuples()) or "no claim")})
    return pd.DataFrame(out, columns=["protocol", "rule", "variant", "description", "runs", "converged", "confounded",
                                      "verdict"])


REPRESENTATION_COLUMNS = ["protocol", "rule", "variant", "n_variant", "n_baseline", "effect", "test", "p_value",
                          "p_adjusted", "changed"]


def representation(runs: pd.DataFrame, baseline: str, settings: Settings = Settings()) -> pd.DataFrame:
    """Did breaking a rule change what D learned? Each variant's probe gain (trained minus untrained D's
    accuracy, the untrained figure from each run's own initialisation) against the baseline's: the
    difference with its interval, an exact test below 6 seeds, corrected across the variants of the report
    as one family (secondary to the claims). Empty when no run recorded the probe."""
    if REPRESENTATION not in runs or not len(finite_values(runs[REPRESENTATION])):
        return pd.DataFrame(columns=REPRESENTATION_COLUMNS)
    rows, comps = [], []
    for proto, g in runs.groupby("protocol", sort=False):
        base = g[g["variant"] == baseline][REPRESENTATION].to_numpy()
        for variant, v in g[g["variant"] != baseline].groupby("variant", sort=False):
            c = st.compare_continuous(v[REPRESENTATION].to_numpy(), base, alpha=settings.alpha)
            rows.append({"protocol": proto, "rule": v["rule"].iloc[0], "variant": variant, "n_variant": c.n_a,
                         "n_baseline": c.n_b, "effect": st.format_effect(c), "test": c.test, "p_value": c.p,
                         "estimate": c.estimate})
            comps.append(c)
    adjusted = st.adjust_pvalues([c.p for c in comps], settings.correction)
    for row, p in zip(rows, adjusted):
        row["p_adjusted"] = p
        row["changed"] = ("no test" if not math.isfinite(p) else
                          ("lower" if row["estimate"] < 0 else "higher") if p < settings.alpha else "no change shown")
    return pd.DataFrame(rows, columns=REPRESENTATION_COLUMNS)


INSTABILITY_COLUMNS = ["protocol", "rule", "variant", "diverged", "broke_down", "collapsed", "unstable", "effect",
                       "test", "p_value", "p_adjusted", "changed"]
INSTABILITY_PARTS = ("diverged", "broke_down", "collapsed")


def _counts(values: Iterable) -> tuple[int, int]:
    """(runs with the event, runs where it is known) of a 0/1 column."""
    known = finite_values(values)
    return int((known >= 0.5).sum()), len(known)


def instability(runs: pd.DataFrame, baseline: str, settings: Settings = Settings()) -> pd.DataFrame:
    """How often each arm's runs failed, against the baseline's: ``unstable`` (diverged, broke down or
    collapsed: one outcome, so that the counts are one family) compared by Fisher's exact test, with the
    difference of proportions and Newcombe's interval, corrected across the report's variants as one family
    (secondary to the claims); its parts as counts (seeds with / seeds known, variant vs baseline). A
    comparison that no outcome could make significant after the correction says so. Empty without runs
    that know ``unstable``."""
    if "unstable" not in runs or not len(finite_values(runs["unstable"])):
        return pd.DataFrame(columns=INSTABILITY_COLUMNS)
    rows, comps = [], []
    for proto, g in runs.groupby("protocol", sort=False):
        base = g[g["variant"] == baseline]
        if base.empty:
            continue
        for variant, v in g[g["variant"] != baseline].groupby("variant", sort=False):
            row = {"protocol": proto, "rule": v["rule"].iloc[0], "variant": variant}
            for part in (*INSTABILITY_PARTS, "unstable"):
                if part in g:
                    (ka, na), (kb, nb) = _counts(v[part]), _counts(base[part])
                    row[part] = f"{ka}/{na} vs {kb}/{nb}"
            c = st.compare_binary(v["unstable"].to_numpy(float), base["unstable"].to_numpy(float),
                                  alpha=settings.alpha)
            row.update(effect=st.format_effect(c), test=c.test, p_value=c.p, estimate=c.estimate)
            rows.append(row)
            comps.append(c)
    adjusted = st.adjust_pvalues([c.p for c in comps], settings.correction)
    floors = st.adjusted_floors(comps, settings.correction)
    for row, p, floor in zip(rows, adjusted, floors):
        row["p_adjusted"] = p
        row["changed"] = ("no test" if not math.isfinite(p) else
                          ("more" if row["estimate"] > 0 else "fewer") if p < settings.alpha else
                          "no difference shown" if math.isfinite(floor) and floor < settings.alpha else
                          "none could be shown at these seeds")
    return pd.DataFrame(rows, columns=INSTABILITY_COLUMNS)


def definitions(settings: Settings) -> dict[str, str]:
    m = settings.margin
    return {
        "primary endpoint": "each claim is judged on one metric only (the claims table); the other metrics are "
                            "descriptive",
        "effect": "FID, KID and the FID curve's area as the ratio of geometric means (variant / baseline) with a 95% "
                  "Welch t-interval on the logs, e.g. 1.31x [1.12, 1.54]; other metrics as a difference of means "
                  "(0/1 outcomes: of proportions, Newcombe's interval)",
        "test": "an exact permutation test when an arm has fewer than 6 seeds (its p is never below 2/C(n_a+n_b, n_a): "
                "0.1 at 3 vs 3), Welch's t-test from 6; Fisher's exact test for 0/1 outcomes (diverged, collapsed)",
        "correction": f"{settings.correction} across the report's primary comparisons"
                      + (f", a family of {settings.family} fixed by the study's design (those not yet run count as "
                         f"never significant)" if settings.family else "")
                      + f" (TOST p-values of 'same' claims as their own family); alpha {settings.alpha:g}",
        "supported": "worse/better: significant after correction in the predicted direction; same: equivalent by TOST "
                     f"within [{1 / m:.3f}, {m:.3f}]x",
        "contradicted": "significant after correction the other way (same: a significant difference)",
        "inconclusive": "neither; the reason gives the smallest effect detectable at 80% power with these seeds, in "
                        "one test and at the correction's strictest level (alpha / the number of comparisons)",
        "underpowered": "no outcome could have been significant at these seed counts, after the correction (e.g. 3 "
                        "vs 3 with an exact test: p >= 0.1; 5 vs 5: p >= 0.0079, times the family's size at Holm's "
                        "first step), or, for 'same', the detectable effect is wider than the margin",
        "untested": "no arm of this study can test the claim: the reason says what it needs",
        "rule verdict": "from its tested claims: supported when at least one is supported and none contradicted; "
                        "contradicted the other way round; inconclusive when they disagree or none is decided; "
                        "underpowered when every tested claim was",
        "converged": "a run whose FID curve plateaued (ganbench.metrics.stability.plateau), whether or not G learned: "
                     "a run flat at failure counts too (failed to learn says which); a verdict from runs that did "
                     "not plateau says so",
        "confounded": f"the arms' mean parameters, FLOPs or learning rates differ by more than {CONFOUND_RATIO}x "
                      "(not counting what the claim under test changes by design, e.g. the learning rate in R6.lr)",
        "diverged": "the run's losses became non-finite; it has no quality metrics (FID is missing, not zero)",
        "broke down": f"the run learned, then lost it: its last FID is more than {BREAKDOWN_RATIO:g}x its best FID "
                      "since G learned (ganbench.metrics.stability.broke_down)",
        "collapsed": "the samples cover at most one mode, or D won outright",
        "unstable": "diverged, broke down or collapsed: the instability table compares how many runs of each arm "
                    "were, by Fisher's exact test, corrected across the variants as one family",
        "representation": "probe gain: the linear probe's accuracy on the trained D's features minus an untrained D's "
                          "of the same architecture and seed (the paper's Table 1, less what the architecture gives "
                          "for free)",
    }
