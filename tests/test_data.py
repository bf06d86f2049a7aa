import time

import pytest
import torch
from PIL import Image

from ganbench.data import cache_dir, dataset_spec, load_dataset, to_float, to_uint8
from ganbench.errors import DataMissing, SpecError, UnknownName

from conftest import SHARED, needs_shared


@pytest.mark.parametrize("resolution,channels", [(16, 1), (32, 3)])
def test_digits_embedded(resolution, channels):
    train = load_dataset("digits", "train", resolution, channels)
    test = load_dataset("digits", "test", resolution, channels)
    assert train.images.shape == (1500, channels, resolution, resolution) and train.images.dtype == torch.uint8
    assert len(test.images) == 297 and set(train.labels.tolist()) == set(range(10))
    assert train.images.max() > 200 and train.images.min() == 0
    if channels == 3:
        assert torch.equal(train.images[:, 0], train.images[:, 2])  # grey repeated


def test_float_round_trip():
    x = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    f = to_float(x)
    assert f.min() == -1 and f.max() == 1
    assert torch.equal(to_uint8(f), x)


def test_mnist_and_fashion_from_the_shared_files():
    needs_shared()
    m = load_dataset("mnist", "train", 32, 1)
    t = load_dataset("mnist", "test", 32, 1)
    f = load_dataset("fashion-mnist", "test", 32, 1)
    assert m.images.shape == (60000, 1, 32, 32) and len(t.images) == 10000
    assert m.labels.min() == 0 and m.labels.max() == 9 and m.labels.dtype == torch.int64
    assert not torch.equal(t.images[:100], f.images[:100])
    assert f.images.float().mean() > t.images.float().mean()  # clothes cover more of the frame than digits


def test_stacked_mnist_is_three_independent_digits():
    needs_shared()
    a = load_dataset("stacked-mnist", "test", 32, 3, seed=0)
    b = load_dataset("stacked-mnist", "test", 32, 3, seed=0)
    c = load_dataset("stacked-mnist", "test", 32, 3, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)
    assert not torch.equal(a.labels, c.labels)
    assert a.images.shape == (10000, 3, 32, 32) and 0 <= a.labels.min() and a.labels.max() < 1000
    assert len(a.labels.unique()) > 990
    mnist = load_dataset("mnist", "test", 32, 1)
    # each channel is a real MNIST digit whose label is that digit of the triple
    for i in range(5):
        for ch, digit in enumerate((a.labels[i] // 100, a.labels[i] // 10 % 10, a.labels[i] % 10)):
            match = (mnist.images[:, 0] == a.images[i, ch]).flatten(1).all(1).nonzero().flatten()
            assert len(match) >= 1 and mnist.labels[match[0]] == digit
    with pytest.raises(SpecError, match="3 channels"):
        load_dataset("stacked-mnist", "test", 32, 1)


def test_cifar10_from_the_jpeg_tarball_is_extracted_once():
    if not (SHARED / "cifar10-jpeg.tar.gz").exists():
        pytest.skip("no CIFAR-10 tarball in ../shared/datasets")
    t0 = time.perf_counter()
    test = load_dataset("cifar10", "test", 32, 3)
    first = time.perf_counter() - t0
    assert test.images.shape == (10000, 3, 32, 32) and test.images.dtype == torch.uint8
    assert sorted(test.labels.unique().tolist()) == list(range(10))
    assert (cache_dir("extracted") / "cifar10-jpeg" / "train").is_dir()
    assert list(cache_dir("decoded").glob("cifar10-test-32-c3-*.pt"))
    from ganbench import data
    data._load.cache_clear()  # force the disk cache, not the in-memory one
    t0 = time.perf_counter()
    again = load_dataset("cifar10", "test", 32, 3)
    assert torch.equal(again.images, test.images)
    assert time.perf_counter() - t0 < first / 3


@pytest.mark.parametrize("name,expected", [("celeba", "celeba/img_align_celeba"),
                                           ("lsun-bedroom", "lsun/bedroom_train_lmdb")])
def test_missing_torchvision_sets_say_where(tmp_path, name, expected):
    with pytest.raises(DataMissing) as err:
        load_dataset(name, "train", 32, 3, root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / expected) in msg


def test_missing_mnist_says_which_files_where(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(tvd.MNIST, "download", offline)
    with pytest.raises(DataMissing) as err:
        load_dataset("mnist", "train", 32, 1, root=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "MNIST" / "raw") in msg and "idx3" in msg


def test_folder_of_images(tmp_path):
    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 24), (40 * i, 100, 200 if cls == "dogs" else 0)).save(tmp_path / cls / f"{i}.png")
    s = load_dataset(f"folder:{tmp_path}", "train", 16, 3)
    assert s.images.shape == (6, 3, 16, 16) and s.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert s.images[3:, 2].float().mean() > 150 and s.images[:3, 2].float().mean() < 20
    with pytest.raises(DataMissing, match="no folder"):
        load_dataset(f"folder:{tmp_path / 'nope'}", "train", 16, 3)


def test_unknown_data_set_suggests_the_closest():
    with pytest.raises(UnknownName, match="did you mean: mnist"):
        dataset_spec("mnsit")
