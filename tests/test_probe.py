"""The probe (the paper's Table 1: a linear SVM on D's features), sample grids and latent walks."""

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ganbench import plugins
from ganbench.arch import ArchSpec, build, build_generator
from ganbench.cli import main
from ganbench.data import load_dataset
from ganbench.errors import SpecError
from ganbench.generate import frozen_generator, interpolate, latent, sample, walk
from ganbench.metrics.probe import (C_GRID, POOL, ProbeSettings, conv_stages, d_features, draw_labelled, labelled_splits,
                                    pixel_features, probe, probe_discriminator, probe_run, scored_test_indices,
                                    untrained_copy)
from ganbench.protocol import Protocol, resolve
from ganbench.files import read_json
from ganbench.record import RunRecord, RunSpec
from ganbench.train import run_one

from conftest import needs_shared


@pytest.fixture(scope="module")
def probe_catalog():
    return plugins.catalog()


@pytest.fixture(scope="module")
def digits_run(probe_catalog, tmp_path_factory):
    """A smoke run on the embedded digits with the probe metric at the end (protocol defaults: 100 labels
    per class, 3 draws)."""
    proto = resolve("smoke", ['metrics=["probe"]', "steps=40", "eval_every=40", 'name="probe-smoke"'])
    result = run_one(RunSpec(proto, "dcgan", 0, tmp_path_factory.mktemp("results")))
    assert result.status == "complete", result.error
    return result.spec.run_dir


def _invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# ---- features -----------------------------------------------------------------------------------------


def test_features_are_every_conv_stage_max_pooled_to_4x4_in_eval_mode():
    arch = ArchSpec(resolution=32, channels=1, g_width=4, d_width=4, z_dim=8)
    _, D = build(arch)
    x = torch.randint(0, 256, (6, 1, 32, 32), dtype=torch.uint8)
    before = {k: v.clone() for k, v in D.state_dict().items()}
    feats = d_features(D, x, batch=4)            # two batches
    assert feats.shape == (6, (4 + 8 + 16) * POOL * POOL) and feats.dtype == np.float32
    assert D.training                            # its mode is restored
    assert all(torch.equal(before[k], v) for k, v in D.state_dict().items())   # BN statistics untouched
    D.eval()
    with torch.no_grad():
        h0 = D.down0(x.float() / 127.5 - 1)       # 16x16
        h2 = D.down2(D.down1(h0))                 # already 4x4
    assert np.allclose(feats[:, :4 * 16], torch.nn.functional.max_pool2d(h0, 4).flatten(1).numpy(), atol=1e-6)
    assert np.allclose(feats[:, -16 * 16:], h2.flatten(1).numpy(), atol=1e-6)
    assert [type(m).__name__ for m in conv_stages(D)] == ["Sequential"] * 3


def test_untrained_copy_has_the_architecture_and_fresh_seeded_weights():
    _, D = build(ArchSpec(resolution=16, channels=1, d_width=8))
    with torch.no_grad():
        for p in D.parameters():
            p.add_(1.0)                           # "trained"
        D.down1[1].running_mean.fill_(3.0)
    state = torch.random.get_rng_state()
    a, b = untrained_copy(D, "dcgan", seed=5), untrained_copy(D, "dcgan", seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)   # the global random state is left alone
    sa, sb, sd = a.state_dict(), b.state_dict(), D.state_dict()
    assert {k: v.shape for k, v in sa.items()} == {k: v.shape for k, v in sd.items()}
    assert all(torch.equal(sa[k], sb[k]) for k in sa)         # same seed, same weights
    assert not torch.equal(sa["down0.0.weight"], sd["down0.0.weight"])
    assert abs(float(sa["down1.0.weight"].std()) - 0.02) < 0.004   # the paper's N(0, 0.02)
    assert torch.equal(sa["down1.1.running_mean"], torch.zeros(16))  # BN statistics reset
    assert not torch.equal(untrained_copy(D, "dcgan", seed=6).state_dict()["down0.0.weight"], sa["down0.0.weight"])
    # the trainer keeps D channels-last; its untrained twin is the one the checkpoint's D gets
    last = untrained_copy(D.to(memory_format=torch.channels_last), "dcgan", seed=5).state_dict()
    assert all(torch.equal(last[k], sa[k]) for k in sa)


