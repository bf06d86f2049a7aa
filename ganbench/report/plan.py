"""``ganbench plan``: size a study from a pilot. For each primary claim of the records: the observed effect
with its interval, the smallest effect the seeds used could detect (80% power, alpha two-sided), and the
seeds per arm needed to detect a given change in FID (default 1.2x) from the two arms' pooled spread of
log-FID (noncentral t, ``ganbench.statistics.seeds_needed_for_ratio``): for one test at alpha, and for a
study that corrects across as many primary comparisons as the pilot had (alpha / m, the strictest step of
Holm's procedure; the exact test's smallest p must be below it too). And, per comparison, the seeds per arm at
which the effect it observed, on the claim's own endpoint (FID area, sample oscillation, ...), would pass that
strictest step with 80% power (``seeds_for_effect``; from the endpoint's pooled spread, of the logs for
ratio-scale metrics): where more seeds would decide *this* verdict. It is optimistic: at few seeds an observed
effect tends to overstate the true one."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ganbench import statistics as st
from ganbench.report import build_report
from ganbench.report.stats import finite_values

PLAN_COLUMNS = ["protocol", "claim", "variant", "vs", "endpoint", "effect", "n", "mde", "log_fid_sd",
                "seeds_one_test", "seeds_corrected", "seeds_for_effect", "verdict"]


def plan(results_dir: str | Path, protocol: str | Iterable[str] | None = None, baseline: str = "dcgan",
         ratio: float = st.DEFAULT_RATIO, alpha: float = st.ALPHA, at_step: int | None = None,
         comparisons: int | None = None) -> pd.DataFrame:
    """One row per tested primary comparison (see the module docstring); with ``at_step``, from the runs as
    they stood after their evaluation at that step (a pilot trained past the budget it chose).
    ``comparisons``: how many primary comparisons the study will correct across (default: as many as these
    records test; a study run in stages tests more in the end than its first stage does)."""
    report = build_report(results_dir, baseline, protocol, alpha, at_step=at_step)
    runs = report.runs
    tested = report.claims[report.claims["verdict"] != "untested"]
    corrected_alpha = alpha / max(1, comparisons or len(tested))
    out = []
    for c in tested.itertuples():
        arms = [runs[(runs["protocol"] == c.protocol) & (runs["variant"] == name)] for name in (c.variant, c.baseline)]
        logs = [np.log(v[v > 0]) for v in (finite_values(a["fid"]) if "fid" in a else np.array([]) for a in arms)]
        sd = st.pooled_sd(*logs) if all(len(x) >= 2 for x in logs) else math.nan
        usable = math.isfinite(sd) and sd > 0
        needed = st.seeds_needed_for_ratio(sd, ratio, alpha) if usable else None
        strict = st.seeds_needed_for_ratio(sd, ratio, corrected_alpha) if usable else None
        for_effect = _seeds_for_effect(c, arms, corrected_alpha)
        mde = c.mde
        mde_text = "-" if not (isinstance(mde, float) and math.isfinite(mde)) else (
            f"{mde:.2f}x" if c.scale == st.LOG_RATIO else
            f"{mde:.0%} of runs" if c.test.startswith("fisher") else f"{mde:.3g}")
        out.append({"protocol": c.protocol, "claim": c.claim, "variant": c.variant, "vs": c.baseline,
                    "endpoint": f"{c.metric} {c.expected}", "effect": c.effect,
                    "n": f"{c.n_variant:.0f} vs {c.n_baseline:.0f}", "mde": mde_text,
                    "log_fid_sd": sd, "seeds_one_test": needed if needed is not None else "-",
                    "seeds_corrected": strict if strict is not None else "-",
                    "seeds_for_effect": for_effect if for_effect is not None else "-", "verdict": c.verdict})
    return pd.DataFrame(out, columns=PLAN_COLUMNS)


def _seeds_for_effect(claim, arms: list[pd.DataFrame], alpha: float) -> int | None:
    """Seeds per arm at which the observed effect on the claim's endpoint reaches ``alpha`` with 80% power;
    None where there is no effect, no spread to size it from (an arm with one value, or neither varying), or
    more than 1,000 seeds would be needed."""
    values = [finite_values(a[claim.metric]) if claim.metric in a else np.array([]) for a in arms]
    if claim.scale == st.LOG_RATIO:
        values = [np.log(v[v > 0]) for v in values]
    if not (all(len(v) >= 2 for v in values) and math.isfinite(claim.estimate)):
        return None
    sd = st.pooled_sd(*values)
    if not (math.isfinite(sd) and sd > 0) or claim.estimate == 0:
        return None
    return st.seeds_needed(abs(claim.estimate), sd, alpha)
