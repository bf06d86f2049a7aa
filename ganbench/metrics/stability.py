"""Stability and convergence speed, from the run's evaluation records. Exact definitions:

An evaluation record holds, besides the metric values, the trainer's means over the training steps since
the previous evaluation: ``g_loss``, ``d_loss``, ``d_real`` (mean sigmoid D(x)) and ``d_fake`` (mean
sigmoid D(G(z))). E is the number of evaluations so far, the current one included; the *tail* is the last
``max(2, ceil(E / 3))`` of them (the last third, but at least two, so that a spread exists).

- ``diverged``: 1 when training stopped on a non-finite loss (the context says so, or an earlier record
  does), else 0. A diverged run's FID and other sample scores are NaN.
- ``d_wins``: 1 when D wins outright: at each of the last ``D_WINS_K`` = 3 evaluations (all of them when
  there are fewer), ``d_loss < D_WINS_LOSS`` (0.1) and ``d_fake < D_WINS_FAKE`` (0.05): D rejects nearly
  every fake, and G's gradient carries little signal. Else 0.
- ``sample_drift`` (at each evaluation): how far G(z) moved since the previous evaluation for the 64 fixed
  z: the mean over those z of the Euclidean feature distance between G(z) now and G(z) then, divided by the
  mean feature distance between paired images of two disjoint batches of 64 real images (a fixed draw
  from the reference split), so 1.0 means "moves as far as one real image is from another". Features are
  the protocol's extractor's (the ones FID uses). NaN at the first evaluation.
- ``sample_oscillation``: the mean ``sample_drift`` over the tail (NaN values left out), the paper's
  "sample oscillation": a converged G scores near 0; a collapsed one that jumps between modes scores high.
- ``loss_oscillation_g``, ``loss_oscillation_d``: the standard deviation (population, ddof 0) of ``g_loss``
  and of ``d_loss`` over the tail; NaN with one evaluation.
- ``fid_best``: the lowest finite FID so far. ``fid_regression``: the current FID minus ``fid_best``
  (0 when the current one is the best; NaN when the current FID is not finite, e.g. after divergence).
- ``fid_auc``: the area under the FID curve, by the trapezoid rule over ``images_seen`` at the evaluations
  with a finite FID, divided by the images seen between the first and the last of them: an average FID over
  training, lower when G gets good sooner (with one such evaluation, its FID).
- ``steps_to_target``: the first evaluated step whose FID is below the protocol's ``fid_target``; NaN if
  none is yet, or the target is 0 (none).

**Converged or labelled.** A claim about training is judged where the runs have plateaued, so each run says
whether its FID curve has:

- ``fid_tail_change``: the least-squares slope of log FID against the evaluation's index over the tail (as
  above: the last third of the evaluations, at least two), in log units per evaluation: -0.05 means FID
  still falls about 5% from one evaluation to the next; positive when it rises. Signed, and with no
  direction: falling fast is not worse, only unfinished. The curve is ``fid_curve``: each evaluation's
  ``fid_n_eval`` (FID of ``n_eval`` images even at the end, where ``fid`` uses ``n_final``: FID's bias
  shrinks with the number of images, and on MNIST 2,000 images instead of 1,000 alone lower a real-data
  FID by 14%, a false "still improving" at the last evaluation). Evaluations without a finite FID are left
  out, keeping their place on the index; NaN when fewer than ``PLATEAU_MIN`` = 3 finite FIDs remain or the
  last evaluation's FID is not finite (a diverged run: ``diverged`` says so).
- ``converged``: 1 when ``|fid_tail_change| < PLATEAU_SLOPE`` (0.05 per evaluation), else 0; NaN where
  the change is. Plateaued, not learned: a run flat at failure (FID ~6,500 at every evaluation) has
  converged too, and ``failed_to_learn`` tells it apart. ``plateau(fids)`` applies the same rule to any
  curve (records written before these values existed: ``plateau(fid_curve(rows))``).
  Why 0.05: on a flat curve the slope is noise. FID's sampling noise alone, measured through the MNIST
  domain classifier with 1,000 images, is a standard deviation of log FID of 0.08 at the real-data floor
  (FID ~18), 0.02 at FID ~450 and 0.01 at FID ~1,450 (with 2,560 images 0.055 at the floor; with
  5,000, 0.006 at FID ~450); with a two-evaluation tail the slope's is sqrt(2) times that. G's own drift
  between checkpoints adds to it. At 0.05 a flat curve well above the floor passes nearly always, while a
  curve still falling 5% per evaluation does not (the published 1,000-step runs fell 25-35% over their
  last evaluation). Near the floor, with a short tail, noise alone can exceed 0.05: a flat run is then
  sometimes labelled unconverged, which is the safe error (labelled, never silently compared); more
  evaluations, or more images per evaluation, shrink the noise.

**Collapse, apart from not learning.** Three separate things, each its own value:

- ``failed_to_learn``: 1 when the samples are not on the data manifold at all: this evaluation's
  ``precision`` (``quality``'s: the share of generated images inside the k-NN balls of the real features)
  is below ``FAILED_PRECISION`` (0.05), else 0; NaN when precision was not measured (``quality`` did not
  run before ``stability``) or is NaN (a diverged run). Why 0.05: in the published 1,000-step MNIST
  records, runs that learned score 0.5-0.8 at the end, runs whose samples are grey blobs 0.00-0.01, and
  runs just starting to learn pass through 0.07-0.3 on the way; 0.05 sits in the gap below those.
- ``diversity`` and ``mode_collapse``: ``diversity`` is the mean pairwise feature distance among the first
  ``N_DIVERSITY`` (500) generated images, divided by the same among up to 500 images of the reference
  split (a fixed draw, ``DIVERSITY_SEED``); features are the protocol's extractor's (the ones FID uses).
  About 1 for samples as varied as the data; no direction (above 1 is not better: spread beyond
  the data's is no virtue). ``mode_collapse`` is 1 when ``diversity < COLLAPSE_DIVERSITY`` (0.6), else 0.
  Why 0.6, measured through the domain classifiers (digits at 16 px / MNIST at 32 px, against 500 test
  images): real training images 1.02 / 1.03; two classes only 0.80 / 0.72; one class only 0.32 / 0.52;
  near-identical images 0.00-0.10. So 0.6 means "as alike as one class of the data, or more". What it
  cannot see: a G that draws a few images per class scores like the data (one image per class: 0.96 /
  0.90), since a classifier's features spread classes far apart and the images within one class close
  together (recall and KID see that better); and noise images can score low too (uniform noise 0.59 /
  0.31), so read ``mode_collapse`` for runs with ``failed_to_learn`` 0. NaN (both) for a diverged run or
  a G whose output is not finite.
- ``d_wins`` (above) is the third: D rejecting every fake says nothing about the samples themselves.

**Breakdown: learned, then lost it.** ``broke_down``: 1 when the last FID of the curve (``fid_curve``) is
more than ``BREAKDOWN_RATIO`` (3) times the lowest FID of an earlier evaluation at which G had learned
(``failed_to_learn`` not 1 there), else 0 (a run that never learned cannot break down; ``failed_to_learn``
says so); NaN when fewer than ``PLATEAU_MIN`` finite FIDs or the last FID is not finite (a diverged run:
``diverged`` says so). Why 3, fixed on the decisive study's pilot (MNIST 32 px, 20,000 steps) before its
instability stage: the runs there either drift, ending 1.2-1.8x above their best FID (the baseline's
steady seed, both ``no-bn`` seeds), or break down, ending 5-146x above it with precision 0.00-0.16 and
recall near 0 (two of three baseline seeds, both ``bn-all`` and both ``adam-lr-1e-3`` seeds); 3 lies in the
gap, and FID's sampling noise at 2,000 images (SD of log FID 0.055 at the floor) is a factor of about 1.06.
"""

