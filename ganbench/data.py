"""Data sets: real images as one uint8 tensor (N, C, H, W) at the protocol's resolution and channels.

Each data set is a ``DatasetSpec`` registered through ``ganbench_datasets``; ``folder:PATH`` names any image
folder without registering it. ``load_dataset`` loads a split once: files are decoded and resized as a
whole, the result is kept in memory for the process and, for data sets decoded from image files (CIFAR-10
JPEGs, folders, CelebA, LSUN), on disk under the cache folder, so the decoding happens once per machine.
Training converts batches to [-1, 1] floats on its device with ``to_float``; nothing is decoded per step.

Where the files live: ``--data-root``, else ``$GANBENCH_DATA``, else ``~/.cache/ganbench/data``. Caches
(extracted archives, decoded tensors, classifiers, FID statistics) live under ``$GANBENCH_CACHE``, else
``~/.cache/ganbench``. A data set whose files are missing tries torchvision's download where one exists,
and otherwise raises ``DataMissing`` with one line naming the files it expected and where.

Images, their conversions (``fit``), decoding and the disk cache are ``ganbench.images``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ganbench.errors import DataMissing, GanbenchError, SpecError
from ganbench.hookspecs import hookimpl
from ganbench.images import (CHANNELS, ImageSet, _cached, _decode_all, _decode_files, _extract_once, _image_tree,
                             _signature, cache_dir, fit, to_float, to_uint8)

__all__ = ["ImageSet", "DatasetSpec", "cache_dir", "data_root", "dataset_spec", "fit", "load_dataset", "to_float",
           "to_uint8"]   # images and their conversions live in ganbench.images; they are named here too

SPLITS = ("train", "test")
RESOLUTIONS = (8, 16, 32, 64, 128)
# CIFAR-10's label order (its batches.meta). It is also the sorted order of the class names, so the
# image-folder route (ImageFolder's convention: sorted folder names) gives the same labels as the pickles.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class DatasetSpec:
    name: str                       # registry name, e.g. "mnist"
    description: str                # one line
    load: Callable[..., ImageSet]   # load(split, resolution, channels, root, seed) -> ImageSet, called with keywords
    num_classes: int | None         # classes (modes) where labelled, else None
    family: str                     # which domain classifier scores it: "digits", "mnist", "fashion-mnist", "cifar10", ""
    needs_root: bool = True         # False where the data root is not read: embedded digits, folder:PATH


def data_root(root: str | Path | None = None) -> Path:
    """--data-root, else $GANBENCH_DATA, else ~/.cache/ganbench/data."""
    if root:
        return Path(root).expanduser()
    if os.environ.get("GANBENCH_DATA"):
        return Path(os.environ["GANBENCH_DATA"]).expanduser()
    return Path.home() / ".cache" / "ganbench" / "data"


# ---- the data sets ----------------------------------------------------------------------------------


def _digits(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
    """scikit-learn's 1,797 8x8 digits (0..16 -> 0..255); a fixed split: the first 1,500 train, the rest test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    part = slice(0, 1500) if split == "train" else slice(1500, None)
    return ImageSet(fit(images[part], resolution, channels), labels[part].contiguous())


