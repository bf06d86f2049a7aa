"""The pilot's decision (issue 18): the training budget S* of the main study, read off the baseline's FID curves.

    python benchmarks/choose_budget.py RESULTS/pilot [--baseline dcgan] [--out results/published/pilot]
    python benchmarks/choose_budget.py RESULTS/stacked-mnist-pilot-d-quarter --metric modes --out DIR

``--metric modes`` reads the same rule off the baseline's curves of modes covered (Stacked MNIST's budget: the
step where the baseline's mode count has plateaued, issue 18's stage 5), each evaluation's count of modes among
the same number of samples (``modes_n``; a final scoring on more samples finds more modes and is left out of
the curve), on the log scale as FID is: a plateau is a change of less than about 5% per evaluation.

The rule: S* is the smallest evaluated step S at which *every* seed of the baseline has plateaued by ganbench's
convergence rule applied to its curve cut at S, and stays plateaued when cut at the next HOLD - 1 evaluations
(``ganbench.metrics.stability.plateau``: the slope of log FID per evaluation over the last third of the
evaluations is below 0.05 in size), using FID at the same sample size at every evaluation (``fid_n_eval`` at
the last evaluation, ``fid`` before it). The "stays plateaued" part was added after the first 6,000 steps of
two seeds had been seen: early on, the tail is two evaluations, the slope is one difference of two FIDs, and
evaluation noise alone passes or fails it (seed 1 "plateaued" at 5,000 steps with FID still falling). Writes ``curves.png`` (every run's FID against steps, log axis, S*
marked) and ``budget.md`` (the slope table per baseline seed and the state of the other arms at S*).
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ganbench.files import atomic_write_text  # noqa: E402
from ganbench.metrics.stability import PLATEAU_MIN, PLATEAU_SLOPE, plateau  # noqa: E402
from ganbench.record import RunRecord, run_dirs  # noqa: E402


METRICS = ("fid", "modes")


def point(row: dict, metric: str) -> float:
    """One evaluation's value on the curve: FID at n_eval images, or the modes covered."""
    if metric == "fid":
        return row.get("fid_n_eval", row.get("fid", math.nan))
    return row.get(metric, math.nan)


def curves(folder: Path, metric: str = "fid") -> dict[str, dict[int, list[tuple[int, float]]]]:
    """variant -> seed -> [(step, value)], from every run's series (finished or still training): FID at n_eval
    images, or modes covered among as many samples as the first evaluation's (``modes_n``)."""
    out: dict[str, dict[int, list]] = defaultdict(dict)
    for d in run_dirs(folder):
        rows = RunRecord(d).series()
        if metric == "modes":
            rows = [r for r in rows if r.get("modes_n") == rows[0].get("modes_n")]
        if rows:
            out[d.parent.name][int(d.name.split("-")[1])] = [(r["step"], point(r, metric)) for r in rows]
    return out


def slopes(points: list[tuple[int, float]]) -> dict[int, tuple[float, float]]:
    """step S -> (fid_tail_change, converged) of the curve cut at S."""
    return {points[i - 1][0]: plateau([f for _, f in points[:i]]) for i in range(PLATEAU_MIN, len(points) + 1)}


HOLD = 3   # evaluations in a row at which every baseline seed's cut curve must have converged
# The pilot's baseline seeds. Stage (f) trains more dcgan seeds under the pilot's protocol (the same runs, so
# the same folder); those came after the budget was chosen and do not move it.
PILOT_SEEDS = (0, 1, 2)


def pilot_baseline(data: dict, baseline: str, seeds=PILOT_SEEDS) -> dict[int, list[tuple[int, float]]]:
    """The baseline's curves of the given seeds (those present)."""
    return {seed: points for seed, points in data.get(baseline, {}).items() if seed in seeds}


