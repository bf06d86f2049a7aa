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


def from_history(history: list[dict], fid_target: float, diverged: bool = False) -> dict[str, float]:
    """Every value above but ``sample_drift``, from the records (the current evaluation is the last one, with
    its ``fid`` and ``sample_drift`` already in it where they were computed)."""
    out: dict[str, float] = {
        "diverged": float(diverged or any(r.get("diverged", 0.0) == 1.0 for r in history)),
        "d_wins": d_wins(history),
    }
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