from __future__ import annotations

import math

import numpy as np
import torch

D_WINS_K = 3
D_WINS_LOSS = 0.1
D_WINS_FAKE = 0.05
N_DRIFT = 64               # fixed-z images compared, and real images in each of the two batches of the scale
DRIFT_SEED = 0             # which real images make the two batches
PLATEAU_SLOPE = 0.05       # |slope of log FID per evaluation| over the tail below which a run has converged
PLATEAU_MIN = 3            # finite FIDs needed to judge a plateau
FAILED_PRECISION = 0.05    # precision below which G's samples are off the data manifold: it failed to learn
N_DIVERSITY = 500          # generated images, and at most this many real ones, whose pairwise distances count
DIVERSITY_SEED = 0         # which real images of the reference split
COLLAPSE_DIVERSITY = 0.6   # diversity below which the samples have collapsed
BREAKDOWN_RATIO = 3.0      # last FID over the best one since G learned above which the run broke down


def tail(rows: list) -> list:
    """The last max(2, ceil(E/3)) of E records."""
    return rows[-max(2, math.ceil(len(rows) / 3)):] if rows else []


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def d_wins(history: list[dict]) -> float:
    rows = history[-D_WINS_K:]
    return float(bool(rows) and all(r["d_loss"] < D_WINS_LOSS and r["d_fake"] < D_WINS_FAKE for r in rows))