def test_untrained_baseline_is_drawn_from_the_seed_it_is_given():
    _, D = build(ArchSpec(resolution=16, channels=1, d_width=8))
    train, test = load_dataset("digits", "train", 16, 1), load_dataset("digits", "test", 16, 1)
    settings = ProbeSettings(labels_per_class=10, draws=2, n_test=0)
    one, again, two = (probe_discriminator(D, "dcgan", train, test, settings, seed=s) for s in (1, 1, 2))
    assert one.scores["random"] == again.scores["random"]                       # same seed, same untrained D
    assert one.scores["random"].accuracies != two.scores["random"].accuracies   # another seed, another draw
    assert one.scores["trained"] == two.scores["trained"] and one.scores["pixels"] == two.scores["pixels"]
    values = two.metric_values()
    assert values["probe_random_seed"] == 2
    assert values["probe_gain"] == values["probe_acc"] - values["probe_random_acc"]


# ---- draws, settings, the classifier ------------------------------------------------------------------


def test_label_draws_are_stratified_disjoint_and_the_same_for_every_run():
    labels = np.repeat(np.arange(4), [30, 40, 50, 60])
    s = ProbeSettings(labels_per_class=20, draws=2)
    fit, held = draw_labelled(labels, s, 0)
    assert not set(fit) & set(held)
    assert np.bincount(labels[np.concatenate([fit, held])]).tolist() == [20] * 4
    assert np.bincount(labels[held]).tolist() == [4] * 4      # a fifth of each class chooses C
    again = draw_labelled(labels, s, 0)
    assert np.array_equal(fit, again[0]) and np.array_equal(held, again[1])
    assert not np.array_equal(fit, draw_labelled(labels, s, 1)[0])
    fit_all, held_all = draw_labelled(labels, ProbeSettings(labels_per_class=0), 0)
    assert len(fit_all) + len(held_all) == len(labels)        # 0: every label
    assert len(scored_test_indices(100, ProbeSettings(n_test=30))) == 30
    assert len(scored_test_indices(100, ProbeSettings(n_test=0))) == 100


def test_settings_check_values_and_read_the_protocol():
    assert ProbeSettings().c_grid == C_GRID == (0.01, 0.1, 1.0)
    for bad in ({"labels_per_class": -1}, {"draws": 0}, {"n_test": -5}, {"c_grid": ()}, {"c_grid": (0.1, -1)}):
        with pytest.raises(SpecError, match="probe"):
            ProbeSettings(**bad)
    s = ProbeSettings.from_protocol(Protocol(), draws=7, n_test=None)
    assert (s.labels_per_class, s.draws, s.n_test) == (Protocol().probe_labels_per_class, 7, Protocol().probe_test)


def test_pixel_probe_on_digits_is_far_above_chance():
    train, test = load_dataset("digits", "train", 16, 1), load_dataset("digits", "test", 16, 1)
    r = probe({"pixels": pixel_features}, train, test, ProbeSettings(labels_per_class=10, draws=2))
    score = r.scores["pixels"]
    assert r.n_labelled == 100 and r.n_test == len(test.images) and r.classes == 10
    assert score.accuracy > 0.7 and len(score.accuracies) == 2 and set(score.chosen_c) <= set(C_GRID)


