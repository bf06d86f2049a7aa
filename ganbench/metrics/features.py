"""Feature extractors: what FID, KID, precision/recall, mode counting and sample drift look through.

Both kinds are torch-fidelity feature extractors, so torch-fidelity's own code computes every score:

- ``inception-v3-compat`` (torch-fidelity's InceptionV3, 2048-d pool features), when its weights are on
  disk: the protocol's ``fid_weights`` path, else the file torch-fidelity itself would use in torch hub's
  cache (``<torch hub dir>/checkpoints/weights-inception-2015-12-05-6726825d.pth``). ganbench never
  downloads them.
- A **domain classifier** per labelled data set family (digits, mnist, fashion-mnist, cifar10): a small
  CNN (``DomainNet``) trained once on the family's training split and labels, at the protocol's
  resolution and channels, with a fixed seed. It is cached under ``$GANBENCH_CACHE/classifiers`` (else
  ``~/.cache/ganbench/classifiers``) as ``<family>-<res>px-c<ch>-v<CODE_VERSION>.pt``, with a ``.json``
  beside it holding its held-out accuracy on the family's test split. Each one is registered with
  torch-fidelity under its own name, ``ganbench-domain-<family>-<res>px-c<ch>-v<CODE_VERSION>``, so
  torch-fidelity's cache keys name the exact classifier. The same code and seed still train different weights
  on another machine or at another thread count (floating-point sums in another order), and every score
  moves with them: each score records a digest of the weights too (``Extractor.digest``), real-image
  statistics are cached under it, and the report warns when one protocol's runs were scored through
  different weights. Its 128 penultimate units are the features
  (layer ``"features"``), its logits give the class. Stacked MNIST (3 channels, family mnist) uses the
  1-channel MNIST classifier on each channel: features concatenated (384-d), mode = the digit triple.

- A **plugin's extractor** (``ganbench.metrics.ExtractorSpec``, registered through ``ganbench_extractors``)
  for the data sets it serves, by name or by family: a torch-fidelity feature extractor class and the layer
  to read, registered with torch-fidelity as ``ganbench-plugin-<name>``.

The protocol's ``extractor`` picks one: ``"auto"`` InceptionV3 when its weights are found, else the data
set's own (a plugin extractor serving it, else the domain classifier of its family); ``"domain"`` always the
data set's own; ``"inception-v3-compat"`` InceptionV3 or an error saying where to put the weights. Among
plugin extractors, one serving the data set by name comes before one serving its family, and the first
registered before later ones. The choice is recorded with every score (``Extractor.label``).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from ganbench.data import DatasetSpec, cache_dir, load_dataset, to_float
from ganbench.errors import GanbenchError
from ganbench.metrics import ExtractorSpec
from ganbench.protocol import Protocol
from ganbench.files import atomic_path, file_lock, write_json

CODE_VERSION = 2                 # bump when DomainNet or its training changes: cached classifiers are then retrained
CLASSIFIER_SEED = 1234           # weights, batch order and augmentation of every classifier
FEATURE_DIM = 128                # penultimate units of a domain classifier
DOMAIN_LAYER = "features"        # torch-fidelity feature layer of a domain classifier used by FID, KID and PRC
INCEPTION = "inception-v3-compat"
INCEPTION_LAYER = "2048"         # InceptionV3's pool features, the standard FID layer
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"   # torch-fidelity's file in torch hub's cache


class ExtractorMissing(GanbenchError):
    """No feature extractor can score this protocol's data here."""