def real_pairs(real: torch.Tensor, n: int = N_DRIFT) -> tuple[torch.Tensor, torch.Tensor]:
    """Two disjoint batches of real images of the same size (at most n each), the same draw every time."""
    m = min(n, len(real) // 2)
    idx = torch.randperm(len(real), generator=torch.Generator().manual_seed(DRIFT_SEED))[:2 * m]
    return real[idx[:m]], real[idx[m:]]


def drift(now: torch.Tensor, before: torch.Tensor, real_a: torch.Tensor, real_b: torch.Tensor) -> float:
    """Mean paired feature distance of G(z_fixed) between two evaluations over that of two real batches
    (all four: (N, D) features)."""
    moved = torch.linalg.vector_norm(now - before, dim=1).mean()
    scale = torch.linalg.vector_norm(real_a - real_b, dim=1).mean()
    return float(moved / scale)


def _curve_rows(history: list[dict]) -> list[tuple[float, dict]]:
    """(FID at one sample size, the evaluation's record) for each evaluation on the curve (``fid_curve``)."""
    first_n = next((r["quality_n_fake"] for r in history if "quality_n_fake" in r), None)
    out = []
    for r in history:
        if "fid_n_eval" in r:
            out.append((float(r["fid_n_eval"]), r))
        elif r.get("quality_n_fake", first_n) == first_n:
            out.append((float(r["fid"]) if _finite(r.get("fid")) else math.nan, r))
    return out


def fid_curve(history: list[dict]) -> list[float]:
    """The FID of each evaluation at one sample size, oldest first: ``fid_n_eval`` (NaN where it is not
    finite). In a record written before ``fid_n_eval`` existed: ``fid``, leaving out the evaluations that
    scored another number of images than the first one did (the final one's larger sample would fake an
    improvement)."""
    return [f for f, _ in _curve_rows(history)]


def broke_down(history: list[dict]) -> float:
    """``broke_down`` of the run so far (see the module's docstring): 1.0 when the last FID of the curve is
    more than ``BREAKDOWN_RATIO`` times the best FID of an earlier evaluation where G had learned."""
    points = _curve_rows(history)
    if sum(_finite(f) for f, _ in points) < PLATEAU_MIN or not _finite(points[-1][0]):
        return math.nan
    learned = [f for f, r in points[:-1] if _finite(f) and f > 0 and failed_to_learn(r.get("precision")) != 1.0]
    return float(bool(learned) and points[-1][0] > BREAKDOWN_RATIO * min(learned))


def plateau(fids: list[float]) -> tuple[float, float]:
    """(``fid_tail_change``, ``converged``) of an FID curve, one value per evaluation, oldest first (see the
    module's docstring): the least-squares slope of log FID per evaluation over the tail of the
    evaluations with a finite FID, and whether its size is below ``PLATEAU_SLOPE``."""
    finite = [(i, math.log(f)) for i, f in enumerate(fids) if _finite(f) and f > 0]
    if len(finite) < PLATEAU_MIN or finite[-1][0] != len(fids) - 1:
        return math.nan, math.nan
    x, y = np.array(tail(finite), dtype=float).T
    slope = float(np.polyfit(x, y, 1)[0])
    return slope, float(abs(slope) < PLATEAU_SLOPE)


def failed_to_learn(precision) -> float:
    """1.0 when ``precision`` is below ``FAILED_PRECISION``, 0.0 when not, NaN when it is missing or NaN."""
    return float(precision < FAILED_PRECISION) if _finite(precision) else math.nan


def diversity_subset(real: torch.Tensor, n: int = N_DIVERSITY) -> torch.Tensor:
    """Up to ``n`` images of the reference split, the same draw every time."""
    idx = torch.randperm(len(real), generator=torch.Generator().manual_seed(DIVERSITY_SEED))[:n]
    return real[idx.sort().values]


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """The mean Euclidean distance over all pairs of distinct rows of (N, D) features."""
    return float(torch.pdist(features.double()).mean())


def diversity(fake: torch.Tensor, real: torch.Tensor) -> float:
    """Mean pairwise feature distance among generated images over that among real ones."""
    return mean_pairwise_distance(fake) / mean_pairwise_distance(real)


def mode_collapse(div: float) -> float:
    """1.0 when ``diversity`` is below ``COLLAPSE_DIVERSITY``, 0.0 when not, NaN when it is NaN."""
    return float(div < COLLAPSE_DIVERSITY) if _finite(div) else math.nan


def from_history(history: list[dict], fid_target: float, diverged: bool = False) -> dict[str, float]:
    """Every value above but ``sample_drift``, ``diversity`` and ``mode_collapse``, from the records (the
    current evaluation is the last one, with its ``fid``, ``fid_n_eval``, ``precision`` and ``sample_drift``
    already in it where they were computed)."""
    out: dict[str, float] = {
        "diverged": float(diverged or any(r.get("diverged", 0.0) == 1.0 for r in history)),
        "d_wins": d_wins(history),
        "failed_to_learn": failed_to_learn(history[-1].get("precision") if history else None),
        "broke_down": broke_down(history),
    }
    out["fid_tail_change"], out["converged"] = plateau(fid_curve(history))
    rows = tail(history)
    for net in ("g", "d"):
        losses = [r[f"{net}_loss"] for r in rows]
        out[f"loss_oscillation_{net}"] = float(np.std(losses)) if len(losses) >= 2 else math.nan
    drifts = [r["sample_drift"] for r in rows if _finite(r.get("sample_drift"))]
    out["sample_oscillation"] = float(np.mean(drifts)) if drifts else math.nan

    curve = [(r["images_seen"], r["fid"], r["step"]) for r in history if _finite(r.get("fid"))]
    current = history[-1].get("fid") if history else None
    if curve:
        fids = [f for _, f, _ in curve]
        out["fid_best"] = min(fids)
        out["fid_regression"] = current - min(fids) if _finite(current) else math.nan
        x = np.array([i for i, _, _ in curve], dtype=float)
        out["fid_auc"] = float(np.trapezoid(fids, x) / (x[-1] - x[0])) if x[-1] > x[0] else fids[-1]
        hits = [s for _, f, s in curve if f < fid_target] if fid_target > 0 else []
        out["steps_to_target"] = float(hits[0]) if hits else math.nan
    else:
        out.update(fid_best=math.nan, fid_regression=math.nan, fid_auc=math.nan, steps_to_target=math.nan)
    return out
