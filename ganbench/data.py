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

Conversions (``fit``), the same for every data set:
  - size: square images are resized straight to the resolution (MNIST's 28 px go to 32 px by an
    antialiased resize, not the zero padding some DCGAN code uses); other shapes have their shorter side
    resized to the resolution, then the centre is cropped (the PyTorch DCGAN example's Resize + CenterCrop);
  - channels: grey -> RGB repeats the channel; RGB -> grey is ITU-R 601 luma (torchvision's weights,
    rounded rather than truncated, so white stays 255).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ganbench.errors import DataMissing, GanbenchError, SpecError, one_line
from ganbench.files import atomic_path
from ganbench.hookspecs import hookimpl

SPLITS = ("train", "test")
RESOLUTIONS = (8, 16, 32, 64, 128)
CHANNELS = (1, 3)
CACHE_VERSION = 2                       # bump when decoding or resizing changes: old cache files are then ignored
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CHUNK_ELEMENTS = 1 << 24                # bound on the elements converted at once (64 MiB as float32)
DECODE_CHUNK = 1024                     # files decoded before they are resized together
# CIFAR-10's label order (its batches.meta). It is also the sorted order of the class names, so the
# image-folder route (ImageFolder's convention: sorted folder names) gives the same labels as the pickles.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor            # uint8 (N, C, H, W), contiguous, on the CPU; shared by every caller: read only
    labels: torch.Tensor | None     # int64 (N,), or None for unlabelled data


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


def cache_dir(*parts: str) -> Path:
    """$GANBENCH_CACHE, else ~/.cache/ganbench; sub-folders created on demand."""
    base = Path(os.environ.get("GANBENCH_CACHE") or Path.home() / ".cache" / "ganbench").expanduser()
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float32 [-1, 1], on the tensor's device; the input is left as it was."""
    return images.to(torch.float32).div(127.5).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255], on the tensor's device: clamped, rounded; NaN (a diverged G) -> 0."""
    x = images.to(torch.float32).add(1.0).mul_(127.5)
    return x.nan_to_num_(0.0).round_().clamp_(0, 255).to(torch.uint8)