def weights_digest(path: Path | None) -> str:
    """The first 12 hex digits of a sha256 over the weights a file holds ("" without a file): what tells two
    classifiers of one name apart. Over the tensors (names, dtypes, shapes, values), not the file's bytes:
    ``torch.save`` names the archive after the file it writes, so one state dict saved twice differs in
    bytes. Read once per process per file version."""
    if path is None or not path.is_file():
        return ""
    stat = path.stat()
    return _digest(str(path), stat.st_ino, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _digest(path: str, inode: int, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:     # a plugin's weights in some other format: its bytes, then
        state = None
    if not (isinstance(state, dict) and all(isinstance(t, torch.Tensor) for t in state.values())):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()[:12]
    for name in sorted(state):
        tensor = state[name].detach()
        h.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        h.update(tensor.reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:12]


@dataclass(frozen=True)
class Recipe:
    """How a family's classifier is trained: on which data set, for how long, in what batches."""
    dataset: str                 # the labelled data set whose train split it learns and test split scores it
    num_classes: int
    epochs: int
    batch_size: int


FAMILIES: dict[str, Recipe] = {
    "digits": Recipe("digits", 10, epochs=20, batch_size=64),          # 1,500 images: ~8 s at 32 px, 97-98 %
    "mnist": Recipe("mnist", 10, epochs=2, batch_size=128),            # ~25 s of one core at 32 px, ~99.2 %
    "fashion-mnist": Recipe("fashion-mnist", 10, epochs=3, batch_size=128),   # ~45 s, ~90 %
    "cifar10": Recipe("cifar10", 10, epochs=10, batch_size=128),       # ~2 min, 77.6 %
}
LR = 4e-3                        # peak of the one-cycle schedule (Adam)


class DomainNet(nn.Module):
    """Strided 3x3 convolutions, each with BN and ReLU, halve the image until it is 4x4 (32, 64, then 128
    channels); flattened, one linear layer with ReLU gives the ``FEATURE_DIM`` features; one more the logits.
    At 32 px: 1x32x32 -> 32x16x16 -> 64x8x8 -> 128x4x4 -> 128 -> 10, about 2.7 M multiply-adds an image."""

    def __init__(self, channels: int, num_classes: int, resolution: int):
        super().__init__()
        layers: list[nn.Module] = []
        cin, side, width = channels, resolution, 32
        while side > 4:
            layers += [nn.Conv2d(cin, width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width),
                       nn.ReLU(inplace=True)]
            cin, side, width = width, side // 2, min(2 * width, 128)
        self.body = nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * 16, FEATURE_DIM), nn.ReLU(inplace=True))
        self.classify = nn.Linear(FEATURE_DIM, num_classes)
        self.channels, self.num_classes, self.resolution = channels, num_classes, resolution

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.body(x))

    def grouped(self, images: torch.Tensor) -> list[torch.Tensor]:
        """uint8 (N, C, H, W) -> float [-1, 1] channel groups of the width this net takes: one group, or one per
        channel for stacked MNIST (3 channels through a 1-channel net)."""
        if images.shape[-1] != self.resolution or images.shape[1] % self.channels:
            raise GanbenchError(f"domain classifier for {self.channels} channel(s) at {self.resolution} px "
                                f"cannot read images of shape {tuple(images.shape[1:])}")
        return list(to_float(images).split(self.channels, dim=1))


@dataclass(frozen=True)
class Classifier:
    net: DomainNet               # in eval mode
    path: Path                   # the cached state dict (torch-fidelity's feature_extractor_weights_path)
    accuracy: float              # held-out accuracy on the family's test split
    family: str
    resolution: int
    channels: int                # channels the net takes (1 for stacked MNIST, applied per channel)

    @property
    def name(self) -> str:
        """The torch-fidelity extractor name: every input of its training is in it (its weights are not:
        ``digest``)."""
        return f"ganbench-domain-{self.family}-{self.resolution}px-c{self.channels}-v{CODE_VERSION}"

    @property
    def digest(self) -> str:
        return weights_digest(self.path)


def classifier_path(family: str, resolution: int, channels: int) -> Path:
    return cache_dir("classifiers") / f"{family}-{resolution}px-c{channels}-v{CODE_VERSION}.pt"


def _read_cached(path: Path) -> tuple[DomainNet, dict] | None:
    meta_path = path.with_suffix(".json")
    if not (path.exists() and meta_path.exists()):
        return None
    meta = json.loads(meta_path.read_text())
    net = DomainNet(meta["channels"], meta["num_classes"], meta["resolution"])
    net.load_state_dict(torch.load(path, weights_only=True))
    return net.eval(), meta


