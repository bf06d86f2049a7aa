"""Mode coverage for labelled data: which classes (or digit triples) the generator produces.

- ``modes``: the number of distinct classes the domain classifier predicts on the generated images (for
  stacked MNIST, distinct (d0, d1, d2) triples, each digit classified on its own channel).
- ``kl_modes``: KL(generated class histogram || the reference split's class histogram), in nats; both
  histograms have ``EPS`` added to every class before normalising, so a class the data has and G never
  makes counts as very unlikely rather than impossible.
"""

from __future__ import annotations

import math

import torch

from ganbench.data import to_float
from ganbench.metrics.features import DomainNet

EPS = 1e-6


def predict(net: DomainNet, images: torch.Tensor, batch: int = 1024) -> torch.Tensor:
    """Class per image; with more channels than the classifier takes, one digit per channel: 100*d0+10*d1+d2."""
    c = net.body[0].in_channels
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = to_float(images[i:i + batch])
            digits = [net(g).argmax(1) for g in x.split(c, dim=1)]
            label = torch.zeros_like(digits[0])
            for d in digits:
                label = label * net.classify.out_features + d
            out.append(label)
    return torch.cat(out)


def coverage(pred: torch.Tensor, reference_labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    gen = torch.bincount(pred, minlength=num_classes).double()
    ref = torch.bincount(reference_labels, minlength=num_classes).double()
    p = (gen + EPS) / (gen + EPS).sum()
    q = (ref + EPS) / (ref + EPS).sum()
    return {"modes": float((gen > 0).sum()), "kl_modes": float((p * (p / q).log()).sum())}


def total_classes(num_classes: int) -> float:
    return float(num_classes) if num_classes else math.nan
