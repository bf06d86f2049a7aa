import json
import math

import pytest
import torch
import torch_fidelity

from ganbench.arch import ArchSpec, build
from ganbench.data import dataset_spec, load_dataset, to_float, to_uint8
from ganbench.metrics import EvalContext, evaluate, stability
from ganbench.metrics.features import (DOMAIN_EXTRACTOR, INCEPTION, choose_extractor, inception_weights,
                                       load_classifier)
from ganbench.metrics.modes import coverage, predict
from ganbench.metrics.quality import ImageTensor, fidelity_kwargs, quality
from ganbench.protocol import resolve
from ganbench.results import RunSpec, read_json
from ganbench.train import run_one

from conftest import needs_shared


def _fid(real, fake, ex):
    return quality(real, fake, ex, real_cache_name=None)["fid"]


@pytest.fixture(scope="module")
def digits_extractor():
    return choose_extractor("auto", "", dataset_spec("digits"), 16, 1)


def test_digits_classifier_is_cached_with_its_accuracy(digits_extractor):
    meta = json.loads(digits_extractor.weights_path.with_suffix(".json").read_text())
    assert meta["accuracy"] > 0.9 and meta["dataset"] == "digits"
    again = load_classifier("digits", 16, 1)
    assert again.accuracy == meta["accuracy"] and again.path == digits_extractor.weights_path
    assert digits_extractor.label == "domain:digits-16px-c1"


