"""Data sets on real files: the embedded digits, MNIST, Fashion-MNIST, stacked MNIST and the CIFAR-10 JPEG
tarball from ../shared/datasets (skipped, saying why, where that folder is absent), image folders written
here, and the one-line errors for data that is not there."""

import io
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganbench import data
from ganbench.data import DatasetSpec, ImageSet, cache_dir, dataset_spec, fit, load_dataset, to_float, to_uint8
from ganbench.errors import DataMissing, GanbenchError, SpecError, UnknownName
from ganbench.plugins import catalog

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ganbench-cache")  # one per module: CIFAR-10 is extracted once
    yield path
    shutil.rmtree(path, ignore_errors=True)  # 60,000 extracted JPEGs: not left for pytest's tmp rotation


@pytest.fixture(autouse=True)
def private_cache(module_cache, monkeypatch) -> Path:
    monkeypatch.setenv("GANBENCH_CACHE", str(module_cache))
    return module_cache


@pytest.fixture
def shared(monkeypatch) -> Path:
    if not (SHARED / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data sets not found at {SHARED} (the repository is expected with ../shared beside it)")
    monkeypatch.setenv("GANBENCH_DATA", str(SHARED))
    return SHARED


def offline(monkeypatch, *classes):
    """Make torchvision's downloads fail as they do without a network, without touching the network."""
    import torchvision.datasets as tvd

    def no_network(*args, **kwargs):
        raise RuntimeError("Error downloading:\n<urlopen error [Errno -2] Name or service not known>")

    for name in classes:
        monkeypatch.setattr(getattr(tvd, name), "download", no_network)


def save_png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


# ---- conversions --------------------------------------------------------------------------------------


def test_float_round_trip_and_clamping():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    f = to_float(x)
    assert f.dtype == torch.float32 and f.min() == -1 and f.max() == 1
    assert torch.equal(to_uint8(f), x)
    g = torch.tensor([-3.0, -1.0, 0.0, 0.999, 1.0, 2.5, float("nan")])
    assert to_uint8(g).tolist() == [0, 0, 128, 255, 255, 255, 0]
    before = f.clone()
    to_float(f)
    to_uint8(f)
    assert torch.equal(f, before)  # neither converts in place


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_conversions_stay_on_the_device():
    x = torch.arange(256, dtype=torch.uint8, device="cuda")
    assert to_float(x).device.type == "cuda" and torch.equal(to_uint8(to_float(x)), x)


def test_fit_converts_channels_and_crops_the_centre():
    white_red = torch.tensor([[255, 255, 255], [255, 0, 0]], dtype=torch.uint8).reshape(2, 3, 1, 1).expand(2, 3, 8, 8)
    grey = fit(white_red, 8, 1)
    assert grey.shape == (2, 1, 8, 8) and grey[0].unique().tolist() == [255]  # white stays white
    assert grey[1].unique().tolist() == [76]  # ITU-R 601: 0.299 * 255, rounded
    rgb = fit(grey, 16, 3)
    assert rgb.shape == (2, 3, 16, 16) and torch.equal(rgb[:, 0], rgb[:, 2])
    wide = torch.zeros(1, 1, 8, 16, dtype=torch.uint8)
    wide[..., 4:12] = 255  # a white centre between black sides
    assert fit(wide, 8, 1).unique().tolist() == [255]
    assert fit(wide, 4, 1).shape == (1, 1, 4, 4)


# ---- the embedded digits -----------------------------------------------------------------------------


@pytest.mark.parametrize("resolution,channels", [(16, 1), (16, 3), (32, 1), (32, 3)])
def test_digits_need_no_files(resolution, channels, monkeypatch, tmp_path):
    monkeypatch.setenv("GANBENCH_DATA", str(tmp_path / "nothing-here"))
    train = load_dataset("digits", "train", resolution, channels)
    test = load_dataset("digits", "test", resolution, channels)
    assert train.images.shape == (1500, channels, resolution, resolution) and len(test.images) == 297
    assert train.images.dtype == torch.uint8 and train.images.is_contiguous()
    assert train.labels.dtype == torch.int64 and sorted(train.labels.unique().tolist()) == list(range(10))
    assert train.images.min() == 0 and train.images.max() > 200
    if channels == 3:
        assert torch.equal(train.images[:, 0], train.images[:, 1]) and torch.equal(train.images[:, 0], train.images[:, 2])


def test_digits_at_8px_are_the_originals_scaled_to_255():
    from sklearn.datasets import load_digits

    d = load_digits()
    s = load_dataset("digits", "test", 8, 1)
    expected = torch.from_numpy(np.round(d.images[1500:] * 255 / 16).astype(np.uint8))
    assert torch.equal(s.images[:, 0], expected) and s.labels.tolist() == d.target[1500:].tolist()


# ---- MNIST, Fashion-MNIST, stacked MNIST ---------------------------------------------------------------


def test_mnist_from_the_shared_files(shared):
    train = load_dataset("mnist", "train", 32, 1)
    test = load_dataset("mnist", "test", 32, 1)
    assert train.images.shape == (60000, 1, 32, 32) and test.images.shape == (10000, 1, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert sorted(train.labels.unique().tolist()) == list(range(10)) and test.labels.max() == 9
    assert train.labels[0] == 5 and test.labels[0] == 7  # the first images of the original files
    assert test.images[:, :, :2].float().mean() < 1 and test.images.max() == 255  # dark borders, white ink


def test_fashion_mnist_is_not_mnist(shared):
    digits = load_dataset("mnist", "test", 32, 1)
    clothes = load_dataset("fashion-mnist", "test", 32, 1)
    assert clothes.images.shape == (10000, 1, 32, 32) and sorted(clothes.labels.unique().tolist()) == list(range(10))
    assert not torch.equal(clothes.images[:100], digits.images[:100])
    assert clothes.images.float().mean() > digits.images.float().mean()  # clothes cover more of the frame
    assert dataset_spec("fashion-mnist").family == "fashion-mnist" != dataset_spec("mnist").family


def test_stacked_mnist_is_three_independent_digits_drawn_by_the_seed(shared):
    a = load_dataset("stacked-mnist", "test", 32, 3, seed=0)
    data._load.cache_clear()  # a second draw from scratch, not the in-memory copy
    b = load_dataset("stacked-mnist", "test", 32, 3, seed=0)
    c = load_dataset("stacked-mnist", "test", 32, 3, seed=1)
    assert a.images is not b.images and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels) and not torch.equal(a.images, c.images)
    assert a.images.shape == (10000, 3, 32, 32) and a.images.dtype == torch.uint8
    assert a.labels.dtype == torch.int64 and 0 <= a.labels.min() and a.labels.max() < 1000
    assert len(a.labels.unique()) > 990  # 10,000 uniform draws over 1,000 modes miss about 0.05 of them
    assert len(load_dataset("stacked-mnist", "train", 32, 3, seed=0).images) == 60000
    assert dataset_spec("stacked-mnist").num_classes == 1000 and dataset_spec("stacked-mnist").family == "mnist"
    mnist = load_dataset("mnist", "test", 32, 1)
    for i in range(20):  # each channel is a real MNIST test image whose label is that digit of the triple
        for ch, digit in enumerate((a.labels[i] // 100, a.labels[i] // 10 % 10, a.labels[i] % 10)):
            match = (mnist.images[:, 0] == a.images[i, ch]).flatten(1).all(1).nonzero().flatten()
            assert len(match) >= 1 and digit in mnist.labels[match].tolist()


def test_stacked_mnist_needs_three_channels(shared):
    with pytest.raises(SpecError, match="3 channels"):
        load_dataset("stacked-mnist", "test", 32, 1)


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_missing_idx_files_say_which_and_where(name, folder, tmp_path, monkeypatch):
    offline(monkeypatch, "MNIST", "FashionMNIST")
    with pytest.raises(DataMissing) as err:
        load_dataset(name, "train", 32, 1, root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{name}: expected")
    assert str(tmp_path / folder / "raw") in msg and "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg


# ---- CIFAR-10 ----------------------------------------------------------------------------------------


def test_cifar10_from_the_jpeg_tarball_is_extracted_and_decoded_once(shared, monkeypatch):
    if not (shared / "cifar10-jpeg.tar.gz").is_file():
        pytest.skip(f"no cifar10-jpeg.tar.gz in {shared}")
    t0 = time.perf_counter()
    test = load_dataset("cifar10", "test", 32, 3)
    first = time.perf_counter() - t0
    assert test.images.shape == (10000, 3, 32, 32) and test.images.dtype == torch.uint8
    assert torch.bincount(test.labels).tolist() == [1000] * 10  # CIFAR-10's test set: 1,000 per class
    (extracted,) = cache_dir("extracted").glob("cifar10-jpeg-*")
    assert (extracted / "train").is_dir() and (extracted / "test").is_dir()
    assert tuple(sorted(p.name for p in (extracted / "test").iterdir())) == data.CIFAR10_CLASSES  # labels = CIFAR's
    with Image.open(extracted / "test" / "airplane" / "0000.jpg") as im:  # an independent decoder, same pixels
        assert torch.equal(test.images[0], torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1))
    with Image.open(extracted / "test" / "truck" / "0999.jpg") as im:
        assert torch.equal(test.images[-1], torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1))
    assert len(list(cache_dir("decoded").glob("cifar10-test-32px-c3-*.pt"))) == 1

    def must_not_run(*args, **kwargs):
        raise AssertionError("decoded or extracted again")

    decode_files = data._decode_files
    data._load.cache_clear()  # the disk cache now, not the in-memory one
    monkeypatch.setattr(tarfile, "open", must_not_run)
    monkeypatch.setattr(data, "_decode_files", must_not_run)
    t0 = time.perf_counter()
    again = load_dataset("cifar10", "test", 32, 3)
    assert time.perf_counter() - t0 < first / 3
    assert torch.equal(again.images, test.images) and torch.equal(again.labels, test.labels)
    monkeypatch.setattr(data, "_decode_files", decode_files)  # a new size decodes again, from the same extraction
    grey = load_dataset("cifar10", "test", 16, 1)
    assert grey.images.shape == (10000, 1, 16, 16) and torch.equal(grey.labels, test.labels)
    assert abs(grey.images.float().mean() - test.images.float().mean()) < 5


def test_missing_cifar10_names_every_route(tmp_path, monkeypatch):
    offline(monkeypatch, "CIFAR10")
    with pytest.raises(DataMissing) as err:
        load_dataset("cifar10", "test", 32, 3, root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("cifar10: expected")
    assert str(tmp_path / "cifar-10-batches-py") in msg and str(tmp_path / "cifar10-jpeg.tar.gz") in msg


def test_cifar10_tree_with_other_classes_is_refused(tmp_path):
    save_png(tmp_path / "cifar10" / "train" / "cats" / "0.png", (32, 32), (1, 2, 3))
    with pytest.raises(DataMissing, match="expected \\['airplane'"):
        load_dataset("cifar10", "train", 32, 3, root=tmp_path)


# ---- CelebA and LSUN: not here, so their errors ---------------------------------------------------------


@pytest.mark.parametrize("name,split,expected", [("celeba", "train", "celeba/img_align_celeba"),
                                                 ("lsun-bedroom", "train", "lsun/bedroom_train_lmdb"),
                                                 ("lsun-bedroom", "test", "lsun/bedroom_val_lmdb")])
def test_missing_celeba_and_lsun_say_where(name, split, expected, tmp_path, monkeypatch):
    offline(monkeypatch, "CelebA")
    with pytest.raises(DataMissing) as err:
        load_dataset(name, split, 64, 3, root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"{name}: expected") and str(tmp_path / expected) in msg


def test_lsun_lmdb_is_read_and_centre_cropped(tmp_path):
    lmdb = pytest.importorskip("lmdb", reason="lmdb is not installed (pip install lmdb)")
    db = tmp_path / "lsun" / "bedroom_val_lmdb"
    db.mkdir(parents=True)
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for key, size, colour in [(b"a", (340, 256), (255, 0, 0)), (b"b", (256, 300), (0, 255, 0)),
                                  (b"c", (256, 256), (0, 0, 255))]:
            buf = io.BytesIO()
            Image.new("RGB", size, colour).save(buf, format="webp", lossless=True)
            txn.put(key, buf.getvalue())
    env.close()
    s = load_dataset("lsun-bedroom", "test", 16, 3, root=tmp_path)
    assert s.images.shape == (3, 3, 16, 16) and s.labels is None
    assert s.images.float().mean((2, 3)).argmax(1).tolist() == [0, 1, 2]


# ---- folder:PATH ----------------------------------------------------------------------------------------


def test_folder_with_class_subfolders_has_labels(tmp_path):
    for cls in ("cats", "dogs"):
        for i in range(3):
            save_png(tmp_path / cls / f"{i}.png", (20, 24), (40 * i, 100, 200 if cls == "dogs" else 0))
    (tmp_path / "notes.txt").write_text("not an image")
    s = load_dataset(f"folder:{tmp_path}", "train", 16, 3)
    assert s.images.shape == (6, 3, 16, 16) and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert s.images[3:, 2].float().mean() > 150 and s.images[:3, 2].float().mean() < 20
    assert s.images[:3, 0, 8, 8].tolist() == [0, 40, 80]  # sorted file order within a class


def test_flat_folder_is_unlabelled_and_any_shape_is_cropped(tmp_path):
    save_png(tmp_path / "wide.png", (40, 20), (255, 255, 255))
    save_png(tmp_path / "tall.png", (20, 40), (0, 0, 0))
    save_png(tmp_path / "square.jpg", (64, 64), (255, 255, 255))
    s = load_dataset(f"folder:{tmp_path}", "test", 8, 1)
    assert s.images.shape == (3, 1, 8, 8) and s.labels is None
    assert s.images.float().mean((1, 2, 3)).tolist() == pytest.approx([255, 0, 255], abs=2)  # square, tall, wide


def test_folder_with_split_subfolders_reads_each(tmp_path):
    for i in range(4):
        save_png(tmp_path / "train" / f"{i}.png", (8, 8), (i, i, i))
    save_png(tmp_path / "test" / "0.png", (8, 8), (9, 9, 9))
    assert len(load_dataset(f"folder:{tmp_path}", "train", 8, 3).images) == 4
    assert len(load_dataset(f"folder:{tmp_path}", "test", 8, 3).images) == 1
    (tmp_path / "test" / "0.png").unlink()
    (tmp_path / "test").rmdir()
    data._load.cache_clear()
    with pytest.raises(DataMissing, match="no test/ folder"):
        load_dataset(f"folder:{tmp_path}", "test", 8, 3)


def test_folder_reads_16_bit_grey_and_palette_images(tmp_path):
    Image.fromarray(np.full((8, 8), 32896, dtype=np.uint16)).save(tmp_path / "a16.png")  # half of 65535
    Image.new("RGB", (8, 8), (255, 255, 255)).convert("P").save(tmp_path / "b.gif")
    s = load_dataset(f"folder:{tmp_path}", "train", 8, 3)
    assert s.images[0].unique().tolist() == [128] and s.images[1].unique().tolist() == [255]


def test_folder_cache_follows_the_files(tmp_path):
    save_png(tmp_path / "a.png", (8, 8), (0, 0, 0))
    assert load_dataset(f"folder:{tmp_path}", "train", 8, 1).images.max() == 0
    save_png(tmp_path / "a.png", (9, 9), (255, 255, 255))  # new contents, new size
    data._load.cache_clear()
    assert load_dataset(f"folder:{tmp_path}", "train", 8, 1).images.min() == 255


def test_folder_errors_are_one_line(tmp_path):
    with pytest.raises(DataMissing, match="no folder"):
        load_dataset(f"folder:{tmp_path / 'nope'}", "train", 16, 3)
    with pytest.raises(DataMissing, match="no images"):
        load_dataset(f"folder:{tmp_path}", "train", 16, 3)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(DataMissing) as err:
        load_dataset(f"folder:{tmp_path}", "test", 16, 3)
    assert "broken.png: not a readable image" in str(err.value) and "\n" not in str(err.value)


# ---- names, arguments, the registry ---------------------------------------------------------------------


def test_unknown_data_set_suggests_the_closest():
    with pytest.raises(UnknownName, match="did you mean: mnist"):
        load_dataset("mnsit")


@pytest.mark.parametrize("kwargs,field", [({"resolution": 48}, "resolution"), ({"resolution": 256}, "resolution"),
                                          ({"channels": 2}, "channels"), ({"split": "val"}, "split")])
def test_arguments_are_checked(kwargs, field):
    with pytest.raises(SpecError, match=field):
        load_dataset("digits", **kwargs)


def test_built_in_data_sets_are_registered_through_the_hook():
    cat = catalog()
    names = ["digits", "mnist", "fashion-mnist", "stacked-mnist", "cifar10", "celeba", "lsun-bedroom"]
    assert all(name in cat.datasets and cat.datasets.origin(name) == "ganbench.data" for name in names)
    families = {d.name: d.family for d in cat.datasets if d.name in names}
    assert families == {"digits": "digits", "mnist": "mnist", "fashion-mnist": "fashion-mnist",
                        "stacked-mnist": "mnist", "cifar10": "cifar10", "celeba": "", "lsun-bedroom": ""}
    for d in cat.datasets:
        assert d.description and "\n" not in d.description and d.needs_root == (d.name != "digits")


def test_a_malformed_loader_is_named(monkeypatch):
    def bad(split, resolution, channels, root, seed):
        return ImageSet(torch.zeros(2, channels, resolution, resolution), torch.zeros(3, dtype=torch.int64))

    spec = DatasetSpec("bogus", "returns floats", bad, None, "")
    monkeypatch.setattr(data, "dataset_spec", lambda name: spec)
    with pytest.raises(SpecError, match="'bogus'.*torch.float32.*labels") as err:
        load_dataset("bogus", "train", 16, 1)
    assert isinstance(err.value, GanbenchError)