def test_baseline_scores_are_cached_by_fingerprint_and_give_the_same_numbers(monkeypatch, tmp_path):
    monkeypatch.setenv("GANBENCH_CACHE", str(tmp_path))
    train, test = load_dataset("digits", "train", 16, 1), load_dataset("digits", "test", 16, 1)
    settings = ProbeSettings(labels_per_class=10, draws=2)
    calls = []

    def counted(images):
        calls.append(len(images))
        return pixel_features(images)

    first = probe({"pixels": counted}, train, test, settings, fingerprints={"pixels": "pixels"})
    assert len(calls) == 2 and len(list((tmp_path / "probe").glob("pixels-*.json"))) == 1
    again = probe({"pixels": counted}, train, test, settings, fingerprints={"pixels": "pixels"})
    assert len(calls) == 2 and again.scores == first.scores            # read back, not refitted
    other = probe({"pixels": counted}, train, test, ProbeSettings(labels_per_class=10, draws=3),
                  fingerprints={"pixels": "pixels"})                 # other settings: another entry
    assert len(calls) == 4 and len(other.scores["pixels"].accuracies) == 3
    assert other.scores["pixels"].accuracies[:2] == first.scores["pixels"].accuracies   # same first two draws
    probe({"pixels": counted}, train, test, settings, fingerprints={"pixels": "changed"})
    assert len(calls) == 6                                             # another fingerprint: recomputed


def test_probe_registers_through_the_metric_hook(probe_catalog):
    spec = probe_catalog.metrics.get("probe")
    assert probe_catalog.metrics.origin("probe") == "ganbench.metrics.probe" and spec.when == "final"
    assert spec.outputs == {"probe_acc": True, "probe_acc_std": None, "probe_random_acc": None,
                            "probe_pixels_acc": None, "probe_gain": True}
    assert spec.metadata == ("probe_labels_per_class", "probe_draws", "probe_n_test", "probe_random_seed")


# ---- a run's record ------------------------------------------------------------------------------------


def test_a_run_records_the_probe_metric_and_the_probe_command_adds_probe_json(digits_run):
    final = read_json(digits_run / "summary.json")["final"]
    assert (final["probe_labels_per_class"], final["probe_draws"], final["probe_n_test"]) == (100, 3, 297)
    for key in ("probe_acc", "probe_random_acc", "probe_pixels_acc"):
        assert 0.5 < final[key] <= 1.0, (key, final[key])
    # 40 steps teach this D nothing an untrained one lacks (0.926 to 0.942 over seeds 0-3 against 0.934), but
    # its max-pooled conv features, trained or not, beat raw pixels (0.878) on every seed
    assert min(final["probe_acc"], final["probe_random_acc"]) > final["probe_pixels_acc"] + 0.02

    r = _invoke("probe", digits_run, "--device", "cpu")        # the protocol's settings: those of the metric
    assert r.exit_code == 0, r.output
    assert "trained D" in r.output and "untrained D" in r.output and "pixels" in r.output
    record = read_json(digits_run / "probe.json")
    assert record["variant"] == "dcgan" and record["seed"] == 0 and len(record["probes"]) == 1
    entry = record["probes"][0]
    assert final["probe_gain"] == pytest.approx(final["probe_acc"] - final["probe_random_acc"])
    assert final["probe_random_seed"] == 0                                   # the run's seed
    for key in ("probe_acc", "probe_acc_std", "probe_random_acc", "probe_pixels_acc", "probe_labels_per_class",
                "probe_draws", "probe_n_test", "probe_gain", "probe_random_seed"):
        assert entry[key] == pytest.approx(final[key], abs=1e-9), key   # same D, same draws, same untrained D
    assert entry["settings"]["labels_per_class"] == 100 and entry["settings"]["draws"] == 3
    assert entry["n_labelled"] == 1000 and entry["n_test"] == 297 and entry["step"] == 40
    assert entry["probe_acc"] == entry["scores"]["trained"]["accuracy"]
    assert entry["probe_random_acc"] == entry["scores"]["random"]["accuracy"]
    assert entry["scores"]["trained"]["dim"] == (8 + 16) * 16 and entry["scores"]["pixels"]["dim"] == 256
    # other settings are added beside it; the same settings again replace their entry
    for _ in range(2):
        r = _invoke("probe", digits_run, "--labels-per-class", 5, "--draws", 2, "--format", "json", "--device", "cpu")
        assert r.exit_code == 0, r.output
        shown = json.loads(r.output)
        assert (shown["probe_labels_per_class"], shown["probe_draws"], shown["n_labelled"]) == (5, 2, 50)
    assert [e["probe_labels_per_class"] for e in read_json(digits_run / "probe.json")["probes"]] == [100, 5]


