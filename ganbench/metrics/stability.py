"""Stability and convergence, from a run's evaluation history. Every definition is exact:

- ``diverged``: 1 when a loss became non-finite (the trainer stops and records it), else 0.
- ``d_wins``: 1 when, at each of the last ``D_WINS_K`` evaluations (fewer if fewer exist), D's loss
  averaged since the previous evaluation is below ``D_WINS_LOSS`` and the mean D(G(z)) is below
  ``D_WINS_FAKE``: D rejects every fake and G gets no useful gradient. Else 0.
- ``sample_drift``: the mean over the 64 fixed z of the feature distance between G(z) now and at the
  previous evaluation, divided by the mean distance between paired images of two disjoint real batches of
  64 (so 1.0 means "moves as far as one real image is from another"). NaN at the first evaluation.
- ``sample_oscillation``: the mean ``sample_drift`` over the last third of the evaluations.
- ``fid_regression``: the latest FID minus the best FID so far (0 when the latest is the best).
- ``loss_oscillation_g`` / ``loss_oscillation_d``: standard deviation (ddof 0) of G's / D's loss over the
  last third of the evaluations (NaN with fewer than 2).
- ``fid_auc``: the area under the FID curve over images seen, divided by the images seen from the first
  evaluation to the last: an average FID, lower when training converges sooner.
- ``steps_to_target``: the first evaluated step whose FID is below the protocol's ``fid_target``; NaN if
  it never is or there is no target.
"""

from __future__ import annotations

import math

import numpy as np
import torch

D_WINS_K = 3
D_WINS_LOSS = 0.1
D_WINS_FAKE = 0.05


def last_third(rows: list) -> list:
    return rows[-max(1, math.ceil(len(rows) / 3)):] if rows else []


def d_wins(history: list[dict]) -> float:
    rows = history[-D_WINS_K:]
    return float(bool(rows) and all(r["d_loss"] < D_WINS_LOSS and r["d_fake"] < D_WINS_FAKE for r in rows))


def drift(now: torch.Tensor, before: torch.Tensor, real_a: torch.Tensor, real_b: torch.Tensor) -> float:
    """Mean paired feature distance of G(z_fixed) between two evaluations, over that of two real batches."""
    moved = torch.linalg.vector_norm(now - before, dim=1).mean()
    scale = torch.linalg.vector_norm(real_a - real_b, dim=1).mean()
    return float(moved / scale)


def from_history(history: list[dict], fid_target: float) -> dict[str, float]:
    """Everything above that the history alone determines (the current evaluation is the last row)."""
    out: dict[str, float] = {"diverged": 0.0, "d_wins": d_wins(history)}
    tail = last_third(history)
    for net in ("g", "d"):
        losses = [r[f"{net}_loss"] for r in tail]
        out[f"loss_oscillation_{net}"] = float(np.std(losses)) if len(losses) >= 2 else math.nan
    drifts = [r["sample_drift"] for r in last_third(history) if not math.isnan(r.get("sample_drift", math.nan))]
    out["sample_oscillation"] = float(np.mean(drifts)) if drifts else math.nan
    curve = [(r["images_seen"], r["fid"]) for r in history if not math.isnan(r.get("fid", math.nan))]
    if curve:
        fids = [f for _, f in curve]
        out["fid_best"] = min(fids)
        out["fid_regression"] = fids[-1] - min(fids)
        x = np.array([i for i, _ in curve], dtype=float)
        out["fid_auc"] = float(np.trapezoid(fids, x) / (x[-1] - x[0])) if len(curve) > 1 else fids[0]
        hits = [r["step"] for r in history if r.get("fid", math.inf) < fid_target] if fid_target > 0 else []
        out["steps_to_target"] = float(hits[0]) if hits else math.nan
    return out
