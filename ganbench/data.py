"""Data sets: real images as one uint8 tensor (N, C, H, W) at the protocol's resolution and channels.

Each data set is a ``DatasetSpec`` registered through ``ganbench_datasets``. Loading decodes and resizes
once; the result is kept in memory for the process and, for data sets decoded from image files, on disk
under the cache folder. Training converts batches to [-1, 1] floats on the device (``to_float``).

Where the files live: ``--data-root``, else ``$GANBENCH_DATA``, else ``~/.cache/ganbench/data``. Caches
(extracted archives, decoded tensors, classifiers, FID statistics) live under ``$GANBENCH_CACHE``, else
``~/.cache/ganbench``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from ganbench.errors import DataMissing, SpecError
from ganbench.hookspecs import hookimpl

SPLITS = ("train", "test")
CACHE_VERSION = 1


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor            # uint8 (N, C, H, W), contiguous, on the CPU
    labels: torch.Tensor | None     # int64 (N,), or None for unlabelled data


@dataclass(frozen=True)
class DatasetSpec:
    name: str                       # registry name, e.g. "mnist"
    description: str                # one line
    load: Callable[..., ImageSet]   # load(split, resolution, channels, root, seed) -> ImageSet
    num_classes: int | None         # classes (modes) where labelled, else None
    family: str                     # which domain classifier scores it: "digits", "mnist", "fashion-mnist", "cifar10", ""
    needs_root: bool = True         # False for the embedded digits


def data_root(root: str | Path | None = None) -> Path:
    """--data-root, else $GANBENCH_DATA, else ~/.cache/ganbench/data."""
    if root:
        return Path(root).expanduser()
    if os.environ.get("GANBENCH_DATA"):
        return Path(os.environ["GANBENCH_DATA"]).expanduser()
    return Path.home() / ".cache" / "ganbench" / "data"


def cache_dir(*parts: str) -> Path:
    """$GANBENCH_CACHE, else ~/.cache/ganbench; sub-folders created on demand."""
    base = Path(os.environ.get("GANBENCH_CACHE") or Path.home() / ".cache" / "ganbench").expanduser()
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], on the tensor's device."""
    return images.float().div_(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8, clamped and rounded."""
    return images.add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def fit(images: torch.Tensor, resolution: int, channels: int, chunk: int = 4096) -> torch.Tensor:
    """uint8 (N, C, h, w) -> uint8 (N, channels, resolution, resolution): antialiased resize, grey <-> RGB."""
    out = []
    for start in range(0, len(images), chunk):
        x = images[start:start + chunk]
        if x.shape[-1] != resolution or x.shape[-2] != resolution:
            x = TF.resize(x, [resolution, resolution], antialias=True)
        if x.shape[1] == 1 and channels == 3:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] == 3 and channels == 1:
            x = TF.rgb_to_grayscale(x)
        out.append(x.contiguous())
    return torch.cat(out) if out else images.new_zeros((0, channels, resolution, resolution))


# ---- the data sets ----------------------------------------------------------------------------------


def _digits(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
    """scikit-learn's 1,797 8x8 digits (0..16); a fixed split: the first 1,500 train, the rest test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy((d.images * (255.0 / 16.0)).round().astype(np.uint8)).unsqueeze(1)
    labels = torch.from_numpy(d.target.astype(np.int64))
    part = slice(0, 1500) if split == "train" else slice(1500, None)
    return ImageSet(fit(images[part], resolution, channels), labels[part])


def _torchvision_idx(cls_name: str, folder: str):
    def load(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        try:
            ds = cls(str(root), train=split == "train", download=False)
        except RuntimeError:
            try:
                ds = cls(str(root), train=split == "train", download=True)
            except Exception:
                raise DataMissing(
                    f"{folder}: expected {root / folder / 'raw'}/{{train,t10k}}-{{images-idx3,labels-idx1}}-ubyte "
                    "(the 4 IDX files); put them there, set GANBENCH_DATA or --data-root, or allow network access"
                ) from None
        return ImageSet(fit(ds.data.unsqueeze(1), resolution, channels), ds.targets.long())

    return load


_mnist = _torchvision_idx("MNIST", "MNIST")


def _stacked_mnist(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
    """Three MNIST digits drawn independently, one per channel: 1,000 modes; label 100*d0 + 10*d1 + d2."""
    if channels != 3:
        raise SpecError(f"stacked-mnist has 3 channels (one digit each); the protocol asks for {channels}")
    base = _mnist(split, resolution, 1, root, seed)
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    idx = torch.from_numpy(rng.integers(0, len(base.images), size=(len(base.images), 3)))
    images = torch.cat([base.images[idx[:, c]] for c in range(3)], dim=1)
    labels = base.labels[idx[:, 0]] * 100 + base.labels[idx[:, 1]] * 10 + base.labels[idx[:, 2]]
    return ImageSet(images.contiguous(), labels)


def _decode_files(files: list[Path], resolution: int, channels: int) -> torch.Tensor:
    from PIL import Image

    mode = "RGB" if channels == 3 else "L"
    out = torch.empty((len(files), channels, resolution, resolution), dtype=torch.uint8)
    for i, f in enumerate(files):
        with Image.open(f) as im:
            x = torch.from_numpy(np.asarray(im.convert(mode))).reshape(im.height, im.width, channels).permute(2, 0, 1)
        out[i] = TF.resize(x, [resolution, resolution], antialias=True) if x.shape[-2:] != (resolution, resolution) else x
    return out


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _image_tree(top: Path, resolution: int, channels: int) -> ImageSet:
    """Images under ``top``; with class sub-folders (ImageFolder layout), their sorted names are labels."""
    classes = sorted(p.name for p in top.iterdir() if p.is_dir())
    if classes:
        files, labels = [], []
        for i, c in enumerate(classes):
            found = sorted(f for f in (top / c).rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            files += found
            labels += [i] * len(found)
        label_tensor = torch.tensor(labels, dtype=torch.int64)
    else:
        files = sorted(f for f in top.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        label_tensor = None
    if not files:
        raise DataMissing(f"{top}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    return ImageSet(_decode_files(files, resolution, channels), label_tensor)


def _cached(key: str, make: Callable[[], ImageSet]) -> ImageSet:
    """A decoded ImageSet kept on disk under the cache, written atomically."""
    path = cache_dir("decoded") / f"{key}-v{CACHE_VERSION}.pt"
    if path.exists():
        d = torch.load(path, weights_only=True)
        return ImageSet(d["images"], d.get("labels"))
    result = make()
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(fd)
    torch.save({"images": result.images, "labels": result.labels}, tmp)
    os.replace(tmp, path)
    return result


def _cifar10(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
    """torchvision's CIFAR10 pickles under the root, else an image-folder tree (``cifar10/train/<class>/``),
    else the JPEG tarball ``cifar10-jpeg.tar.gz``, extracted once into the cache."""
    if (root / "cifar-10-batches-py").is_dir():
        import torchvision.datasets as tvd

        ds = tvd.CIFAR10(str(root), train=split == "train", download=False)
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2)
        return ImageSet(fit(images, resolution, channels), torch.tensor(ds.targets, dtype=torch.int64))
    tree = root / "cifar10"
    tarball = root / "cifar10-jpeg.tar.gz"
    if not (tree / split).is_dir():
        if not tarball.exists():
            raise DataMissing(
                f"cifar10: expected {root / 'cifar-10-batches-py'} (torchvision's CIFAR10), {tree}/{split}/<class>/*.jpg, "
                f"or {tarball}; put one there or set GANBENCH_DATA / --data-root"
            )
        tree = _extract_once(tarball)
    return _cached(f"cifar10-{split}-{resolution}-c{channels}-{tree.stat().st_mtime_ns}",
                   lambda: _image_tree(tree / split, resolution, channels))


def _extract_once(tarball: Path) -> Path:
    """Extract an archive into the cache once; a half-done extraction never looks done (rename at the end)."""
    target = cache_dir("extracted") / tarball.name.split(".")[0]
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".extract-"))
    try:
        with tarfile.open(tarball) as tf:
            tf.extractall(tmp, filter="data")
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _torchvision_folder(name: str, expected: str, make: Callable[[Path, str], object]):
    def load(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
        try:
            ds = make(root, split)
        except Exception:
            raise DataMissing(f"{name}: expected {root / expected}; download it there (torchvision's layout) "
                              "or set GANBENCH_DATA / --data-root") from None
        return _cached(f"{name}-{split}-{resolution}-c{channels}", lambda: _from_pil_dataset(ds, resolution, channels))

    return load


def _from_pil_dataset(ds, resolution: int, channels: int) -> ImageSet:
    import torchvision.transforms.v2 as T

    to_tensor = T.Compose([T.PILToTensor(), T.Resize(resolution, antialias=True), T.CenterCrop(resolution)])
    images = torch.stack([to_tensor(ds[i][0].convert("RGB" if channels == 3 else "L")) for i in range(len(ds))])
    return ImageSet(images, None)


def _celeba(root: Path, split: str):
    import torchvision.datasets as tvd

    return tvd.CelebA(str(root), split="train" if split == "train" else "test", download=False)


def _lsun_bedroom(root: Path, split: str):
    import torchvision.datasets as tvd

    return tvd.LSUN(str(root / "lsun"), classes=["bedroom_train" if split == "train" else "bedroom_val"])


DATASETS = [
    DatasetSpec("digits", "scikit-learn's 8x8 digits (1,797), embedded, resized", _digits, 10, "digits", needs_root=False),
    DatasetSpec("mnist", "MNIST handwritten digits, 60,000 + 10,000, 28x28 resized", _mnist, 10, "mnist"),
    DatasetSpec("fashion-mnist", "Fashion-MNIST clothing, 60,000 + 10,000, 28x28 resized",
                _torchvision_idx("FashionMNIST", "FashionMNIST"), 10, "fashion-mnist"),
    DatasetSpec("stacked-mnist", "three MNIST digits, one per channel: 1,000 modes", _stacked_mnist, 1000, "mnist"),
    DatasetSpec("cifar10", "CIFAR-10, 50,000 + 10,000 32x32 colour images, 10 classes", _cifar10, 10, "cifar10"),
    DatasetSpec("celeba", "CelebA faces (torchvision layout under the data root)",
                _torchvision_folder("celeba", "celeba/img_align_celeba", _celeba), None, ""),
    DatasetSpec("lsun-bedroom", "LSUN bedrooms (torchvision layout: lsun/bedroom_train_lmdb)",
                _torchvision_folder("lsun-bedroom", "lsun/bedroom_train_lmdb", _lsun_bedroom), None, ""),
]


def _folder_spec(name: str) -> DatasetSpec:
    top = Path(name.split(":", 1)[1]).expanduser()

    def load(split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
        if not top.is_dir():
            raise DataMissing(f"{name}: no folder {top}")
        sub = top / split if (top / split).is_dir() else top   # train/ and test/ if present, else everything
        key = hashlib.sha256(str(sub.resolve()).encode()).hexdigest()[:12]
        return _cached(f"folder-{key}-{resolution}-c{channels}-{sub.stat().st_mtime_ns}",
                       lambda: _image_tree(sub, resolution, channels))

    return DatasetSpec(name, f"images under {top}", load, None, "")


def dataset_spec(name: str) -> DatasetSpec:
    """The registered data set, or an image folder for ``folder:PATH``; unknown names raise UnknownName."""
    if name.startswith("folder:"):
        return _folder_spec(name)
    from ganbench.plugins import catalog

    return catalog().datasets.get(name)


@lru_cache(maxsize=8)
def _load(name: str, split: str, resolution: int, channels: int, root: Path, seed: int) -> ImageSet:
    return dataset_spec(name).load(split, resolution, channels, root, seed)


def load_dataset(name: str, split: str = "train", resolution: int = 32, channels: int = 1,
                 root: str | Path | None = None, seed: int = 0) -> ImageSet:
    """Images and labels of a split, as uint8 at the resolution and channels asked for; loaded once."""
    if split not in SPLITS:
        raise SpecError(f"split {split!r} is not allowed; expected train or test")
    if resolution not in (8, 16, 32, 64, 128) or channels not in (1, 3):
        raise SpecError(f"{name}: resolution {resolution} / channels {channels}: expected 8..128 px and 1 or 3 channels")
    return _load(name, split, resolution, channels, data_root(root), seed)


@hookimpl
def ganbench_datasets() -> list[DatasetSpec]:
    return DATASETS
