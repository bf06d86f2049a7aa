"""Feature extractors for FID, KID, precision/recall, mode counting and sample drift.

Two kinds, both registered with torch-fidelity so that its own code computes every score:

- ``inception-v3-compat`` (torch-fidelity's own), when its weights are on disk: the protocol's
  ``fid_weights`` path, or torch hub's cache. ganbench never downloads them.
- A **domain classifier** per labelled data set family (digits, MNIST, Fashion-MNIST, CIFAR-10): a small
  CNN trained once on the family's training labels with a fixed seed, cached under
  ``$GANBENCH_CACHE/classifiers`` keyed by family, resolution, channels and ``CODE_VERSION``, with its
  held-out accuracy beside it. Its penultimate layer (128 units) gives the features, its logits the class.
  Stacked MNIST uses the MNIST classifier on each channel: features concatenated, mode = digit triple.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

from ganbench.data import DatasetSpec, cache_dir, load_dataset, to_float
from ganbench.errors import GanbenchError
from ganbench.results import atomic_path, write_json

CODE_VERSION = 1                 # bump when the classifier or its training changes: old caches are ignored
CLASSIFIER_SEED = 1234
FEATURE_DIM = 128
DOMAIN_EXTRACTOR = "ganbench-domain"
INCEPTION = "inception-v3-compat"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"   # torch-fidelity's file name in torch hub's cache

# family -> (data set the classifier is trained on, classes, training epochs)
FAMILIES: dict[str, tuple[str, int, int]] = {
    "digits": ("digits", 10, 30),
    "mnist": ("mnist", 10, 2),
    "fashion-mnist": ("fashion-mnist", 10, 3),
    "cifar10": ("cifar10", 10, 8),
}


class DomainNet(nn.Module):
    """conv(32)-conv(64)-conv(128), each BN + ReLU + 2x2 max-pool, global average -> 128 features -> logits."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        layers, cin = [], channels
        for cout in (32, 64, FEATURE_DIM):
            layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = cout
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classify = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.body(x))


@dataclass(frozen=True)
class Classifier:
    net: DomainNet
    path: Path                   # the cached state dict (passed to torch-fidelity as the weights path)
    accuracy: float              # held-out accuracy on the family's test split
    family: str
    resolution: int
    channels: int                # channels the classifier sees (1 for stacked MNIST, applied per channel)


def classifier_path(family: str, resolution: int, channels: int) -> Path:
    return cache_dir("classifiers") / f"{family}-{resolution}px-c{channels}-v{CODE_VERSION}.pt"


def _batched(net: nn.Module, images: torch.Tensor, fn, batch: int = 1024) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([fn(to_float(images[i:i + batch])) for i in range(0, len(images), batch)])


def load_classifier(family: str, resolution: int, channels: int, root: str | Path | None = None) -> Classifier:
    """The family's classifier at this resolution and channel count, trained on first use and cached."""
    if family not in FAMILIES:
        raise GanbenchError(f"no domain classifier for data set family {family!r}; families: {', '.join(FAMILIES)} "
                            "(give InceptionV3 weights with fid_weights for other data)")
    dataset, num_classes, epochs = FAMILIES[family]
    path = classifier_path(family, resolution, channels)
    meta_path = path.with_suffix(".json")
    net = DomainNet(channels, num_classes)
    if path.exists() and meta_path.exists():
        net.load_state_dict(torch.load(path, weights_only=True))
        meta = json.loads(meta_path.read_text())
    else:
        meta = _train_classifier(net, dataset, epochs, resolution, channels, root)
        with atomic_path(path) as tmp:
            torch.save(net.state_dict(), tmp)
        write_json(meta_path, meta)
    net.eval()
    return Classifier(net, path, meta["accuracy"], family, resolution, channels)