def choose(baseline: dict[int, list[tuple[int, float]]], hold: int = HOLD) -> int | None:
    """The smallest step from which every baseline seed's cut curve has converged at ``hold`` evaluations in a
    row (None: not within the pilot)."""
    per_seed = [slopes(p) for p in baseline.values()]
    common = sorted(set.intersection(*(set(s) for s in per_seed))) if per_seed else []
    ok = [all(s[step][1] == 1.0 for s in per_seed) for step in common]
    return next((common[i] for i in range(len(common) - hold + 1) if all(ok[i:i + hold])), None)


def study_comparisons() -> int:
    """The primary comparisons of the study at 32 px grey: every (claim, arm) of a tested claim that needs no
    more than this setting (Holm's strictest step is alpha over this many)."""
    from ganbench.claims import CLAIMS

    return sum(len(c.variants) for c in CLAIMS if not c.untested and not c.needs)


def seeds_section(folder: Path, baseline: str, base: dict, step: int) -> list[str]:
    """Seeds per arm at the budget: from the baseline's own spread of log FID at ``step`` (for arms the pilot
    did not train, if they spread as much), and ``ganbench plan --at-step`` for the pilot's arms."""
    import numpy as np

    from ganbench import statistics as st
    from ganbench.report.plan import plan

    m = study_comparisons()
    at_step = [dict(points).get(step, math.nan) for points in base.values()]
    logs = [math.log(f) for f in at_step if f > 0]   # NaN (no evaluation there) compares false
    sd = float(np.std(logs, ddof=1)) if len(logs) >= 2 else math.nan
    one, strict = ((st.seeds_needed_for_ratio(sd, st.DEFAULT_RATIO, st.ALPHA),
                    st.seeds_needed_for_ratio(sd, st.DEFAULT_RATIO, st.ALPHA / m)) if math.isfinite(sd) and sd > 0
                   else (None, None))
    lines = ["", f"## Seeds per arm at step {step} (80% power for a {st.DEFAULT_RATIO:g}x FID change)", "",
             f"`{baseline}`'s own spread: SD of log FID over {len(logs)} seeds = {sd:.3f}; an arm that spreads as "
             f"much needs **{one or '-'} seeds per arm** for one test at alpha {st.ALPHA:g}, **{strict or '-'}** at "
             f"alpha / {m} (Holm's strictest step over the study's {m} primary comparisons).", "",
             f"The pilot's arms, pooled with `{baseline}` (`ganbench plan {folder.parent} --protocol {folder.name} "
             f"--at-step {step}`):", "",
             "| claim | variant | n | SD of log FID | seeds (one test) | seeds (alpha / m) |", "|---|---|---|---|---|---|"]
    rows = plan(folder.parent, folder.name, baseline, at_step=step)
    for r in rows.itertuples():
        sd_text = f"{r.log_fid_sd:.3f}" if math.isfinite(r.log_fid_sd) else "- (one seed)"
        lines.append(f"| {r.claim} | {r.variant} | {r.n} | {sd_text} | {r.seeds_one_test} | {r.seeds_corrected} |")
    lines += ["", "(seeds (alpha / m) here divides by the pilot's own comparisons; the study's is the line above.)"]
    return lines