def test_mnist_trained_d_beats_an_untrained_d(tmp_path):
    """32 px (three conv stages), width 32, 600 steps: about 20 s of training on 2 CPU cores. On 10 labels per
    class over 8 draws the trained D scored 0.797, 0.791, 0.792 (training seeds 0, 1, 2) against 0.760 for
    the untrained D (0.753 to 0.773 over five other init seeds) and 0.673 for pixels, ahead on every draw.
    At 16 px (two stages) the gain was 0 to 3 points, and on the embedded digits none: not tested there."""
    needs_shared()
    proto = resolve("smoke", ['dataset="mnist"', "resolution=32", "g_width=32", "d_width=32", "batch_size=64",
                              "steps=600", "eval_every=600", "metrics=[]", 'name="probe-mnist"'])
    result = run_one(RunSpec(proto, "dcgan", 0, tmp_path))
    assert result.status == "complete", result.error
    entry = probe_run(result.spec.run_dir, labels_per_class=10, draws=8, n_test=2000, device="cpu")
    trained, random_d = entry["scores"]["trained"], entry["scores"]["random"]
    gain = np.array(trained["accuracies"]) - np.array(random_d["accuracies"])   # same labels, same test images
    assert gain.mean() > 0.015 and (gain > 0).sum() >= 7, gain
    assert random_d["accuracy"] > entry["probe_pixels_acc"] + 0.03
    stored = read_json(result.spec.run_dir / "probe.json")["probes"][-1]
    assert (stored["probe_acc"], stored["probe_random_acc"]) == (trained["accuracy"], random_d["accuracy"])
    assert (stored["probe_labels_per_class"], stored["probe_draws"], stored["n_test"]) == (10, 8, 2000)


# ---- samples and walks ---------------------------------------------------------------------------------