def _idx_digits(name: str, cls_name: str):
    """MNIST and Fashion-MNIST through torchvision: the 4 IDX files under ROOT/<cls_name>/raw."""

    def load(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        try:
            ds = cls(str(root), train=split == "train", download=False)
        except RuntimeError:  # "Dataset not found": try the network, leaving no folders behind if it fails
            made = [d for d in (root, root / cls_name, root / cls_name / "raw") if not d.exists()]
            try:
                ds = cls(str(root), train=split == "train", download=True)
            except Exception:
                for d in reversed(made):
                    shutil.rmtree(d, ignore_errors=True)
                raise DataMissing(
                    f"{name}: expected {', '.join(MNIST_FILES)} in {root / cls_name / 'raw'} and the download failed; "
                    "put the files there, set GANBENCH_DATA or --data-root, or allow network access"
                ) from None
        return ImageSet(fit(ds.data.unsqueeze(1), resolution, channels), ds.targets.long().contiguous())

    return load


def _stacked_mnist(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
    """Three MNIST digits drawn independently (uniformly, with replacement, by a generator seeded from the
    seed and split), one per channel: 1,000 modes, label 100*d0 + 10*d1 + d2; as many images as the split."""
    if channels != 3:
        raise SpecError(f"stacked-mnist has 3 channels (one digit each); {channels} were asked for: set channels = 3")
    base = _load("mnist", split, resolution, 1, root, 0)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    idx = torch.from_numpy(rng.integers(0, len(base.images), size=(len(base.images), 3)))
    images = torch.cat([base.images[idx[:, c]] for c in range(3)], dim=1)
    labels = base.labels[idx[:, 0]] * 100 + base.labels[idx[:, 1]] * 10 + base.labels[idx[:, 2]]
    return ImageSet(images.contiguous(), labels)


def _cifar10(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
    """The first of: torchvision's pickles (ROOT/cifar-10-batches-py), an image-folder tree
    (ROOT/cifar10/<split>/<class>/*.jpg), the JPEG tarball ROOT/cifar10-jpeg.tar.gz (extracted once into the
    cache), a download of the pickles. Labels follow CIFAR10_CLASSES on every route."""
    pickles, tree, tarball = root / "cifar-10-batches-py", root / "cifar10", root / "cifar10-jpeg.tar.gz"
    if pickles.is_dir():
        return _cifar10_pickles(split, resolution, channels, root, download=False)
    if (tree / split).is_dir():
        return _cifar10_tree(tree, split, resolution, channels)
    if tarball.is_file():
        return _cifar10_tree(_extract_once(tarball), split, resolution, channels)
    try:
        return _cifar10_pickles(split, resolution, channels, root, download=True)
    except DataMissing:
        raise DataMissing(
            f"cifar10: expected {pickles} (torchvision's CIFAR10), {tree / split}/<class>/*.jpg or {tarball}, "
            "and the download failed; put one there, set GANBENCH_DATA or --data-root, or allow network access"
        ) from None


def _cifar10_pickles(split: str, resolution: int, channels: int, root: Path, download: bool) -> ImageSet:
    import torchvision.datasets as tvd

    try:
        ds = tvd.CIFAR10(str(root), train=split == "train", download=download)
    except Exception:
        raise DataMissing(f"cifar10: {root / 'cifar-10-batches-py'} is missing or fails torchvision's MD5 check; "
                          "replace it with the original python version of CIFAR-10") from None
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2)
    return ImageSet(fit(images, resolution, channels), torch.tensor(ds.targets, dtype=torch.int64))


def _cifar10_tree(top: Path, split: str, resolution: int, channels: int) -> ImageSet:
    found = sorted(p.name for p in (top / split).iterdir() if p.is_dir() and not p.name.startswith("."))
    if tuple(found) != CIFAR10_CLASSES:
        raise DataMissing(f"cifar10: {top / split} has class folders {found}; expected {list(CIFAR10_CLASSES)}")
    return _image_tree(f"cifar10-{split}", top / split, resolution, channels)


def _celeba(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
    """CelebA's aligned faces through torchvision (its split file and integrity check); train 162,770, test
    19,962 images of 178x218, shorter side resized and centre cropped. Unlabelled."""
    import torchvision.datasets as tvd

    kwargs = dict(split=split, target_type=[])
    try:
        ds = tvd.CelebA(str(root), download=False, **kwargs)
    except RuntimeError:  # "Dataset not found or corrupted": try the network (Google Drive, needs gdown)
        try:
            ds = tvd.CelebA(str(root), download=True, **kwargs)
        except Exception:
            raise DataMissing(
                f"celeba: expected {root / 'celeba' / 'img_align_celeba'}/*.jpg and the 5 annotation files beside it "
                "(list_eval_partition.txt, ...; torchvision's CelebA layout) and the download failed; "
                "put them there or set GANBENCH_DATA / --data-root"
            ) from None
    files = [root / "celeba" / "img_align_celeba" / f for f in ds.filename]
    return _cached(f"celeba-{split}-{resolution}px-c{channels}-{_signature(files[:1] + files[-1:])}",
                   lambda: ImageSet(_decode_files(files, resolution, channels), None))


def _lsun_bedroom(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
    """LSUN bedrooms from LSUN's own lmdb (train 3,033,042 images, test = LSUN's 300 validation images),
    read directly with lmdb: torchvision's LSUN class writes a key cache into the working directory.
    Every image is held in memory: about 12 KiB each at 64 px, 37 GiB for the full training set."""
    db = root / "lsun" / f"bedroom_{'train' if split == 'train' else 'val'}_lmdb"
    if not (db / "data.mdb").is_file():
        raise DataMissing(f"lsun-bedroom: expected {db}/data.mdb (from LSUN's download.py, unzipped); "
                          "put it there or set GANBENCH_DATA / --data-root")
    try:
        import lmdb
    except ImportError:
        raise GanbenchError("lsun-bedroom: reading LSUN needs the lmdb package: pip install lmdb") from None

    def decode() -> ImageSet:
        env = lmdb.open(str(db), readonly=True, lock=False, readahead=False, meminit=False, max_readers=1)
        try:
            with env.begin(write=False) as txn:
                n = txn.stat()["entries"]
                values = ((bytes(v), f"{db}[{k.decode(errors='replace')}]") for k, v in txn.cursor())
                return ImageSet(_decode_all(values, n, resolution, channels), None)
        finally:
            env.close()

    return _cached(f"lsun-bedroom-{split}-{resolution}px-c{channels}-{_signature([db / 'data.mdb'])}", decode)


def _folder_spec(name: str) -> DatasetSpec:
    """``folder:PATH``: the images under PATH. With ``train/`` and ``test/`` sub-folders each split reads its
    own; otherwise both splits are every image (the usual reference set for an unconditional GAN)."""
    top = Path(name.split(":", 1)[1]).expanduser()

    def load(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
        if not top.is_dir():
            raise DataMissing(f"{name}: no folder {top}")
        present = [s for s in SPLITS if (top / s).is_dir()]
        if present and split not in present:
            raise DataMissing(f"{name}: {top} has a {present[0]}/ folder but no {split}/ folder")
        key = f"folder-{hashlib.sha256(str(top.resolve()).encode()).hexdigest()[:8]}-{split}"
        return _image_tree(key, top / split if present else top, resolution, channels)

    return DatasetSpec(name, f"images under {top}", load, None, "", needs_root=False)


DATASETS = [
    DatasetSpec("digits", "scikit-learn's 8x8 digits (1,500 train + 297 test), embedded, resized",
                _digits, 10, "digits", needs_root=False),
    DatasetSpec("mnist", "MNIST handwritten digits, 60,000 + 10,000, 28x28 resized",
                _idx_digits("mnist", "MNIST"), 10, "mnist"),
    DatasetSpec("fashion-mnist", "Fashion-MNIST clothing, 60,000 + 10,000, 28x28 resized",
                _idx_digits("fashion-mnist", "FashionMNIST"), 10, "fashion-mnist"),
    DatasetSpec("stacked-mnist", "three MNIST digits, one per channel: 1,000 modes (3 channels only)",
                _stacked_mnist, 1000, "mnist"),
    DatasetSpec("cifar10", "CIFAR-10, 50,000 + 10,000 32x32 colour images, 10 classes",
                _cifar10, 10, "cifar10"),
    DatasetSpec("celeba", "CelebA aligned faces, 162,770 + 19,962, centre cropped (torchvision's layout)",
                _celeba, None, ""),
    DatasetSpec("lsun-bedroom", "LSUN bedrooms from lmdb, 3,033,042 + 300, centre cropped (all kept in memory)",
                _lsun_bedroom, None, ""),
]


def dataset_spec(name: str) -> DatasetSpec:
    """The registered data set, or an image folder for ``folder:PATH``; unknown names raise UnknownName."""
    if name.startswith("folder:"):
        return _folder_spec(name)
    from ganbench.plugins import catalog

    return catalog().datasets.get(name)


@lru_cache(maxsize=8)
def _load(name: str, split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
    result = dataset_spec(name).load(split=split, resolution=resolution, channels=channels, root=root, seed=seed)
    return _checked(name, result, resolution, channels)


def _checked(name: str, s: ImageSet, resolution: int, channels: int) -> ImageSet:
    """A plugin's loader must return what the DatasetSpec promises; say what is wrong, naming the data set."""
    shape = (channels, resolution, resolution)
    problems = [
        (s.images.dtype != torch.uint8, f"images are {s.images.dtype}, not torch.uint8"),
        (s.images.ndim != 4 or tuple(s.images.shape[1:]) != shape,
         f"images have shape {tuple(s.images.shape)}, not (N, {channels}, {resolution}, {resolution})"),
        (s.labels is not None and (s.labels.dtype != torch.int64 or s.labels.shape != s.images.shape[:1]),
         "labels are not int64 with one per image"),
    ]
    wrong = [msg for bad, msg in problems if bad]
    if wrong:
        raise SpecError(f"data set {name!r} returned a malformed ImageSet: {'; '.join(wrong)}")
    if not s.images.is_contiguous() or s.images.device.type != "cpu":
        s = ImageSet(s.images.cpu().contiguous(), s.labels)
    return s


def load_dataset(name: str, split: str = "train", resolution: int = 32, channels: int = 1,
                 root: str | Path | None = None, seed: int = 0) -> ImageSet:
    """Images and labels of a split as uint8 at the resolution and channels asked for; loaded once per
    process (and decoded once per machine). ``seed`` matters only to data sets drawn at random
    (stacked-mnist). The tensors are shared between callers: do not modify them in place."""
    if split not in SPLITS:
        raise SpecError(f"split {split!r} is not allowed; expected one of {', '.join(SPLITS)}")
    if resolution not in RESOLUTIONS:
        raise SpecError(f"resolution {resolution!r} is not allowed; expected one of {', '.join(map(str, RESOLUTIONS))}")
    if channels not in CHANNELS:
        raise SpecError(f"channels {channels!r} is not allowed; expected 1 or 3")
    return _load(name, split, resolution, channels, data_root(root), seed)


@hookimpl
def ganbench_datasets() -> list[DatasetSpec]:
    return DATASETS