def test_scores_equal_torch_fidelity_own_call(digits_extractor):
    real = load_dataset("digits", "test", 16, 1).images
    fake = load_dataset("digits", "train", 16, 1).images[:300]
    ours = quality(real, fake, digits_extractor, real_cache_name=None)
    theirs = torch_fidelity.calculate_metrics(
        input1=ImageTensor(fake), input2=ImageTensor(real), cache=False,
        **fidelity_kwargs(digits_extractor, len(real), len(fake), cuda=False))
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6)
    assert ours["kid_std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-6)
    assert ours["precision"] == pytest.approx(theirs["precision"]) and 0 <= ours["recall"] <= 1


def test_fid_grows_with_noise(digits_extractor):
    real = load_dataset("digits", "test", 16, 1).images
    base = load_dataset("digits", "train", 16, 1).images[:500]
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(base.shape, generator=g)
    fids = [_fid(real, to_uint8((to_float(base) + s * noise).clamp(-1, 1)), digits_extractor) for s in (0.0, 0.1, 0.3, 0.6, 1.0)]
    assert all(a < b for a, b in zip(fids, fids[1:])), fids


def test_real_side_statistics_are_cached(digits_extractor, tmp_path, monkeypatch):
    monkeypatch.setenv("GANBENCH_CACHE", str(tmp_path))
    real = load_dataset("digits", "test", 16, 1).images
    fake = load_dataset("digits", "train", 16, 1).images[:200]
    first = quality(real, fake, digits_extractor, "unit-test-digits")["fid"]
    assert list((tmp_path / "fidelity").rglob("*unit-test-digits*"))
    assert quality(real, fake, digits_extractor, "unit-test-digits")["fid"] == pytest.approx(first, rel=1e-9)


def test_inception_wiring_with_a_weights_file_of_the_right_shape(tmp_path):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    # a state dict with torch-fidelity's keys and shapes, PyTorch's default init (the real weights are not
    # here): the constructor builds every layer, then fails to load the missing file
    donor = FeatureExtractorInceptionV3.__new__(FeatureExtractorInceptionV3)
    torch.nn.Module.__init__(donor)
    try:
        FeatureExtractorInceptionV3.__init__(donor, INCEPTION, ["2048"], feature_extractor_weights_path=str(tmp_path / "missing.pth"))
    except Exception:
        pass
    state = donor.state_dict()
    assert len(state) > 100
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    assert inception_weights(str(path)) == path
    ex = choose_extractor("auto", str(path), dataset_spec("digits"), 16, 1)
    assert ex.name == INCEPTION and ex.label == INCEPTION and ex.rgb
    real = load_dataset("digits", "test", 16, 1).images[:40]
    scores = quality(real, load_dataset("digits", "train", 16, 1).images[:40], ex, real_cache_name=None)
    assert math.isfinite(scores["fid"])
    with pytest.raises(Exception, match="no such file"):
        choose_extractor("auto", str(tmp_path / "nope.pth"), dataset_spec("digits"), 16, 1)


def test_inception_without_weights_is_a_clear_error():
    if inception_weights("") is not None:
        pytest.skip("InceptionV3 weights are in the torch hub cache here")
    with pytest.raises(Exception, match="no weights; give fid_weights"):
        choose_extractor(INCEPTION, "", dataset_spec("digits"), 16, 1)
    assert choose_extractor("auto", "", dataset_spec("digits"), 16, 1).name == DOMAIN_EXTRACTOR


def test_coverage_counts_and_kl():
    ref = torch.arange(10).repeat(10)
    assert coverage(ref.clone(), ref, 10) == {"modes": 10.0, "kl_modes": pytest.approx(0.0, abs=1e-9)}
    one = coverage(torch.zeros(100, dtype=torch.long), ref, 10)
    assert one["modes"] == 1.0 and one["kl_modes"] == pytest.approx(math.log(10), rel=1e-3)


def test_stability_definitions_on_a_known_history():
    rows = [{"step": s, "images_seen": 10 * s, "g_loss": g, "d_loss": d, "d_fake": f, "fid": fid, "sample_drift": dr}
            for s, g, d, f, fid, dr in [(1, 1.0, 1.0, 0.5, 100.0, math.nan), (2, 2.0, 0.5, 0.3, 50.0, 0.4),
                                        (3, 3.0, 0.05, 0.01, 40.0, 0.2), (4, 5.0, 0.04, 0.02, 60.0, 0.6),
                                        (5, 7.0, 0.01, 0.01, 70.0, 0.8), (6, 9.0, 0.02, 0.0, 80.0, 1.0)]]
    out = stability.from_history(rows, fid_target=45.0)
    assert out["d_wins"] == 1.0                      # the last 3: d_loss < 0.1 and d_fake < 0.05
    assert out["loss_oscillation_g"] == pytest.approx(1.0)   # std of [7, 9]
    assert out["sample_oscillation"] == pytest.approx(0.9)   # mean drift of the last third
    assert out["fid_best"] == 40.0 and out["fid_regression"] == 40.0
    assert out["steps_to_target"] == 3.0
    expected_auc = sum((a + b) / 2 * 10 for a, b in zip([100, 50, 40, 60, 70, 80], [50, 40, 60, 70, 80])) / 50
    assert out["fid_auc"] == pytest.approx(expected_auc)
    assert stability.from_history(rows[:2], 0.0)["d_wins"] == 0.0


def _constant_context(history, fixed_history):
    proto = resolve("smoke")
    spec = dataset_spec("digits")
    ref = load_dataset("digits", "test", 16, 1)
    const = to_float(ref.images[:1]).repeat(64, 1, 1, 1)
    G, D = build(ArchSpec(resolution=16, channels=1, g_width=4, d_width=4, z_dim=16))
    return EvalContext(protocol=proto, dataset=spec, sample=lambda n: const[:1].repeat(n, 1, 1, 1), reference=ref,
                       fixed=const, fixed_history=fixed_history, history=history, step=20, final=True,
                       device=torch.device("cpu"), generator=G, discriminator=D, arch=ArchSpec(resolution=16, channels=1, z_dim=16))


def test_a_constant_generator_is_flagged():
    hist = [{"step": s, "images_seen": 32 * s, "g_loss": 8.0, "d_loss": 0.01, "d_real": 0.99, "d_fake": 0.001,
             "interval_ips": 100.0, "g_grad_norm": 0.0, "d_grad_norm": 0.0} for s in (10, 20, 30)]
    ref = load_dataset("digits", "test", 16, 1)
    ctx = _constant_context(hist, [ref.images[:1].repeat(64, 1, 1, 1)] * 2)
    out = evaluate(ctx, ["quality", "modes", "stability", "cost"])
    assert out["modes"] == 1.0 and out["kl_modes"] > 1.5
    assert out["d_wins"] == 1.0
    assert out["sample_drift"] == pytest.approx(0.0, abs=1e-6)
    assert out["recall"] < 0.05
    # against a real batch of the same size the FID is an order of magnitude worse than real vs real
    real_vs_real = quality(ref.images, load_dataset("digits", "train", 16, 1).images[:256],
                           choose_extractor("auto", "", dataset_spec("digits"), 16, 1), None)["fid"]
    assert out["fid"] > 10 * real_vs_real
    for key in ("g_params", "d_params", "g_flops", "d_flops", "sample_ips", "peak_mem_mb", "train_ips"):
        assert out[key] > 0


def test_smoke_run_records_every_metric(tmp_path):
    result = run_one(RunSpec(resolve("smoke"), "dcgan", 0, tmp_path))
    final = read_json(result.spec.run_dir / "summary.json")["final"]
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "modes", "kl_modes", "sample_oscillation",
                "sample_drift", "d_wins", "diverged", "loss_oscillation_g", "loss_oscillation_d", "fid_regression",
                "fid_auc", "steps_to_target", "train_ips", "sample_ips", "peak_mem_mb", "g_params", "d_params",
                "g_flops", "d_flops", "quality_extractor", "quality_n_real", "quality_n_fake", "quality_reference"):
        assert key in final, key
    assert final["quality_extractor"] == "domain:digits-16px-c1" and final["quality_n_fake"] == 256


# ---- real MNIST ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_classifier():
    needs_shared()
    return load_classifier("mnist", 32, 1)


@pytest.mark.slow
def test_mnist_classifier_accuracy(mnist_classifier):
    assert mnist_classifier.accuracy >= 0.98


@pytest.mark.slow
def test_fid_mnist_vs_mnist_far_below_mnist_vs_fashion(mnist_classifier):
    ex = choose_extractor("domain", "", dataset_spec("mnist"), 32, 1)
    test = load_dataset("mnist", "test", 32, 1).images[:5000]
    same = _fid(test, load_dataset("mnist", "train", 32, 1).images[:5000], ex)
    other = _fid(test, load_dataset("fashion-mnist", "test", 32, 1).images[:5000], ex)
    assert other > 20 * same, (same, other)


@pytest.mark.slow
def test_classifier_counts_modes_on_real_data(mnist_classifier):
    real = load_dataset("mnist", "test", 32, 1)
    assert coverage(predict(mnist_classifier.net, real.images), real.labels, 10)["modes"] == 10
    stacked = load_dataset("stacked-mnist", "train", 32, 3, seed=0)
    pred = predict(mnist_classifier.net, stacked.images[:25600])
    assert coverage(pred, stacked.labels[:25600], 1000)["modes"] >= 990
    assert (pred == stacked.labels[:25600]).float().mean() > 0.94   # about 0.99 ** 3
