"""Metrics on real images: agreement with torch-fidelity's own call, sanity of FID on real data, mode counting,
a constant generator flagged, divergence, the InceptionV3 wiring, and the metric catalog's contract.

The digits tests train the digits classifier once (seconds); the MNIST tests share one MNIST classifier
(about half a minute on one core) through the session's cache. Torch runs on one thread in this module: the
test machine's cores are shared, and oversubscribed threads made a training step 25 times slower there.
"""

from __future__ import annotations

import json
import math
import types
from dataclasses import replace

import pytest
import torch
import torch_fidelity
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ganbench import plugins
from ganbench.arch import ArchSpec, build
from ganbench.layers import count_params
from ganbench.data import dataset_spec, load_dataset, to_float, to_uint8
from ganbench.errors import SpecError, UnknownName
from ganbench.hookspecs import hookimpl
from ganbench.metrics import BUILTIN_METRICS, EvalContext, MetricSpec, evaluate
from ganbench.metrics import cost, stability
from ganbench.metrics.features import (INCEPTION, INCEPTION_FILE, ExtractorMissing, choose_extractor, domain_channels,
                                       extract_features, load_classifier, weights_digest)
from ganbench.metrics.modes import classify, confident_classes, coverage, on_manifold, predict
from ganbench.metrics.quality import PRC_NEIGHBORHOOD, quality
from ganbench.protocol import resolve
from ganbench.files import read_json
from ganbench.record import RunSpec
from ganbench.train import run_one

from conftest import PooledPixels, needs_shared

SMOKE = resolve("smoke")                       # digits, 16 px, 1 channel, 256 fake / 256 real
DIGITS = dataset_spec("digits")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _digits(split: str, res: int = 16):
    return load_dataset("digits", split, res, 1)


def _record(step: int, **values) -> dict:
    row = {"step": step, "images_seen": 32 * step, "g_loss": 1.0, "d_loss": 1.0, "d_real": 0.6, "d_fake": 0.4,
           "g_grad_norm": 1.0, "d_grad_norm": 1.0, "interval_ips": 100.0}
    return {**row, **values}


def _context(protocol=SMOKE, images=None, *, fixed=None, fixed_history=(), history=None, final=True,
             diverged=False, dataset=DIGITS, reference=None, seed=None) -> EvalContext:
    """An evaluation context by hand: ``images`` (float [-1, 1]) are what the "generator" samples, in order."""
    arch = ArchSpec(resolution=protocol.resolution, channels=protocol.channels, z_dim=protocol.z_dim,
                    g_width=protocol.g_width, d_width=protocol.d_width)
    G, D = build(arch)
    reference = reference or load_dataset(protocol.dataset, protocol.reference_split, protocol.resolution,
                                          protocol.channels, seed=protocol.data_seed)

    def sample(n: int) -> torch.Tensor:
        assert n <= len(images), (n, len(images))
        return images[:n].clone()

    return EvalContext(protocol=protocol, dataset=dataset, sample=sample, reference=reference,
                       fixed=images[:64] if fixed is None else fixed, fixed_history=list(fixed_history),
                       history=history or [_record(10)], step=10, final=final, device=torch.device("cpu"),
                       generator=G, discriminator=D, arch=arch, diverged=diverged, seed=seed)


# ---- the digits classifier and torch-fidelity ------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_extractor():
    return choose_extractor(SMOKE, DIGITS)


def test_digits_classifier_is_trained_once_and_cached_with_its_accuracy(digits_extractor):
    meta = json.loads(digits_extractor.weights_path.with_suffix(".json").read_text())
    assert meta["accuracy"] >= 0.9 and meta["dataset"] == "digits" and meta["n_test"] == 297
    mtime = digits_extractor.weights_path.stat().st_mtime_ns
    again = load_classifier("digits", 16, 1)
    assert again.accuracy == meta["accuracy"] and again.path == digits_extractor.weights_path
    assert digits_extractor.weights_path.stat().st_mtime_ns == mtime           # read back, not trained again
    assert digits_extractor.name == "ganbench-domain-digits-16px-c1-v2" == digits_extractor.label
    assert digits_extractor.name in FEATURE_EXTRACTORS_REGISTRY                 # torch-fidelity knows it
    assert extract_features(_digits("test").images[:5], digits_extractor).shape == (5, 128)