def load_classifier(family: str, resolution: int, channels: int, root: str | Path | None = None) -> Classifier:
    """The family's classifier at this resolution and channel count: read from the cache, or trained now
    (under a lock, so that parallel runs train it once) and cached; weights first, the ``.json`` with
    the held-out accuracy last, each written atomically, so a half-written classifier never looks done."""
    if family not in FAMILIES:
        raise ExtractorMissing(
            f"no domain classifier for data set family {family!r} (families: {', '.join(FAMILIES)}); for "
            f"other data give InceptionV3 weights: --set fid_weights=PATH (torch-fidelity's {INCEPTION_FILE}), or "
            "install a plugin extractor serving the family (the ganbench_extractors hook: docs/plugins.md)")
    path = classifier_path(family, resolution, channels)
    cached = _read_cached(path)
    if cached is None:
        with file_lock(path.with_suffix(".lock")):
            cached = _read_cached(path)   # another process may have trained it while we waited
            if cached is None:
                net, meta = train_classifier(FAMILIES[family], resolution, channels, root)
                with atomic_path(path) as tmp:
                    torch.save(net.state_dict(), tmp)
                write_json(path.with_suffix(".json"), {**meta, "family": family})
                cached = net, meta
    net, meta = cached
    return Classifier(net, path, float(meta["accuracy"]), family, resolution, channels)


