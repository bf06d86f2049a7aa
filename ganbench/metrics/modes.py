"""Mode coverage, for labelled data: which classes (or stacked-MNIST digit triples) the generator produces.

The domain classifier of the data set's family (``ganbench.metrics.features``) labels ``n`` generated
images (``n_final`` at the end of training, ``n_eval`` otherwise; the stacked-mnist protocol scores 25,600):

- ``modes``: the number of distinct predicted classes. For stacked MNIST each channel is classified on its
  own and the mode is the triple, ``100*d0 + 10*d1 + d2``: up to 1,000.
- ``kl_modes``: KL(p_gen || p_data) in nats, where p_gen is the histogram of predicted classes over the
  ``n`` images and p_data the histogram of the reference split's labels, each smoothed as
  ``p_k = (c_k / N + EPS) / (1 + K * EPS)`` over the K classes (EPS = 1e-6), so that a class the data
  lacks still has a finite log-probability. 0 when G matches the data's class balance; log K for a G that
  makes one of K equally common classes.

Data sets without labels or without a classifier family get no mode metrics (the metric returns nothing).
"""

from __future__ import annotations

import torch

from ganbench.metrics.features import DomainNet

EPS = 1e-6


def predict(net: DomainNet, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """The class of each uint8 image; with several channel groups (stacked MNIST), the classes of the groups
    read as digits of one number: ``100*d0 + 10*d1 + d2``."""
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            label = None
            for group in net.grouped(images[start:start + batch]):
                digit = net(group).argmax(1)
                label = digit if label is None else label * net.num_classes + digit
            out.append(label)
    return torch.cat(out)


def histogram(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Smoothed class probabilities (see the module's docstring), float64."""
    p = torch.bincount(labels, minlength=num_classes).double() / max(len(labels), 1)
    return (p + EPS) / (1 + num_classes * EPS)


def coverage(pred: torch.Tensor, reference_labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """``modes`` and ``kl_modes`` of predicted classes against the reference split's labels."""
    p, q = histogram(pred, num_classes), histogram(reference_labels, num_classes)
    return {"modes": float(torch.unique(pred).numel()), "kl_modes": float((p * (p / q).log()).sum())}
