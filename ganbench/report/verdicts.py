"""Verdicts: each variant's claims judged against the baseline, one verdict per variant and per rule, and
whether breaking a rule changed the representation D learned."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterable, Mapping

import pandas as pd

from ganbench.report.load import COLLAPSE_MODES
from ganbench.report.stats import BINARY, _better_word, _finite, compare_values
from ganbench.variants import RULES

ALPHA = 0.05
SAME_TOLERANCE = 0.10        # "same": |difference of means| <= 10% of the baseline's mean
VERDICTS = ("supported", "contradicted", "inconclusive")
REPRESENTATION = "probe_acc"   # the probe's accuracy on D's features (ganbench.metrics.probe): the paper's Table 1


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

def judge_claims(runs: pd.DataFrame, baseline: str, alpha: float, same_tolerance: float,
                 directions: Mapping[str, bool | None], columns: Iterable[str]) -> pd.DataFrame:
    """One row per (variant, claimed metric, recorded metric it names): the numbers and the verdict."""
    cols = list(columns)
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