def _train_classifier(net: DomainNet, dataset: str, epochs: int, resolution: int, channels: int, root) -> dict:
    train = load_dataset(dataset, "train", resolution, channels, root)
    test = load_dataset(dataset, "test", resolution, channels, root)
    gen = torch.Generator().manual_seed(CLASSIFIER_SEED)
    torch.manual_seed(CLASSIFIER_SEED)
    net.__init__(channels, int(train.labels.max()) + 1)  # fresh weights from the fixed seed
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    steps_per_epoch = max(1, len(train.images) // 128)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=epochs * steps_per_epoch)
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(train.images), generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * 128:(i + 1) * 128]
            x = to_float(train.images[idx])
            if resolution >= 16:  # light augmentation: shifts of up to 2 pixels
                dx, dy = torch.randint(-2, 3, (2,), generator=gen).tolist()
                x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(net(x), train.labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    pred = _batched(net, test.images, lambda x: net(x).argmax(1))
    accuracy = float((pred == test.labels).float().mean())
    return {"accuracy": accuracy, "dataset": dataset, "epochs": epochs, "seed": CLASSIFIER_SEED,
            "n_train": len(train.images), "n_test": len(test.images), "code_version": CODE_VERSION}


class DomainExtractor(FeatureExtractorBase):
    """torch-fidelity's view of a domain classifier: uint8 images in, penultimate features out.

    ``feature_extractor_weights_path`` is the cached classifier; its ``.json`` beside it says the
    family. Images with more channels than the classifier takes (stacked MNIST) are classified one
    channel group at a time, and the features concatenated."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise GanbenchError("the domain extractor needs its classifier's path")
        meta = json.loads(Path(feature_extractor_weights_path).with_suffix(".json").read_text())
        state = torch.load(feature_extractor_weights_path, weights_only=True)
        self.net = DomainNet(state["body.0.weight"].shape[1], state["classify.weight"].shape[0])
        self.net.load_state_dict(state)
        self.meta = meta

    @staticmethod
    def get_provided_features_list():
        return ("penultimate", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "penultimate"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None

    def forward(self, x: torch.Tensor):
        x = to_float(x)
        c = self.net.body[0].in_channels
        groups = x.split(c, dim=1)   # stacked MNIST: each channel through the 1-channel classifier
        feats = torch.cat([self.net.features(g) for g in groups], dim=1)
        logits = torch.cat([self.net.classify(self.net.features(g)) for g in groups], dim=1)
        out = {"penultimate": feats, "logits": logits}
        return tuple(out[name] for name in self.features_list)


if DOMAIN_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(DOMAIN_EXTRACTOR, DomainExtractor)


# ---- choosing an extractor ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Extractor:
    """What torch-fidelity is told, and what a score records."""
    name: str                     # torch-fidelity's registry name
    weights_path: Path
    label: str                    # recorded beside every score, e.g. "domain:mnist-32px-c1" or "inception-v3-compat"
    rgb: bool                     # feed 3 channels (InceptionV3 takes RGB)


def inception_weights(fid_weights: str) -> Path | None:
    """The protocol's weights file, else torch hub's cached copy; never a download."""
    if fid_weights:
        path = Path(fid_weights).expanduser()
        if not path.is_file():
            raise GanbenchError(f"fid_weights={fid_weights!r}: no such file (torch-fidelity's {INCEPTION_FILE})")
        return path
    hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return hub if hub.is_file() else None


def domain_channels(dataset: DatasetSpec, channels: int) -> int:
    """Stacked MNIST (3 channels, MNIST family) is classified one channel at a time."""
    return 1 if dataset.family == "mnist" and channels == 3 else channels


def choose_extractor(choice: str, fid_weights: str, dataset: DatasetSpec, resolution: int, channels: int,
                     root=None) -> Extractor:
    """``auto``: InceptionV3 when its weights are found, else the data set's domain classifier."""
    if choice in ("auto", INCEPTION):
        weights = inception_weights(fid_weights)
        if weights is not None:
            return Extractor(INCEPTION, weights, INCEPTION, rgb=True)
        if choice == INCEPTION:
            raise GanbenchError(f"extractor {INCEPTION!r}: no weights; give fid_weights=PATH (torch-fidelity's "
                                f"{INCEPTION_FILE}) or put the file in {Path(torch.hub.get_dir()) / 'checkpoints'}")
    clf = load_classifier(dataset.family, resolution, domain_channels(dataset, channels), root)
    per = "-per-channel" if clf.channels != channels else ""
    return Extractor(DOMAIN_EXTRACTOR, clf.path, f"domain:{clf.family}-{resolution}px-c{clf.channels}{per}", rgb=False)