def most_plateaued(baseline: dict[int, list[tuple[int, float]]]) -> tuple[int | None, float]:
    """The evaluated step at which the baseline's seeds are jointly closest to flat: the smallest largest
    |slope| over the seeds (the fallback when no step passes the rule for every seed), and that slope."""
    per_seed = [slopes(p) for p in baseline.values()]
    common = sorted(set.intersection(*(set(s) for s in per_seed))) if per_seed else []
    worst = {step: max(abs(s[step][0]) for s in per_seed) for step in common}
    finite = {k: v for k, v in worst.items() if math.isfinite(v)}
    if not finite:
        return None, math.nan
    step = min(finite, key=lambda k: (finite[k], k))
    return step, finite[step]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--baseline", default="dcgan")
    ap.add_argument("--out", type=Path, default=Path("results/published/pilot"))
    ap.add_argument("--seeds", default=",".join(map(str, PILOT_SEEDS)),
                    help="the baseline seeds the budget is chosen from (default: the pilot's)")
    ap.add_argument("--metric", choices=METRICS, default="fid", help="the curve the rule reads (default: fid)")
    args = ap.parse_args()
    name = {"fid": "FID", "modes": "modes covered"}[args.metric]
    data = curves(args.folder, args.metric)
    base = pilot_baseline(data, args.baseline, [int(s) for s in args.seeds.split(",")])
    s_star = choose(base)
    first = choose(base, hold=1)   # the rule as first written, for comparison
    fallback, fallback_slope = most_plateaued(base)

    lines = [f"# The pilot's budget: {args.folder}", "",
             f"Rule: the smallest step from which every `{args.baseline}` seed's {name} curve, cut there and at the "
             f"next {HOLD - 1} evaluations, has |slope of log {name} per evaluation over the last third| < "
             f"{PLATEAU_SLOPE} (✓).", "",
             f"**S\\* = {s_star if s_star else 'not reached within the pilot'}** (by the rule as first written, "
             f"plateaued at one evaluation: {first if first else 'not reached'})", "",
             *([] if s_star or first else [
                 f"Neither finds a step where every seed passes. The fallback (amendment 2, stated before any study "
                 f"run): the step where the seeds are jointly closest to flat, the smallest largest |slope| over the "
                 f"seeds: **{fallback}** (largest |slope| there {fallback_slope:.3f}).", ""]),
             f"## `{args.baseline}`: slope of log {name} per evaluation over the tail, curve cut at each step", ""]
    table = {seed: slopes(p) for seed, p in sorted(base.items())}
    steps = sorted({s for t in table.values() for s in t})
    lines += ["| step | " + " | ".join(f"seed {s}" for s in table) + " |", "|---" * (len(table) + 1) + "|"]
    for step in steps:
        cells = [f"{t[step][0]:+.3f}{' ✓' if t[step][1] == 1.0 else ''}" if step in t else "" for t in table.values()]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    at_step = s_star or first or fallback
    lines += ["", f"## Every arm: {name} (at the evaluation sample size) at step {at_step}, its best, and its last", "",
              f"| variant | seed | {name} at {at_step} | slope there | best {name} (step) | last step | {name} there |",
              "|---|---|---|---|---|---|---|"]
    for variant, seeds in sorted(data.items()):
        for seed, points in sorted(seeds.items()):
            at = dict(points)
            sl = slopes(points).get(at_step, (math.nan, math.nan))[0] if at_step else math.nan
            sign = 1 if args.metric == "fid" else -1                 # the lowest FID, the most modes
            best = min(points, key=lambda p: sign * p[1] if math.isfinite(p[1]) else math.inf)
            lines.append(f"| {variant} | {seed} | {at.get(at_step, math.nan):.1f} | {sl:+.3f} | {best[1]:.1f} ({best[0]}) "
                         f"| {points[-1][0]} | {points[-1][1]:.1f} |")
    if at_step and args.metric == "fid":                 # seeds for a change in FID, from its spread
        lines += seeds_section(args.folder, args.baseline, base, at_step)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "budget.md", "\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(8, 5))
    colours = dict(zip(sorted(data), plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for variant, seeds in sorted(data.items()):
        for i, (seed, points) in enumerate(sorted(seeds.items())):
            x, y = zip(*points)
            ax.plot(x, y, color=colours[variant], alpha=0.8, label=variant if i == 0 else None)
    marks = ((s_star, "S*", "--"), (first if first != s_star else None, "first plateau", ":"),
             (fallback if not (s_star or first) else None, "S* (most plateaued)", "--"))
    for step, label, style in marks:
        if step:
            ax.axvline(step, color="black", linestyle=style, label=f"{label} = {step}")
    ax.set(yscale="log", xlabel="training step", ylabel=f"{name} (domain classifier, evaluation sample)",
           title=f"pilot: {name} curves ({args.folder.name})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "curves.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