def fit(images: torch.Tensor, resolution: int, channels: int) -> torch.Tensor:
    """uint8 (N, C, h, w) -> uint8 (N, channels, resolution, resolution), in chunks that bound the memory.

    C is 1 or 3. Grey -> RGB repeats the channel, RGB -> grey is ITU-R 601 luma; a square image is resized
    to the resolution (antialiased), any other shape has its shorter side resized, then its centre cropped.
    """
    from torchvision.transforms.v2 import functional as TF   # seconds to import: only where images are fitted

    n, c, h, w = images.shape
    if c not in CHANNELS:
        raise SpecError(f"images have {c} channels; expected 1 or 3")
    chunk = max(1, CHUNK_ELEMENTS // (c * h * w))
    out = torch.empty((n, channels, resolution, resolution), dtype=torch.uint8)
    for start in range(0, n, chunk):
        x = images[start:start + chunk]
        if c == 3 and channels == 1:
            x = TF.rgb_to_grayscale(x.float()).round_().clamp_(0, 255).to(torch.uint8)
        if (h, w) != (resolution, resolution):
            x = TF.resize(x, [resolution, resolution] if h == w else resolution, antialias=True)
            x = TF.center_crop(x, [resolution, resolution])
        out[start:start + len(x)] = x  # broadcasts one grey channel to three
    return out


def _fit_each(images: list[torch.Tensor], resolution: int, channels: int) -> torch.Tensor:
    """A list of uint8 (C, h, w) images of any sizes -> one fitted batch, resized together per size."""
    out = torch.empty((len(images), channels, resolution, resolution), dtype=torch.uint8)
    by_shape: dict[tuple, list[int]] = defaultdict(list)
    for i, x in enumerate(images):
        by_shape[tuple(x.shape)].append(i)
    for idx in by_shape.values():
        out[idx] = fit(torch.stack([images[i] for i in idx]), resolution, channels)
    return out


# ---- decoding files, and the disk cache -----------------------------------------------------------------


def _decode(data: bytes, where: str) -> torch.Tensor:
    """Encoded image bytes -> uint8 (3, h, w) RGB, by PIL: torchvision's own decoders are deprecated from
    0.29 (for TorchCodec), and PIL reads every format listed in IMAGE_SUFFIXES (an animated one: its first frame)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode.startswith("I"):  # 16-bit grey (PNG): scale to 8 bits, where convert() would clip
                grey = np.round(np.array(im, dtype=np.float64) / 257.0).clip(0, 255).astype(np.uint8)
                return torch.from_numpy(grey).expand(3, -1, -1).contiguous()
            return torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1).contiguous()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DataMissing(f"{where}: not a readable image ({one_line(exc)})") from None


def _decode_all(items: Iterable[tuple[bytes, str]], n: int, resolution: int, channels: int) -> torch.Tensor:
    """(encoded bytes, where) pairs -> one uint8 batch, decoded and fitted DECODE_CHUNK images at a time."""
    out = torch.empty((n, channels, resolution, resolution), dtype=torch.uint8)
    done, pending = 0, []
    for data, where in items:
        if done + len(pending) == n:
            raise DataMissing(f"{where}: more images than the {n} expected")
        pending.append(_decode(data, where))
        if len(pending) == DECODE_CHUNK:
            out[done:done + len(pending)] = _fit_each(pending, resolution, channels)
            done, pending = done + len(pending), []
    if pending:
        out[done:done + len(pending)] = _fit_each(pending, resolution, channels)
        done += len(pending)
    if done != n:
        raise DataMissing(f"expected {n} images, read {done}")
    return out


def _decode_files(files: list[Path], resolution: int, channels: int) -> torch.Tensor:
    return _decode_all(((f.read_bytes(), str(f)) for f in files), len(files), resolution, channels)


def _signature(files: Iterable[Path]) -> str:
    """A short hash of where the files are, their sizes and modification times: a cache key for their contents."""
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _cached(key: str, make: Callable[[], ImageSet]) -> ImageSet:
    """An ImageSet decoded once and kept as ``decoded/<key>-v<CACHE_VERSION>.pt``, written atomically."""
    path = cache_dir("decoded") / f"{key}-v{CACHE_VERSION}.pt"
    if path.exists():
        try:
            d = torch.load(path, weights_only=True)
            return ImageSet(d["images"], d["labels"])
        except Exception:  # unreadable (another torch's format, a damaged disk): decode again and replace it
            pass
    result = make()
    with atomic_path(path) as tmp:
        torch.save({"images": result.images, "labels": result.labels}, tmp)
    return result


def _extract_once(tarball: Path) -> Path:
    """The archive extracted into the cache, once per archive version. Extraction goes to a temporary folder
    renamed at the end, so a half-done one is never used; of two processes racing, the first rename wins."""
    stem = tarball.name.split(".")[0]
    target = cache_dir("extracted") / f"{stem}-{_signature([tarball])[:8]}"
    if target.is_dir():
        return target
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        try:
            with tarfile.open(tarball) as tf:
                tf.extractall(tmp, filter="data")
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataMissing(f"{tarball}: cannot extract it ({one_line(exc)}); replace the file") from None
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():  # not a lost race: a real failure
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _image_files(folder: Path) -> list[Path]:
    """Image files under a folder, recursively (symbolic links followed), hidden ones skipped, sorted."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in sorted(filenames)
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    return found


def _image_tree(key: str, top: Path, resolution: int, channels: int) -> ImageSet:
    """Images under ``top``, decoded once (disk cache). With class sub-folders (torchvision's ImageFolder
    layout) the sorted folder names are the labels 0, 1, ... and files directly in ``top`` are ignored;
    without sub-folders every image under ``top`` is taken and there are no labels."""
    classes = sorted(p.name for p in top.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[int] | None = [] if classes else None
    for i, c in enumerate(classes):
        found = _image_files(top / c)
        files += found
        labels += [i] * len(found)
    if not classes:
        files = _image_files(top)
    if not files:
        raise DataMissing(f"{top}: no images ({', '.join(IMAGE_SUFFIXES)}) found")
    label_tensor = None if labels is None else torch.tensor(labels, dtype=torch.int64)
    return _cached(f"{key}-{resolution}px-c{channels}-{_signature(files)}",
                   lambda: ImageSet(_decode_files(files, resolution, channels), label_tensor))


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