def test_sample_and_interpolate_write_grids_of_the_right_size(digits_run, tmp_path):
    r = _invoke("sample", digits_run, "--n", 10, "--out", tmp_path / "s.png", "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "s.png").size == (4 * 18 + 2, 3 * 18 + 2)      # 4 columns, 3 rows of 16 px
    assert _invoke("sample", digits_run, "--device", "cpu").exit_code == 0
    assert Image.open(digits_run / "sample-seed-0.png").size == (8 * 18 + 2, 8 * 18 + 2)
    for flag in ([], ["--slerp"]):
        r = _invoke("interpolate", digits_run, "--pairs", 3, "--steps", 7, "--out", tmp_path / "i.png",
                    "--device", "cpu", *flag)
        assert r.exit_code == 0, r.output
        assert Image.open(tmp_path / "i.png").size == (7 * 18 + 2, 3 * 18 + 2)  # columns: steps, rows: pairs
    assert _invoke("interpolate", digits_run, "--device", "cpu").exit_code == 0
    assert Image.open(digits_run / "interpolation-seed-0.png").size == (10 * 18 + 2, 8 * 18 + 2)


@pytest.mark.parametrize("spherical", [False, True])
def test_walk_endpoints_are_the_images_of_z_a_and_z_b(spherical):
    torch.manual_seed(0)
    G = build_generator(ArchSpec(resolution=16, channels=1, g_width=8, z_dim=16))
    z = latent(4 + 32, 16, seed=3)
    za, zb, reference = z[:2], z[2:4], z[4:]
    Gf = frozen_generator(G, reference)
    frames = interpolate(Gf, za, zb, steps=6, spherical=spherical)
    assert frames.shape == (2, 6, 1, 16, 16)
    with torch.no_grad():
        ga, gb = Gf(za), Gf(zb)
    assert torch.allclose(frames[:, 0], ga, atol=1e-5) and torch.allclose(frames[:, -1], gb, atol=1e-5)
    assert not torch.allclose(frames[:, 2], ga, atol=1e-2) and not torch.allclose(frames[:, 2], gb, atol=1e-2)
    points = walk(za, zb, 6, spherical)
    assert torch.equal(points[:, 0], za) and torch.allclose(points[:, -1], zb, atol=1e-6)
    if spherical:   # slerp between two points of similar norm stays near that norm; lerp dips towards 0
        assert points[:, 3].norm(dim=1).min() > 0.9 * torch.minimum(za.norm(dim=1), zb.norm(dim=1)).min()


def test_frozen_generator_images_depend_on_their_own_z_only_and_g_is_left_alone():
    torch.manual_seed(0)
    G = build_generator(ArchSpec(resolution=16, channels=1, g_width=8, z_dim=16))
    stats = G.project[2].running_mean.clone()
    z = latent(8, 16, seed=1)
    Gf = frozen_generator(G, latent(32, 16, seed=2))
    with torch.no_grad():
        assert torch.allclose(Gf(z)[:3], Gf(z[:3]), atol=1e-5)
    batch = sample(G, z, batch_size=8)                 # the trainer's way: batch statistics
    assert not torch.allclose(batch[:3], sample(G, z[:3], batch_size=8), atol=1e-3)
    assert torch.equal(sample(G, z, batch_size=8), batch) and batch.shape == (8, 1, 16, 16)
    assert torch.equal(G.project[2].running_mean, stats) and G.training


# ---- a user's mistakes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["probe", "sample", "interpolate"])
def test_a_missing_or_invalid_run_dir_exits_2_with_one_line(command, tmp_path, digits_run):
    def check(run_dir, expect):
        r = _invoke(command, run_dir)
        assert r.exit_code == 2, r.output
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and expect in lines[0], r.output

    check(tmp_path / "nope", "no such folder")
    check(tmp_path, "no spec.json")
    half = tmp_path / "half"
    half.mkdir()
    (half / "spec.json").write_text((digits_run / "spec.json").read_text())
    check(half, "no checkpoint.pt")
    spec = json.loads((digits_run / "spec.json").read_text())
    spec["variant"]["name"] = "fc-hidden"       # a checkpoint that does not fit the variant named
    (half / "spec.json").write_text(json.dumps(spec))
    (half / "checkpoint.pt").write_bytes((digits_run / "checkpoint.pt").read_bytes())
    check(half, "does not load into variant 'fc-hidden'")


def test_load_run_rebuilds_the_runs_protocol_and_networks(digits_run):
    run = RunRecord(digits_run).load_networks()
    assert run.protocol.name == "probe-smoke" and run.protocol.metrics == ("probe",) and run.step == 40
    assert run.variant == "dcgan" and run.arch.d_width == 8
    ckpt = torch.load(digits_run / "checkpoint.pt", weights_only=True)
    assert all(torch.equal(v, ckpt["D"][k]) for k, v in run.D.state_dict().items())
    train, test = labelled_splits(run.protocol)
    assert len(train.images) == 1500 and len(test.images) == 297


def test_wider_than_long_features_are_rotated_and_the_svm_decides_the_same():
    """With fewer labelled images than features the SVM is fitted on the features' principal axes: the same
    optimum (w lies in the images' span; the dual sees only their inner products), so the same test
    predictions and nearly the same decision values as the SVM on the standardised features themselves."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    from ganbench.metrics.probe import MAX_ITER, _svm

    train, test = load_dataset("digits", "train", 16, 1), load_dataset("digits", "test", 16, 1)
    D = untrained_copy(build(ArchSpec(resolution=16, channels=1, d_width=16))[1], "dcgan", seed=0)
    x, xt = d_features(D, train.images[:120]), d_features(D, test.images)
    y = train.labels[:120].numpy()
    assert x.shape[1] > len(x)                     # wider than long: the rotated case
    for c in C_GRID:
        rotated = _svm(c, *x.shape).fit(x, y)
        assert type(rotated.steps[1][1]).__name__ == "PCA"
        plain = make_pipeline(StandardScaler(), LinearSVC(C=c, dual=True, max_iter=MAX_ITER, random_state=0)).fit(x, y)
        assert (rotated.predict(xt) == plain.predict(xt)).mean() > 0.99
        scale = np.abs(plain.decision_function(xt)).mean()
        assert np.abs(rotated.decision_function(xt) - plain.decision_function(xt)).mean() < 1e-3 * scale   # measured 1.4e-5
    assert len(_svm(1.0, 500, 64).steps) == 2       # longer than wide: no rotation