def train_classifier(recipe: Recipe, resolution: int, channels: int, root=None) -> tuple[DomainNet, dict]:
    """Adam with a one-cycle schedule over ``recipe.epochs`` epochs, random shifts of up to resolution/16
    pixels (one per batch); returns the net in eval mode and what to record beside it."""
    train = load_dataset(recipe.dataset, "train", resolution, channels, root)
    test = load_dataset(recipe.dataset, "test", resolution, channels, root)
    gen = torch.Generator().manual_seed(CLASSIFIER_SEED)
    with torch.random.fork_rng(devices=[]):          # the caller's global RNG is left as it was
        torch.manual_seed(CLASSIFIER_SEED)
        net = DomainNet(channels, recipe.num_classes, resolution)
    n, b = len(train.images), recipe.batch_size
    steps_per_epoch = n // b
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=recipe.epochs * steps_per_epoch)
    shift = resolution // 16
    net.train()
    for _ in range(recipe.epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(steps_per_epoch):
            idx = perm[i * b:(i + 1) * b]
            x = to_float(train.images[idx])
            if shift:
                dy, dx = torch.randint(-shift, shift + 1, (2,), generator=gen).tolist()
                x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(net(x), train.labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    with torch.no_grad():
        pred = torch.cat([net(to_float(test.images[i:i + 1000])).argmax(1) for i in range(0, len(test.images), 1000)])
    meta = {"accuracy": float((pred == test.labels).float().mean()), "dataset": recipe.dataset,
            "resolution": resolution, "channels": channels, "num_classes": recipe.num_classes,
            "epochs": recipe.epochs, "batch_size": b, "seed": CLASSIFIER_SEED, "n_train": n,
            "n_test": len(test.images), "code_version": CODE_VERSION}
    return net, meta


class DomainExtractor(FeatureExtractorBase):
    """torch-fidelity's view of a domain classifier: uint8 images in, ``features`` and ``logits`` out.

    ``feature_extractor_weights_path`` is the cached classifier (its ``.json`` beside it says its shape).
    Images with a multiple of the classifier's channels (stacked MNIST) go through it one channel group at
    a time; the outputs are concatenated."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise GanbenchError(f"feature extractor {name!r} needs its classifier's path "
                                "(feature_extractor_weights_path)")
        cached = _read_cached(Path(feature_extractor_weights_path))
        if cached is None:
            raise GanbenchError(f"{feature_extractor_weights_path}: no cached classifier (or its .json) there")
        self.net = cached[0]

    @staticmethod
    def get_provided_features_list():
        return (DOMAIN_LAYER, "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return DOMAIN_LAYER

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None

    def forward(self, x: torch.Tensor):
        feats = [self.net.features(g) for g in self.net.grouped(x)]
        out = {DOMAIN_LAYER: torch.cat(feats, dim=1),
               "logits": torch.cat([self.net.classify(f) for f in feats], dim=1)}
        return tuple(out[name] for name in self.features_list)


# ---- choosing an extractor ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Extractor:
    """What torch-fidelity is told, and what a score records."""
    name: str                    # torch-fidelity's registry name
    weights_path: Path | None    # feature_extractor_weights_path (None: the extractor loads no file)
    layer: str                   # feature layer for FID, KID and precision/recall alike
    rgb: bool                    # grey images are repeated to 3 channels (InceptionV3 takes RGB)
    batch_size: int              # images per forward pass
    label: str                   # recorded beside every score
    cache_key: str               # names these features in cache files: changes whenever the features would

    @property
    def digest(self) -> str:
        """Its weights file's digest, recorded beside every score ("" when it loads no file)."""
        return weights_digest(self.weights_path)

    @property
    def weights_arg(self) -> str | None:
        """torch-fidelity's ``feature_extractor_weights_path``."""
        return None if self.weights_path is None else str(self.weights_path)


def inception_weights(fid_weights: str = "") -> Path | None:
    """The protocol's weights file, else torch hub's cached copy of torch-fidelity's; never a download."""
    if fid_weights:
        path = Path(fid_weights).expanduser()
        if not path.is_file():
            raise ExtractorMissing(f"fid_weights={fid_weights!r}: no such file (expected torch-fidelity's "
                                   f"{INCEPTION_FILE} or a state dict of the same network)")
        return path
    hub = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    return hub if hub.is_file() else None


def domain_channels(dataset: DatasetSpec, channels: int) -> int:
    """Channels the family's classifier takes: all of them, or one at a time when each channel is a sample of
    the family on its own (stacked MNIST: mnist family, 3 channels, 10 ** 3 classes). MNIST at 3 channels
    (grey repeated) has 10 classes and gets a 3-channel classifier."""
    recipe = FAMILIES.get(dataset.family)
    if channels > 1 and recipe is not None and dataset.num_classes == recipe.num_classes ** channels:
        return 1
    return channels


def domain_classifier(protocol: Protocol, dataset: DatasetSpec, root=None) -> Classifier:
    return load_classifier(dataset.family, protocol.resolution, domain_channels(dataset, protocol.channels), root)


def plugin_extractor_for(dataset: DatasetSpec) -> ExtractorSpec | None:
    """The registered extractor serving ``dataset``: one naming it before one naming its family, the first
    registered among equals; None when none serves it."""
    from ganbench.plugins import catalog

    ranked = [(spec.serves(dataset), i, spec) for i, spec in enumerate(catalog().extractors)]
    ranked = sorted((r for r in ranked if r[0]), key=lambda r: (-r[0], r[1]))
    return ranked[0][2] if ranked else None


def extractor_problem(protocol: Protocol, dataset: DatasetSpec) -> str:
    """Why ``choose_extractor`` would fail for this protocol and data set ("" when it would not), without
    training or loading anything: no InceptionV3 weights where they are asked for, a plugin extractor's own
    ``problem``, or nothing that can score the data set's family."""
    try:
        weights = inception_weights(protocol.fid_weights) if protocol.extractor in ("auto", INCEPTION) else None
    except ExtractorMissing as exc:
        return str(exc)
    if weights is not None:
        return ""
    if protocol.extractor == INCEPTION:
        return (f"extractor {INCEPTION!r} has no weights here; give --set fid_weights=PATH (torch-fidelity's "
                f"{INCEPTION_FILE}) or use --set extractor=domain")
    plugin = plugin_extractor_for(dataset)
    if plugin is not None:
        problem = plugin.problem(protocol, dataset) if plugin.problem is not None else ""
        return f"extractor {plugin.name!r} cannot score data set {dataset.name!r} here: {problem}" if problem else ""
    if dataset.family not in FAMILIES:
        return (f"it needs a feature extractor, and none can score data set {dataset.name!r} (family "
                f"{dataset.family or 'none'!r}): ganbench has domain classifiers for the families "
                f"{', '.join(FAMILIES)} only, no plugin extractor serves it (a plugin adds one with the "
                "ganbench_extractors hook, for its family or its name: docs/plugins.md), and there are no InceptionV3 "
                f"weights (give --set fid_weights=PATH, torch-fidelity's {INCEPTION_FILE}); or leave the metric out "
                "(--set metrics=[...])")
    return ""


def _plugin_extractor(spec: ExtractorSpec, protocol: Protocol, dataset: DatasetSpec, root=None) -> Extractor:
    """A plugin's extractor, its weights prepared and its class registered with torch-fidelity."""
    problem = spec.problem(protocol, dataset) if spec.problem is not None else ""
    if problem:
        raise ExtractorMissing(f"extractor {spec.name!r} cannot score data set {dataset.name!r} here: {problem}")
    cls = spec.extractor_class()
    if not (isinstance(cls, type) and issubclass(cls, FeatureExtractorBase)):
        raise GanbenchError(f"extractor {spec.name!r}: feature_extractor must be a subclass of torch-fidelity's "
                            f"FeatureExtractorBase, not {cls!r}")
    if spec.layer not in cls.get_provided_features_list():
        raise GanbenchError(f"extractor {spec.name!r}: layer {spec.layer!r} is not one of the features "
                            f"{cls.__name__} provides ({', '.join(cls.get_provided_features_list())})")
    weights = Path(spec.weights(protocol, dataset, root)) if spec.weights is not None else None
    name = f"ganbench-plugin-{spec.name}"
    if FEATURE_EXTRACTORS_REGISTRY.get(name) is not cls:   # registered once per process (again if reloaded)
        FEATURE_EXTRACTORS_REGISTRY.pop(name, None)
        register_feature_extractor(name, cls)
    label = f"{spec.name}-v{spec.version}"
    digest = weights_digest(weights)
    return Extractor(name, weights, spec.layer, rgb=spec.rgb, batch_size=spec.batch_size, label=label,
                     cache_key=label + (f"-{digest}" if digest else ""))


def choose_extractor(protocol: Protocol, dataset: DatasetSpec, root=None) -> Extractor:
    """The protocol's extractor (see the module's docstring), registered with torch-fidelity."""
    if protocol.extractor in ("auto", INCEPTION):
        weights = inception_weights(protocol.fid_weights)
        if weights is not None:
            stat = weights.stat()
            return Extractor(INCEPTION, weights, INCEPTION_LAYER, rgb=True, batch_size=64, label=INCEPTION,
                             cache_key=f"{INCEPTION}-{weights.stem}-{stat.st_size}")
        if protocol.extractor == INCEPTION:
            raise ExtractorMissing(
                f"extractor {INCEPTION!r}: no weights here; give --set fid_weights=PATH (torch-fidelity's "
                f"{INCEPTION_FILE}) or put that file in {Path(torch.hub.get_dir()) / 'checkpoints'}, "
                "or use --set extractor=domain")
    plugin = plugin_extractor_for(dataset)
    if plugin is not None:
        return _plugin_extractor(plugin, protocol, dataset, root)
    clf = domain_classifier(protocol, dataset, root)
    if clf.name not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(clf.name, DomainExtractor)
    label = clf.name + ("-per-channel" if clf.channels != protocol.channels else "")
    return Extractor(clf.name, clf.path, DOMAIN_LAYER, rgb=False, batch_size=500, label=label,
                     cache_key=f"{clf.name}-{clf.digest}")


class ImageTensor(torch.utils.data.Dataset):
    """uint8 (N, C, H, W) as torch-fidelity reads a Dataset: one uint8 CHW tensor per item; grey images
    repeated to RGB when ``rgb``."""

    def __init__(self, images: torch.Tensor, rgb: bool = False):
        self.images = images.expand(-1, 3, -1, -1) if rgb and images.shape[1] == 1 else images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def extract_features(images: torch.Tensor, extractor: Extractor, cuda: bool = False) -> torch.Tensor:
    """uint8 (N, C, H, W) -> (N, D) features of the extractor's layer, through torch-fidelity's own code
    (the very path ``calculate_metrics`` takes)."""
    fe = create_feature_extractor(extractor.name, [extractor.layer], cuda=cuda, verbose=False,
                                  feature_extractor_weights_path=extractor.weights_arg)
    feats = get_featuresdict_from_dataset(ImageTensor(images, extractor.rgb), fe, extractor.batch_size, cuda,
                                          save_cpu_ram=True, verbose=False)
    return feats[extractor.layer]
