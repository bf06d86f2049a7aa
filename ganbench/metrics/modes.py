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
- ``confident_classes``: the number of classes drawn by images that look like data and that the classifier
  is sure of, on at least a ``CONFIDENT_SHARE`` (a tenth) of the share a class would have were the K
  classes equally common: 1% of the images for 10 classes, 0.01% for stacked MNIST's 1,000 (at least one
  image). An image counts when (a) its softmax confidence is above ``CONFIDENT`` (0.9; for stacked MNIST the
  product of its three digits') and (b) it lies inside the real manifold: within the k-NN radius
  (k = ``quality.PRC_NEIGHBORHOOD``, 3) of at least one of the ``n_real`` reference images used for FID, in
  the classifier's penultimate features: improved precision's test, image by image (with the domain
  extractor the share of such images is ``precision`` itself).
  ``modes`` counts every argmax, so a G that draws grey blobs "covers" the class the classifier assigns them.
  Confidence alone does not stop that: softmax is sure of images far from any digit (the digits classifier
  calls flat images of five grey levels 1 or 8 with confidence 0.73-1.00, and the MNIST one is above 0.9 on
  99% of test digits drowned in Gaussian noise of sigma 1), hence (b). Why 0.9: the classifiers are that sure
  of 94% (digits) / 97% (MNIST) of real test digits, and right on 98.6% / 99.8% of those, while averages of
  two real digits reach it only 61% / 54% of the time. Why a tenth: a class drawn ten times less often than
  the data draws it is all but missing, and one stray image among thousands is no class.

Data sets without labels or without a classifier family get no mode metrics (the metric returns nothing).
"""

from __future__ import annotations

import math

import torch

from ganbench.metrics.features import DomainNet

EPS = 1e-6
CONFIDENT = 0.9            # softmax confidence above which a prediction counts as sure
CONFIDENT_SHARE = 0.1      # a class counts when sure predictions of it reach this fraction of 1/K of the images
BLOCK = 2048               # rows of each pairwise-distance block of the manifold test


def predict(net: DomainNet, images: torch.Tensor, batch: int = 1000) -> torch.Tensor:
    """The class of each uint8 image; with several channel groups (stacked MNIST), the classes of the groups
    read as digits of one number: ``100*d0 + 10*d1 + d2``."""
    return classify(net, images, batch)[0]


def classify(net: DomainNet, images: torch.Tensor, batch: int = 1000) -> tuple[torch.Tensor, torch.Tensor,
                                                                                torch.Tensor]:
    """(class, confidence, features) of each uint8 image: the class as ``predict`` says; its softmax
    probability (with several channel groups, the product of the groups'); the penultimate features (of
    the groups, concatenated)."""
    labels, confidence, features = [], [], []
    with torch.no_grad():
        for start in range(0, len(images), batch):
            label, sure, feats = None, None, []
            for group in net.grouped(images[start:start + batch]):
                f = net.features(group)
                p, digit = net.classify(f).softmax(1).max(1)
                label = digit if label is None else label * net.num_classes + digit
                sure = p if sure is None else sure * p
                feats.append(f)
            labels.append(label)
            confidence.append(sure)
            features.append(torch.cat(feats, dim=1))
    return torch.cat(labels), torch.cat(confidence), torch.cat(features)


def on_manifold(fake: torch.Tensor, real: torch.Tensor, k: int) -> torch.Tensor:
    """Whether each generated image's features (rows of ``fake``) lie within the distance from some real
    image to its k-th nearest real neighbour (improved precision's test, per image)."""
    radii = torch.cat([torch.cdist(real[i:i + BLOCK], real).kthvalue(k + 1, dim=1).values
                       for i in range(0, len(real), BLOCK)])
    return torch.cat([(torch.cdist(fake[i:i + BLOCK], real) <= radii).any(dim=1) for i in range(0, len(fake), BLOCK)])


def confident_classes(pred: torch.Tensor, counted: torch.Tensor, num_classes: int) -> float:
    """Classes with at least ``CONFIDENT_SHARE / num_classes`` of the images (at least one) among those
    ``counted`` (a boolean mask: sure and on the manifold)."""
    need = max(1, math.ceil(CONFIDENT_SHARE * len(pred) / num_classes))
    return float((torch.bincount(pred[counted], minlength=num_classes) >= need).sum())


def histogram(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Smoothed class probabilities (see the module's docstring), float64."""
    p = torch.bincount(labels, minlength=num_classes).double() / max(len(labels), 1)
    return (p + EPS) / (1 + num_classes * EPS)


def coverage(pred: torch.Tensor, reference_labels: torch.Tensor, num_classes: int) -> dict[str, float]:
    """``modes`` and ``kl_modes`` of predicted classes against the reference split's labels."""
    p, q = histogram(pred, num_classes), histogram(reference_labels, num_classes)
    return {"modes": float(torch.unique(pred).numel()), "kl_modes": float((p * (p / q).log()).sum())}
