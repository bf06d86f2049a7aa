"""Images as tensors: uint8 (N, C, H, W) sets, their conversions (to [-1, 1] floats and back; to a resolution
and a channel count), decoding image files, and the disk cache that makes the decoding happen once per
machine. ``ganbench.data`` builds its data sets from these.

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
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from ganbench.errors import DataMissing, SpecError, one_line
from ganbench.files import atomic_path

CHANNELS = (1, 3)
CACHE_VERSION = 2                       # bump when decoding or resizing changes: old cache files are then ignored
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
CHUNK_ELEMENTS = 1 << 24                # bound on the elements converted at once (64 MiB as float32)
DECODE_CHUNK = 1024                     # files decoded before they are resized together


@dataclass(frozen=True)
class ImageSet:
    images: torch.Tensor            # uint8 (N, C, H, W), contiguous, on the CPU; shared by every caller: read only
    labels: torch.Tensor | None     # int64 (N,), or None for unlabelled data


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