def test_scores_equal_torch_fidelity_own_call_and_real_side_is_cached(digits_extractor, tmp_path, monkeypatch):
    monkeypatch.setenv("GANBENCH_CACHE", str(tmp_path))
    real = _digits("test").images                                                    # 297 images, all used
    fake = _digits("train").images[:300]
    ctx = _context(replace(SMOKE, n_final=300, n_real=10_000), to_float(fake))
    ours = evaluate(ctx, ["quality"])
    assert (ours["quality_n_real"], ours["quality_n_fake"], ours["quality_reference"]) == (297, 300, "test")
    assert ours["quality_extractor"] == digits_extractor.label
    # evaluate trained its classifier into this test's cache: torch-fidelity gets that file, not the module's
    # (trained earlier in the session, perhaps at another thread count, so not bit-identical)
    used = choose_extractor(SMOKE, DIGITS)
    assert used.weights_path.parent.parent == tmp_path
    theirs = torch_fidelity.calculate_metrics(
        input1=_Images(fake), input2=_Images(real), fid=True, kid=True, prc=True, cuda=False, verbose=False,
        cache=False, save_cpu_ram=True, feature_extractor=used.name,
        feature_extractor_weights_path=str(used.weights_path), feature_layer_fid="features",
        feature_layer_kid="features", feature_layer_prc="features", kid_subset_size=297)
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-6)
    assert ours["kid_mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-6)
    assert ours["kid_std"] == pytest.approx(theirs["kernel_inception_distance_std"], rel=1e-6)
    assert (ours["precision"], ours["recall"]) == (theirs["precision"], theirs["recall"])
    # the final evaluation scores n_final (300) images; fid_n_eval scores the first n_eval (256) of them
    first = quality(fake[:256], real, used)["fid"]
    assert ours["fid_n_eval"] == pytest.approx(first, rel=1e-6) and ours["fid_n_eval"] != ours["fid"]
    cached = sorted(p.name for p in (tmp_path / "fidelity").iterdir())
    assert any(name.startswith("ganbench-digits-test-16px-c1-seed0-n297r0-") and "stat-fid" in name for name in cached)
    again = evaluate(_context(replace(SMOKE, n_final=300, n_real=10_000), to_float(fake)), ["quality"])
    assert again["fid"] == pytest.approx(ours["fid"], rel=1e-9)                 # from the cache, same numbers


def test_a_classifier_trained_again_with_other_weights_is_told_apart_and_not_scored_from_the_old_cache(
        digits_extractor, tmp_path, monkeypatch):
    """Same name, other weights (as on another machine): the digest recorded beside every score changes, and
    the real images' statistics are computed again through the new weights, not read from the old ones' cache."""
    monkeypatch.setenv("GANBENCH_CACHE", str(tmp_path))
    fake = to_float(_digits("train").images[:300])
    first = evaluate(_context(replace(SMOKE, n_final=300), fake), ["quality", "modes"])
    path = choose_extractor(SMOKE, DIGITS).weights_path
    assert first["quality_extractor_digest"] == first["modes_classifier_digest"] == weights_digest(path) != ""
    state = torch.load(path, weights_only=True)
    torch.save(state, tmp_path / "elsewhere.pt")          # the same weights in a file of other bytes (its name)
    assert (tmp_path / "elsewhere.pt").read_bytes() != path.read_bytes()
    assert weights_digest(tmp_path / "elsewhere.pt") == weights_digest(path)
    torch.save({k: v * 1.05 if v.is_floating_point() else v for k, v in state.items()}, path)
    second = evaluate(_context(replace(SMOKE, n_final=300), fake), ["quality", "modes"])
    assert second["quality_extractor"] == first["quality_extractor"]                  # one name
    assert second["quality_extractor_digest"] != first["quality_extractor_digest"]
    assert second["modes_classifier_digest"] == second["quality_extractor_digest"]
    assert second["fid"] != pytest.approx(first["fid"], rel=1e-3)
    stats = [p.name for p in (tmp_path / "fidelity").iterdir() if "stat-fid" in p.name]
    assert sum(first["quality_extractor_digest"] in n for n in stats) == 1
    assert sum(second["quality_extractor_digest"] in n for n in stats) == 1


def test_a_plugin_extractors_weights_name_its_cached_statistics_by_what_they_hold(tmp_path):
    """A plugin's weights file trained again (same name, same size, other values) gets other cached
    real-image statistics; the same values saved again keep them."""
    from ganbench.metrics import ExtractorSpec
    from ganbench.metrics.features import _plugin_extractor

    path = tmp_path / "weights.pt"
    spec = ExtractorSpec("pooled-pixels", "4x4 average-pooled pixels", PooledPixels, "pooled", families=("digits",),
                         weights=lambda protocol, dataset, root: path)
    keys = []
    for value in (1.0, 1.0, 2.0):
        torch.save({"w": torch.full((4,), value)}, path)
        keys.append(_plugin_extractor(spec, SMOKE, DIGITS).cache_key)
    assert keys[0] == keys[1] != keys[2] and all(k.startswith("pooled-pixels-v1-") for k in keys)


class _Images(torch.utils.data.Dataset):
    def __init__(self, images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i]


def test_fid_grows_with_noise(digits_extractor):
    real = _digits("test").images
    base = to_float(_digits("train").images[:500])
    noise = torch.randn(base.shape, generator=torch.Generator().manual_seed(0))
    fids = [quality(to_uint8((base + s * noise).clamp(-1, 1)), real, digits_extractor)["fid"]
            for s in (0.0, 0.1, 0.2, 0.4, 0.7, 1.0)]
    assert all(a < b for a, b in zip(fids, fids[1:])), fids
    assert fids[-1] > 5 * fids[0], fids


# ---- InceptionV3 -----------------------------------------------------------------------------------------


def _inception_state_dict(monkeypatch) -> dict:
    """A state dict with torch-fidelity's InceptionV3 keys and shapes and PyTorch's default init (the real
    weights are not on this machine): the constructor builds every layer, then loads the weights file;
    loading is made a no-op while this copy is built."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    with monkeypatch.context() as m:
        m.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        m.setattr(torch, "load", lambda *a, **k: {})
        torch.manual_seed(0)
        donor = FeatureExtractorInceptionV3(INCEPTION, ["2048"], feature_extractor_weights_path="unused")
    return donor.state_dict()


def test_inception_weights_file_is_passed_through_to_torch_fidelity(tmp_path, monkeypatch):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    state = _inception_state_dict(monkeypatch)
    assert len(state) > 300 and state["fc.weight"].shape == (1008, 2048)
    path = tmp_path / "inception.pth"
    torch.save(state, path)
    proto = replace(SMOKE, extractor=INCEPTION, fid_weights=str(path), n_final=6, n_real=6)
    ex = choose_extractor(proto, DIGITS)
    assert (ex.name, ex.weights_path, ex.layer, ex.label, ex.rgb) == (INCEPTION, path, "2048", INCEPTION, True)

    images = _digits("test").images[:6]                                         # grey, 16 px
    ours = extract_features(images, ex)
    assert ours.shape == (6, 2048)
    direct = FeatureExtractorInceptionV3(INCEPTION, ["2048"], feature_extractor_weights_path=str(path)).eval()
    with torch.no_grad():
        (theirs,) = direct(images.expand(-1, 3, -1, -1))
    assert torch.allclose(ours, theirs, atol=1e-5)                               # these weights, not others

    out = evaluate(_context(proto, to_float(_digits("train").images[:6])), ["quality"])
    assert out["quality_extractor"] == INCEPTION and math.isfinite(out["kid_mean"])


def test_auto_finds_inception_in_torch_hub_cache_else_uses_the_domain_classifier(tmp_path, monkeypatch,
                                                                                 digits_extractor):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert choose_extractor(SMOKE, DIGITS).name == digits_extractor.name         # auto, no weights: domain
    with pytest.raises(ExtractorMissing, match="fid_weights=PATH"):
        choose_extractor(replace(SMOKE, extractor=INCEPTION), DIGITS)
    with pytest.raises(ExtractorMissing, match="no such file"):
        choose_extractor(replace(SMOKE, fid_weights=str(tmp_path / "nope.pth")), DIGITS)
    cached = tmp_path / "hub" / "checkpoints" / INCEPTION_FILE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    ex = choose_extractor(SMOKE, DIGITS)
    assert ex.name == INCEPTION and ex.weights_path == cached                    # auto now picks InceptionV3
    assert choose_extractor(replace(SMOKE, extractor="domain"), DIGITS).name == digits_extractor.name
    with pytest.raises(ExtractorMissing, match="no domain classifier"):
        choose_extractor(replace(SMOKE, extractor="domain"), dataset_spec("celeba"))


def test_only_stacked_data_is_classified_one_channel_at_a_time():
    assert domain_channels(dataset_spec("stacked-mnist"), 3) == 1            # 1,000 classes = 10 ** 3
    assert domain_channels(dataset_spec("mnist"), 3) == 3                    # grey repeated: still 10 classes
    assert domain_channels(dataset_spec("cifar10"), 3) == 3 and domain_channels(dataset_spec("mnist"), 1) == 1


# ---- modes and stability, by definition -----------------------------------------------------------------


def test_coverage_counts_and_kl():
    ref = torch.arange(10).repeat(10)
    assert coverage(ref.clone(), ref, 10) == {"modes": 10.0, "kl_modes": pytest.approx(0.0, abs=1e-9)}
    one = coverage(torch.zeros(100, dtype=torch.long), ref, 10)
    assert one["modes"] == 1.0 and one["kl_modes"] == pytest.approx(math.log(10), rel=1e-4)
    half = coverage(torch.arange(5).repeat(20), ref, 10)                        # half the classes, evenly
    assert half["modes"] == 5.0 and half["kl_modes"] == pytest.approx(math.log(2), rel=1e-4)


def test_stability_definitions_on_a_known_history():
    rows = [_record(s, images_seen=10 * s, g_loss=g, d_loss=d, d_fake=f, fid=fid, sample_drift=dr)
            for s, g, d, f, fid, dr in [(1, 1.0, 1.0, 0.5, 100.0, math.nan), (2, 2.0, 0.5, 0.3, 50.0, 0.4),
                                        (3, 3.0, 0.05, 0.01, 40.0, 0.2), (4, 5.0, 0.04, 0.02, 60.0, 0.6),
                                        (5, 7.0, 0.01, 0.01, 70.0, 0.8), (6, 9.0, 0.02, 0.0, 80.0, 1.0)]]
    out = stability.from_history(rows, fid_target=45.0)
    assert out["diverged"] == 0.0
    assert out["d_wins"] == 1.0                                    # the last 3: d_loss < 0.1 and d_fake < 0.05
    assert out["loss_oscillation_g"] == pytest.approx(1.0)         # std of [7, 9]: the tail is the last 2 of 6
    assert out["sample_oscillation"] == pytest.approx(0.9)         # mean drift of the tail
    assert out["fid_best"] == 40.0 and out["fid_regression"] == 40.0
    assert out["steps_to_target"] == 3.0
    expected_auc = sum((a + b) / 2 * 10 for a, b in zip([100, 50, 40, 60, 70, 80], [50, 40, 60, 70, 80])) / 50
    assert out["fid_auc"] == pytest.approx(expected_auc)
    assert stability.from_history(rows[:2], 0.0)["d_wins"] == 0.0
    assert math.isnan(stability.from_history(rows, 0.0)["steps_to_target"])    # no target
    assert math.isnan(stability.from_history(rows, 30.0)["steps_to_target"])   # never reached
    assert math.isnan(stability.from_history(rows[:1], 0.0)["loss_oscillation_d"])
    gone = stability.from_history(rows + [_record(7, images_seen=70, fid=math.nan)], 0.0, diverged=True)
    assert gone["diverged"] == 1.0 and math.isnan(gone["fid_regression"]) and gone["fid_best"] == 40.0


def test_plateau_on_constructed_curves():
    falling = [1000.0 * 0.7 ** i for i in range(9)]                              # -30% per evaluation
    change, converged = stability.plateau(falling)
    assert change == pytest.approx(math.log(0.7)) and converged == 0.0
    noise = [0.02, -0.03, 0.01, 0.03, -0.02, 0.0, -0.01, 0.02, -0.02]             # +-3% around 80: flat
    change, converged = stability.plateau([80.0 * math.exp(e) for e in noise])
    assert abs(change) < stability.PLATEAU_SLOPE and converged == 1.0
    slow = [100.0 * 0.97 ** i for i in range(6)]                                  # -3% per evaluation: close enough
    assert stability.plateau(slow) == (pytest.approx(math.log(0.97)), 1.0)
    rising = [100.0, 60.0, 50.0, 70.0, 95.0, 130.0]                               # regressing: not a plateau
    change, converged = stability.plateau(rising)
    assert change > stability.PLATEAU_SLOPE and converged == 0.0
    for short in ([], [50.0], [90.0, 80.0], [90.0, math.nan, 80.0], [90.0, 80.0, 79.0, math.nan]):
        assert all(math.isnan(v) for v in stability.plateau(short)), short   # too few, or diverged at the end
    # a NaN in the middle keeps its place: the tail of (0, 2, 4, 5) is its last two, one evaluation apart
    assert stability.plateau([300.0, math.nan, 200.0, math.nan, 100.0, 90.0])[0] == pytest.approx(math.log(0.9))


def test_fid_curve_takes_one_sample_size_and_stability_records_the_plateau():
    rows = [_record(s, fid=f, fid_n_eval=f, quality_n_fake=1000) for s, f in [(1, 400.0), (2, 200.0), (3, 100.0)]]
    final = _record(4, fid=90.0, fid_n_eval=99.0, quality_n_fake=2000)        # fid at n_final, lower by bias
    assert stability.fid_curve(rows + [final]) == [400.0, 200.0, 100.0, 99.0]
    out = stability.from_history(rows + [final], 0.0)
    assert out["fid_tail_change"] == pytest.approx(math.log(0.99)) and out["converged"] == 1.0
    old = [{k: v for k, v in r.items() if k != "fid_n_eval"} for r in rows + [final]]
    assert stability.fid_curve(old) == [400.0, 200.0, 100.0]                  # written before fid_n_eval
    assert stability.from_history(old, 0.0)["converged"] == 0.0               # still halving
    assert math.isnan(stability.from_history(rows[:2], 0.0)["converged"])     # two evaluations: too few


def test_broke_down_means_learned_then_lost_it():
    def judged(curve, precisions=None):
        precisions = precisions or [0.5] * len(curve)
        rows = [_record(1000 * (i + 1), fid=f, fid_n_eval=f, precision=p) for i, (f, p) in
                enumerate(zip(curve, precisions))]
        return stability.from_history(rows, 0.0)["broke_down"]

    # the pilot's baseline seed 0 in outline: a floor near 56, then D wins and FID climbs to ~1,400
    assert judged([190.0, 90.0, 60.0, 56.0, 70.0, 400.0, 1427.0], [0.5] * 6 + [0.01]) == 1.0
    assert judged([190.0, 90.0, 64.0, 70.0, 114.0]) == 0.0                 # drifts 1.8x: not a breakdown
    ratio = stability.BREAKDOWN_RATIO
    assert judged([100.0, 50.0, 50.0 * ratio]) == 0.0 and judged([100.0, 50.0, 50.0 * ratio * 1.01]) == 1.0
    # never learned (precision below the floor throughout): its rise from a noisy start is not a breakdown
    assert judged([1600.0, 1500.0, 5400.0], [0.01, 0.02, 0.0]) == 0.0
    # the best FID counts only from an evaluation where G had learned
    assert judged([200.0, 400.0, 700.0], [0.0, 0.3, 0.2]) == 0.0             # 700 / 400, not 700 / 200
    assert judged([200.0, 400.0, 1300.0], [0.0, 0.3, 0.2]) == 1.0
    for short in ([90.0, 300.0], [90.0, 60.0, math.nan]):                   # too few; diverged at the end
        assert math.isnan(judged(short))


def test_failed_to_learn_reads_this_evaluations_precision():
    def judged(**last):
        return stability.from_history([_record(10, precision=0.9), _record(20, **last)], 0.0)["failed_to_learn"]

    assert judged(precision=0.01) == 1.0 and judged(precision=0.0) == 1.0
    assert judged(precision=stability.FAILED_PRECISION) == 0.0 and judged(precision=0.6) == 0.0
    assert math.isnan(judged()) and math.isnan(judged(precision=math.nan))    # not measured; diverged


def test_confident_classes_needs_counted_images_on_a_tenth_of_a_class_share():
    pred = torch.cat([torch.zeros(20), torch.ones(20), torch.full((9,), 2), torch.full((951,), 3)]).long()
    counted = torch.cat([torch.ones(20), torch.zeros(20), torch.ones(9), torch.zeros(951)]).bool()
    # 1,000 images, 10 classes: 10 counted images needed. Class 0: 20; 1: none; 2: 9; 3: none
    assert confident_classes(pred, counted, 10) == 1.0
    everything = torch.ones(1000, dtype=torch.bool)
    assert confident_classes(pred, everything, 10) == 3.0                     # class 2 is still too rare
    assert confident_classes(pred, everything, 1000) == 4.0                   # 1,000 classes: one image suffices


def test_the_manifold_test_is_torch_fidelitys_precision_image_by_image(digits_extractor):
    clf = load_classifier("digits", 16, 1)
    real, fake = _digits("test").images, _digits("train").images[:300]
    noisy = to_uint8((to_float(fake) + 0.5 * torch.randn(fake.shape, generator=torch.Generator().manual_seed(0)))
                     .clamp(-1, 1))
    for images in (fake, noisy):
        inside = on_manifold(classify(clf.net, images)[2], classify(clf.net, real)[2], PRC_NEIGHBORHOOD)
        assert float(inside.float().mean()) == pytest.approx(quality(images, real, digits_extractor)["precision"],
                                                             abs=1 / 300)


def test_grey_blobs_fail_to_learn_and_cover_no_class():
    grey = torch.zeros(256, 1, 16, 16)                                          # mid-grey, the same every time
    out = evaluate(_context(SMOKE, grey), ["quality", "modes", "stability"])
    assert out["precision"] < 0.01 and out["failed_to_learn"] == 1.0
    assert out["modes"] == 1.0                        # the classifier calls every one of them an 8, sure of it
    assert out["confident_classes"] == 0.0            # but none is near a real digit
    assert out["diversity"] < 0.01 and out["mode_collapse"] == 1.0


def test_probe_metric_seeds_the_untrained_d_with_the_runs_seed():
    from ganbench.data import load_dataset as load
    from ganbench.metrics.probe import ProbeSettings, probe_discriminator

    proto = replace(SMOKE, probe_labels_per_class=10, probe_draws=2, probe_test=0)
    images = to_float(_digits("train").images[:256])
    by_seed = {seed: evaluate(_context(proto, images, seed=seed), ["probe"]) for seed in (None, 3)}
    assert by_seed[None]["probe_random_seed"] == 0 and by_seed[3]["probe_random_seed"] == 3
    ctx = _context(proto, images, seed=3)
    direct = probe_discriminator(ctx.discriminator, ctx.arch.init, load("digits", "train", 16, 1),
                                 load("digits", "test", 16, 1), ProbeSettings.from_protocol(proto), seed=3)
    out = by_seed[3]
    assert out["probe_random_acc"] == direct.scores["random"].accuracy
    assert out["probe_gain"] == pytest.approx(out["probe_acc"] - out["probe_random_acc"])


# ---- a constant generator, a perfect one, a diverged one -------------------------------------------------


def test_a_constant_generator_is_flagged_and_a_perfect_one_is_not(digits_extractor):
    proto = replace(SMOKE, n_final=256)
    const = to_float(_digits("test").images[:1]).repeat(256, 1, 1, 1)
    d_wins_history = [_record(s, d_loss=0.01, d_fake=0.001, g_loss=8.0) for s in (10, 20, 30)]
    flat = evaluate(_context(proto, const, fixed_history=[to_uint8(const[:64])] * 2, history=d_wins_history),
                    ["quality", "modes", "stability", "cost"])
    assert flat["modes"] == 1.0 and flat["kl_modes"] > 2.0                        # ~log 10
    assert flat["sample_drift"] == pytest.approx(0.0, abs=1e-6) and flat["sample_oscillation"] < 1e-6
    assert flat["d_wins"] == 1.0 and flat["diverged"] == 0.0
    assert flat["recall"] < 0.02
    # one real image, 256 times: collapsed, yet on the data manifold (it is a reference image): learned
    assert flat["diversity"] < 0.01 and flat["mode_collapse"] == 1.0
    assert flat["precision"] > 0.5 and flat["failed_to_learn"] == 0.0 and flat["confident_classes"] <= 1.0

    real = to_float(_digits("train").images[:256])
    good = evaluate(_context(proto, real, fixed_history=[to_uint8(real[64:128])], history=[_record(10), _record(20)]),
                    ["quality", "modes", "stability"])
    assert good["modes"] == 10.0 and good["kl_modes"] < 0.05 and good["d_wins"] == 0.0
    assert 0.9 < good["diversity"] < 1.1 and good["mode_collapse"] == 0.0        # real vs real: about 1
    assert good["confident_classes"] == 10.0 and good["failed_to_learn"] == 0.0
    assert flat["fid"] > 20 * good["fid"], (flat["fid"], good["fid"])
    assert 0.5 < good["sample_drift"] < 2.0      # other real images: about one real-to-real distance away
    for key in ("g_params", "d_params", "g_flops", "d_flops", "sample_ips", "peak_mem_mb", "train_ips"):
        assert flat[key] > 0, key


def test_a_diverged_run_has_nan_sample_scores_and_says_diverged():
    nan_images = torch.full((256, 1, 16, 16), math.nan)
    ctx = _context(SMOKE, nan_images, fixed_history=[torch.zeros(64, 1, 16, 16, dtype=torch.uint8)],
                   history=[_record(10, fid=50.0), _record(20, g_loss=math.nan, d_loss=math.nan)], diverged=True)
    out = evaluate(ctx, ["quality", "modes", "stability", "cost"])
    for key in ("fid", "kid_mean", "kid_std", "precision", "recall", "modes", "kl_modes", "sample_drift",
                "fid_regression", "fid_n_eval", "confident_classes", "diversity", "mode_collapse", "failed_to_learn",
                "fid_tail_change", "converged"):
        assert math.isnan(out[key]), key
    assert out["diverged"] == 1.0 and out["fid_best"] == 50.0 and out["quality_n_fake"] == 256
    assert out["g_params"] > 0 and json.loads(json.dumps(out, allow_nan=True)).keys() == out.keys()
    # not flagged, but G's output is not finite: the same NaNs, and no crash
    assert math.isnan(evaluate(_context(SMOKE, nan_images), ["quality"])["fid"])


# ---- the catalog's contract ------------------------------------------------------------------------------


def test_every_builtin_output_is_produced_and_declared():
    images = _digits("train").images
    ctx = _context(SMOKE, to_float(images[:256]), fixed_history=[images[100:164]], history=[_record(10), _record(20)])
    produced = evaluate(ctx, ["quality", "modes", "stability", "cost"])
    for spec in BUILTIN_METRICS:
        assert set(spec.outputs) | set(spec.metadata) <= produced.keys(), spec.name
        for key in spec.outputs:
            assert isinstance(produced[key], float), key                          # scores are plain floats
    declared = {k for spec in BUILTIN_METRICS for k in (*spec.outputs, *spec.metadata)}
    assert produced.keys() == declared


def test_evaluate_runs_final_metrics_only_at_the_end_in_order_and_names_unknown_ones(monkeypatch):
    seen = []

    def last(ctx):
        seen.append(ctx.history[-1].get("fid"))        # sees the values of the metrics before it
        return {"last": 1.0}

    extra = types.SimpleNamespace(ganbench_metrics=hookimpl(lambda: [MetricSpec("last", "end only", last,
                                                                                {"last": None}, when="final")]))
    pm = plugins.get_plugin_manager(autoload=False)
    pm.register(extra, name="test-extra")
    monkeypatch.setattr(plugins, "catalog", lambda: plugins.Catalog.from_plugin_manager(pm))
    images = to_float(_digits("train").images[:256])
    assert "last" not in evaluate(_context(SMOKE, images, final=False), ["quality", "last"])
    assert evaluate(_context(SMOKE, images, final=True), ["quality", "last"])["last"] == 1.0
    assert len(seen) == 1 and seen[0] > 0
    with pytest.raises(UnknownName, match="did you mean: quality"):
        evaluate(_context(SMOKE, images), ["qualty"])
    with pytest.raises(SpecError, match="when='always'"):
        MetricSpec("x", "", last, {}, when="always")


def test_cost_definitions():
    rows = [_record(s, interval_ips=r) for s, r in [(10, 5.0), (20, 100.0), (30, 120.0), (40, 80.0)]]
    assert cost.steady_train_ips(rows) == 100.0                      # median of all but the first
    assert cost.steady_train_ips(rows[:1]) == 5.0
    assert cost.steady_train_ips([{"train_ips": 7.0}, {"train_ips": 9.0}]) == 9.0
    arch = ArchSpec(resolution=16, channels=1, z_dim=16, g_width=8, d_width=8)
    G, D = build(arch)
    size = cost.size(G, D, 16, 1, 16)
    assert size["g_params"] == count_params(G) and size["d_params"] == count_params(D)
    # D at 16 px with width 8: conv 1->8 (4x4, 8x8 out) + conv 8->16 (4x4, 4x4 out) + linear 256->1, 2 FLOPs each
    assert size["d_flops"] == 2 * (8 * 8 * 8 * 16 + 4 * 4 * 16 * 8 * 16 + 256)
    assert cost.peak_memory_mb(torch.device("cpu")) > 50


def test_smoke_run_records_every_metric(tmp_path):
    result = run_one(RunSpec(SMOKE, "dcgan", 0, tmp_path))
    assert result.status == "complete"
    final = read_json(result.spec.run_dir / "summary.json")["final"]
    declared = {k for spec in BUILTIN_METRICS for k in (*spec.outputs, *spec.metadata)}
    assert declared <= final.keys(), declared - final.keys()
    assert final["quality_extractor"] == "ganbench-domain-digits-16px-c1-v2" and final["quality_n_fake"] == 256
    assert math.isfinite(final["fid"]) and math.isfinite(final["sample_drift"])


# ---- real MNIST ------------------------------------------------------------------------------------------


MNIST32 = replace(SMOKE, dataset="mnist", resolution=32, channels=1)


@pytest.fixture(scope="module")
def mnist_extractor():
    needs_shared()
    return choose_extractor(MNIST32, dataset_spec("mnist"))


def test_mnist_classifier_reaches_98_percent(mnist_extractor):
    meta = json.loads(mnist_extractor.weights_path.with_suffix(".json").read_text())
    assert meta["accuracy"] >= 0.98 and meta["n_test"] == 10_000 and meta["n_train"] == 60_000


def test_fid_mnist_vs_mnist_far_below_mnist_vs_fashion(mnist_extractor):
    test = load_dataset("mnist", "test", 32, 1).images[:2000]
    same = quality(load_dataset("mnist", "train", 32, 1).images[:2000], test, mnist_extractor)["fid"]
    other = quality(load_dataset("fashion-mnist", "test", 32, 1).images[:2000], test, mnist_extractor)["fid"]
    assert other > 20 * same, (same, other)


def test_classifier_counts_modes_on_real_mnist_and_stacked_mnist(mnist_extractor):
    clf = load_classifier("mnist", 32, 1)
    real = load_dataset("mnist", "test", 32, 1)
    assert coverage(predict(clf.net, real.images), real.labels, 10)["modes"] == 10.0
    stacked = load_dataset("stacked-mnist", "train", 32, 3, seed=0)
    images, labels = stacked.images[:25_600], stacked.labels[:25_600]
    pred = predict(clf.net, images)
    assert coverage(pred, labels, 1000)["modes"] >= 990
    assert (pred == labels).float().mean() > 0.95                        # about 0.99 ** 3 of the triples
    # the stacked-mnist protocol's extractor: the same classifier, per channel, features concatenated
    ex = choose_extractor(replace(MNIST32, dataset="stacked-mnist", channels=3), dataset_spec("stacked-mnist"))
    assert ex.name == mnist_extractor.name and ex.label == ex.name + "-per-channel"
    feats = extract_features(images[:4], ex)
    assert feats.shape == (4, 384)
    assert torch.allclose(feats[:, 128:256], extract_features(images[:4, 1:2], mnist_extractor))


# ---- what a plugin metric and a plugin extractor must do ---------------------------------------------------


def _with_plugin(monkeypatch, name: str, **hooks) -> None:
    """The catalog with one more plugin implementing ``hooks`` (hook name -> list it returns)."""
    plugin = types.SimpleNamespace(**{hook: hookimpl(lambda items=items: items) for hook, items in hooks.items()})
    pm = plugins.get_plugin_manager(autoload=False)
    pm.register(plugin, name=name)
    cat = plugins.Catalog.from_plugin_manager(pm)
    monkeypatch.setattr(plugins, "catalog", lambda: cat)


def test_plugin_metric_returns_every_declared_output_or_none(monkeypatch):
    from ganbench.metrics import MetricError

    def partial(ctx):
        return {"sharpness": 1.0, "sharpness_n": 3}

    specs = [MetricSpec("sharp", "declares two outputs, returns one", partial, {"sharpness": True, "contrast": None},
                        metadata=("sharpness_n",)),
             MetricSpec("inapplicable", "returns nothing: does not apply", lambda ctx: {}, {"x": True}),
             MetricSpec("meta-only", "returns its metadata only", lambda ctx: {"meta_n": 1}, {"y": True},
                        metadata=("meta_n",))]
    _with_plugin(monkeypatch, "sharp-plugin", ganbench_metrics=specs)
    images = to_float(_digits("train").images[:64])
    assert evaluate(_context(SMOKE, images), ["inapplicable"]) == {}                      # {} is allowed
    with pytest.raises(MetricError, match=r"^metric 'sharp' \(plugin 'sharp-plugin'\) did not return its declared "
                                          r"outputs \['contrast'\] \(it returned \['sharpness', 'sharpness_n'\]\)"):
        evaluate(_context(SMOKE, images), ["sharp"])
    with pytest.raises(MetricError, match=r"metric 'meta-only' .* outputs \['y'\]"):      # metadata is not an output
        evaluate(_context(SMOKE, images), ["meta-only"])
    with pytest.raises(SpecError, match="both as outputs and as metadata"):
        MetricSpec("x", "", partial, {"a": True}, metadata=("a",))
    with pytest.raises(SpecError, match="True .* False .* None"):
        MetricSpec("x", "", partial, {"a": "higher"})
    with pytest.raises(SpecError, match=r"ratio_scale names \['b'\], which are not among its outputs"):
        MetricSpec("x", "", partial, {"a": False}, ratio_scale=("a", "b"))


def test_a_data_set_nothing_can_score_is_refused_saying_what_would_enable_it(monkeypatch):
    from ganbench.data import DatasetSpec
    from ganbench.metrics import ExtractorSpec, metric_problem
    from ganbench.metrics.features import extractor_problem

    quality_spec = BUILTIN_METRICS[0]
    odd = replace(DIGITS, name="odd-digits", family="odd")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: "/nonexistent-hub")     # no InceptionV3 weights here
    problem = metric_problem(quality_spec, SMOKE, odd)
    assert "ganbench_extractors hook" in problem and "fid_weights=PATH" in problem and "metrics=[...]" in problem
    assert "\n" not in problem and metric_problem(BUILTIN_METRICS[3], SMOKE, odd) == ""      # cost reads no features
    # a plugin extractor for the family (or the name) enables it; its own problem is said instead
    serve = ExtractorSpec("pooled", "pooled pixels", PooledPixels, "pooled", families=("odd",),
                          problem=lambda p, d: "needs 1 channel" if p.channels != 1 else "")
    _with_plugin(monkeypatch, "pool-plugin", ganbench_extractors=[serve])
    assert extractor_problem(SMOKE, odd) == ""
    assert extractor_problem(replace(SMOKE, channels=3), odd) == (
        "extractor 'pooled' cannot score data set 'odd-digits' here: needs 1 channel")
    assert extractor_problem(SMOKE, DatasetSpec("x", "", None, None, "other")).startswith("it needs a feature extractor")
    with pytest.raises(SpecError, match="families=... or datasets=..."):
        ExtractorSpec("e", "", PooledPixels, "pooled")


def test_a_plugin_extractor_scores_its_data_by_name_before_family_and_before_the_domain_classifier(monkeypatch):
    from ganbench.metrics import ExtractorSpec
    from ganbench.metrics.features import plugin_extractor_for

    monkeypatch.setattr(torch.hub, "get_dir", lambda: "/nonexistent-hub")
    by_family = ExtractorSpec("fam", "by family", PooledPixels, "pooled", families=("digits",))
    by_name = ExtractorSpec("named", "by name", f"{__name__}:PooledPixels", "pooled", datasets=("digits",),
                            version="3")
    _with_plugin(monkeypatch, "pool-plugin", ganbench_extractors=[by_family, by_name])
    assert plugin_extractor_for(DIGITS) is by_name
    ex = choose_extractor(SMOKE, DIGITS)
    assert (ex.label, ex.layer, ex.weights_path, ex.weights_arg) == ("named-v3", "pooled", None, None)
    assert FEATURE_EXTRACTORS_REGISTRY[ex.name] is PooledPixels
    images = to_float(_digits("train").images[:256])
    out = evaluate(_context(SMOKE, images), ["quality"])
    assert out["quality_extractor"] == "named-v3" and 0 <= out["fid"] < 1.0      # real digits vs real digits
    assert choose_extractor(replace(SMOKE, extractor="domain"), DIGITS).label == "named-v3"
    bad = ExtractorSpec("bad", "wrong layer", PooledPixels, "2048", datasets=("digits",))
    _with_plugin(monkeypatch, "bad-plugin", ganbench_extractors=[bad])
    with pytest.raises(Exception, match="layer '2048' is not one of the features PooledPixels provides"):
        choose_extractor(SMOKE, DIGITS)
