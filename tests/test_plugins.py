"""The plugin system, for real: the example package through its entry point, autoload on and off, a name
registered twice, a plugin that fails to load, a built-in implementation of every hook, a third party's
plugin using every hook from install to a report without it, and the author's guide checked against the specs."""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import sys
import types
from importlib.metadata import EntryPoint, PackageNotFoundError, version
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from ganbench import hookspecs, plugins
from ganbench.arch import ArchSpec, build
from ganbench.errors import PluginClash
from ganbench.hookspecs import hookimpl
from ganbench.plugins import (BUILTIN_PLUGINS, PLUGIN_ONLY_HOOKS, REGISTERING_HOOKS, Catalog, PluginLoadWarning,
                              get_plugin_manager)
from ganbench.variants import VARIANTS, Rule, Variant

EXTRA_DIST = "ganbench-extra"   # plugins/ganbench-extra
EXTRA_PLUGIN = "extra"          # its entry point's name, which is the plugin's name
EXTRA = ("sn-disc", "d-minibatch-std", "d-lrelu-0.01")
BUILTIN_VARIANTS = [v.name for v in VARIANTS]
HOOKSPECS = sorted(n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "ganbench_spec"))


def _installed(dist: str) -> bool:
    try:
        version(dist)
    except PackageNotFoundError:
        return False
    return True


needs_extra = pytest.mark.skipif(
    not _installed(EXTRA_DIST),
    reason=f"{EXTRA_DIST} is not installed; pip install ./plugins/{EXTRA_DIST} to test the entry point",
)


@functools.cache
def _installed_catalog() -> Catalog:
    """Built-ins plus whatever is installed, as ``ganbench`` itself would see it."""
    return Catalog.from_plugin_manager(get_plugin_manager(autoload=True))


def _module_plugin(name: str, hook: str, items: list) -> types.ModuleType:
    """A plugin as a third party would write one: a module with one ``@hookimpl`` function."""
    module = types.ModuleType(name)

    def impl():
        return items

    setattr(module, hook, hookimpl(impl))
    return module


# ---- the example package, loaded through its entry point ----------------------------------------------


@needs_extra
def test_installed_plugin_loads_through_its_entry_point(monkeypatch):
    monkeypatch.delenv("GANBENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    pm = get_plugin_manager()
    cat = Catalog.from_plugin_manager(pm)
    assert pm.get_plugin(EXTRA_PLUGIN).__name__ == "ganbench_extra.plugin"
    assert {n for n in cat.variants.names() if cat.variants.origin(n) == EXTRA_PLUGIN} == set(EXTRA)
    for name in EXTRA:
        assert cat.variants.get(name).rule == "extra"
    # built-ins register first, so listings start with the paper's variants
    assert cat.variants.names()[:len(BUILTIN_VARIANTS)] == BUILTIN_VARIANTS
    rows = {row["name"]: row for row in cat.plugins()}
    module = pm.get_plugin(EXTRA_PLUGIN)
    assert rows[EXTRA_PLUGIN] == {"name": EXTRA_PLUGIN, "distribution": EXTRA_DIST, "version": version(EXTRA_DIST),
                                  "module": "ganbench_extra.plugin", "hooks": [h for h in HOOKSPECS if hasattr(module, h)],
                                  "clashes": []}
    assert "ganbench_variants" in rows[EXTRA_PLUGIN]["hooks"]
    assert all(rows[b]["distribution"] == "ganbench" for b in BUILTIN_PLUGINS)


@needs_extra
def test_disabling_autoload_hides_installed_plugins(monkeypatch):
    monkeypatch.setenv("GANBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm = get_plugin_manager()
    cat = Catalog.from_plugin_manager(pm)
    assert pm.get_plugin(EXTRA_PLUGIN) is None
    assert not set(EXTRA) & set(cat.variants.names())
    assert cat.variants.names() == BUILTIN_VARIANTS
    assert [row["name"] for row in cat.plugins()] == list(BUILTIN_PLUGINS)


@needs_extra
@pytest.mark.parametrize("name", EXTRA)
def test_plugin_variant_states_its_claim(name):
    v = _installed_catalog().variants.get(name)
    assert v.rule == "extra" and v.description and v.expects
    assert "20" in v.claim, "the claim cites its source (author, year)"


@needs_extra
@pytest.mark.parametrize("name", EXTRA)
@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_plugin_variant_builds_and_runs(name, resolution, channels):
    spec = ArchSpec(resolution=resolution, channels=channels, g_width=8, d_width=8, z_dim=16)
    G, D = _installed_catalog().variants.get(name).build(spec)
    x = G(torch.randn(6, 16))
    assert x.shape == (6, channels, resolution, resolution)
    y = D(x)
    assert y.shape == (6,) and torch.isfinite(y).all()
    (y.sum() + x.sum()).backward()
    assert all(p.grad is not None for p in D.parameters())


def _extra_build(name: str, **arch):
    spec = ArchSpec(**{"resolution": 32, "channels": 3, "g_width": 8, "d_width": 8, "z_dim": 16, **arch})
    return _installed_catalog().variants.get(name).build(spec)


@needs_extra
def test_sn_disc_has_spectral_norm_and_no_batchnorm_in_d():
    G, D = _extra_build("sn-disc")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in D.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in G.modules()), "G stays the paper's"
    weighted = [m for m in D.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weighted) == 4  # three strided convs at 32 px, and the logit
    for m in weighted:
        assert parametrize.is_parametrized(m, "weight")
        assert type(m.parametrizations.weight[0]).__name__ == "_SpectralNorm"
    for _ in range(20):  # power iteration runs once per training-mode forward
        D(torch.randn(4, 3, 32, 32))
    with torch.no_grad():
        sigmas = [torch.linalg.matrix_norm(m.weight.flatten(1), ord=2).item() for m in weighted]
    assert sigmas == pytest.approx([1.0] * len(weighted), abs=0.05)


@needs_extra
@pytest.mark.parametrize("head, fc_hidden", [("linear", 0), ("linear", 1), ("conv", 0), ("gap", 0)])
def test_minibatch_std_sits_before_the_head(head, fc_hidden):
    from ganbench_extra.plugin import MinibatchStdDev

    G, D = _extra_build("d-minibatch-std", d_head=head, fc_hidden=fc_hidden, fc_width=32)
    names = [n for n, _ in D.named_children()]
    assert names[-2:] == ["mbstd", "head"] and names[:-2] == ["down0", "down1", "down2"]
    assert isinstance(D.mbstd, MinibatchStdDev)
    features = D[:-2](G(torch.randn(8, 16)))
    assert D.mbstd(features).shape == (8, features.shape[1] + 1, 4, 4)
    assert D(G(torch.randn(8, 16))).shape == (8,)


@needs_extra
def test_minibatch_std_lets_d_see_the_rest_of_its_group():
    torch.manual_seed(0)
    _, base = _extra_build("dcgan")
    _, D = _extra_build("d-minibatch-std")
    base.eval(), D.eval()  # BN on running statistics: any dependence on other images is the new layer's
    x = torch.randn(4, 3, 32, 32)
    x2 = x.clone()
    x2[1:] = x[:1] + 0.5 * torch.randn(3, 3, 32, 32)  # only the other images of image 0's group change
    with torch.no_grad():
        assert (base(x)[0] - base(x2)[0]).abs() < 1e-8
        assert (D(x)[0] - D(x2)[0]).abs() > 1e-6  # logits are ~1e-4 under N(0, 0.02) weights
        same = D.mbstd(torch.ones(4, 5, 4, 4))
        assert same[:, -1].abs().max() < 1e-3  # identical images: no deviation
        assert D.mbstd(torch.ones(1, 5, 4, 4)).shape == (1, 6, 4, 4)  # a batch of one works (show, FLOPs)


@needs_extra
def test_lrelu_variant_is_a_pure_diff():
    v = _installed_catalog().variants.get("d-lrelu-0.01")
    assert v.builder is None and dict(v.arch) == {"leaky_slope": 0.01}
    _, D = _extra_build("d-lrelu-0.01")
    slopes = {m.negative_slope for m in D.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.01}


# ---- a name registered twice --------------------------------------------------------------------------


def _clashing_pm():
    pm = get_plugin_manager(autoload=False)
    pm.register(_module_plugin("alpha_plugin", "ganbench_variants", [Variant("twin", "-", "one")]), name="alpha")
    pm.register(_module_plugin("beta_plugin", "ganbench_variants", [Variant("twin", "-", "two")]), name="beta")
    return pm


def test_two_plugins_registering_one_new_name_clash():
    cat = Catalog.from_plugin_manager(_clashing_pm(), warn=False)   # built: the clash is collected, not raised
    assert cat.variants.get("twin").description == "one" and cat.variants.origin("twin") == "alpha"   # the first kept
    with pytest.raises(PluginClash, match=r"^variant 'twin' is registered twice: by plugin 'alpha' and by plugin "
                                          r"'beta'; .*ganbench list plugins") as err:
        cat.check()
    assert (err.value.kind, err.value.name, err.value.plugins) == ("variant", "twin", ("alpha", "beta"))


def test_a_clash_stops_run_but_list_plugins_shows_both_plugins_and_the_name(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from ganbench.cli import main

    monkeypatch.setattr(plugins, "get_plugin_manager", lambda autoload=None: _clashing_pm())
    plugins.catalog.cache_clear()
    try:
        runner = CliRunner()
        r = runner.invoke(main, ["run", "--variant", "dcgan", "--protocol", "smoke", "--results", str(tmp_path)])
        assert r.exit_code == 2 and "variant 'twin' is registered twice: by plugin 'alpha' and by plugin 'beta'" in r.output
        assert not any(tmp_path.iterdir())
        for command in (["list"], ["list", "rules"], ["show", "dcgan"]):
            r = runner.invoke(main, command)
            assert r.exit_code == 2 and "registered twice" in r.output, command
        r = runner.invoke(main, ["list", "plugins", "--format", "json"])
        assert r.exit_code == 0, r.output
        rows = {row["name"]: row for row in json.loads(r.stdout)}
        assert rows["alpha"]["clashes"] == ["variant 'twin' (also beta)"]
        assert rows["beta"]["clashes"] == ["variant 'twin' (also alpha)"]
        table = runner.invoke(main, ["list", "plugins"])
        assert table.exit_code == 0 and "alpha" in table.output and "beta" in table.output
        assert "variant 'twin' is registered twice" in table.output     # said once more under the table
    finally:
        plugins.catalog.cache_clear()


@pytest.mark.parametrize("hook", sorted(set(REGISTERING_HOOKS) - set(PLUGIN_ONLY_HOOKS)))
def test_plugin_reusing_a_builtin_name_clashes_with_the_builtin(hook):
    attr, kind = REGISTERING_HOOKS[hook]
    taken = getattr(Catalog.from_plugin_manager(get_plugin_manager(autoload=False)), attr)
    name = taken.names()[0]
    pm = get_plugin_manager(autoload=False)
    items = [types.SimpleNamespace(**{taken.key: n}) for n in ("fresh", name)]
    pm.register(_module_plugin("copycat_plugin", hook, items), name="copycat")
    cat = Catalog.from_plugin_manager(pm, warn=False)
    with pytest.raises(PluginClash) as err:
        cat.check()
    assert str(err.value).startswith(f"{kind} {name!r} is registered twice: by plugin {taken.origin(name)!r} "
                                     f"and by plugin 'copycat'; ")
    assert "fresh" in getattr(cat, attr)        # what does not clash is registered


def test_variants_and_claims_of_a_rule_no_plugin_registers_work_with_one_warning():
    pm = get_plugin_manager(autoload=False)
    pm.register(_module_plugin("lonely_plugin", "ganbench_variants",
                               [Variant("lonely-1", "P9", "one"), Variant("lonely-2", "P9", "two")]), name="lonely")
    with pytest.warns(plugins.PluginWarning) as record:
        cat = Catalog.from_plugin_manager(pm)
    assert len(record) == 1 and cat.notes == [str(record[0].message)]
    assert str(record[0].message).startswith("plugin 'lonely' names rule 'P9' (variant lonely-1, variant lonely-2), "
                                             "which no plugin registers")
    assert cat.check().variants.get("lonely-1").rule == "P9"
    pm.register(_module_plugin("rule_plugin", "ganbench_rules", [Rule("P9", "a rule", "its claim")]), name="ruler")
    assert Catalog.from_plugin_manager(pm).notes == []          # registered by any plugin: no warning


# ---- a plugin that fails to load ----------------------------------------------------------------------


def test_broken_plugins_warn_and_the_rest_keeps_working(monkeypatch):
    good = _module_plugin("ganbench_test_good_plugin", "ganbench_variants", [Variant("good-one", "extra", "fine")])
    monkeypatch.setitem(sys.modules, good.__name__, good)
    wrong_args = _module_plugin("ganbench_test_bad_args", "ganbench_variants", [])
    monkeypatch.setattr(wrong_args, "ganbench_variants", hookimpl(lambda unexpected: []))
    monkeypatch.setitem(sys.modules, wrong_args.__name__, wrong_args)
    eps = [
        EntryPoint(name="broken", value="no_such_module_xyz:plugin", group="ganbench"),
        EntryPoint(name="broken-attr", value="ganbench.variants:no_such_attribute", group="ganbench"),
        EntryPoint(name="broken-hook", value="ganbench_test_bad_args", group="ganbench"),
        EntryPoint(name="good", value="ganbench_test_good_plugin", group="ganbench"),
    ]

    def fake_entry_points(*, group):
        assert group == "ganbench"
        return eps

    monkeypatch.setattr(plugins, "entry_points", fake_entry_points)
    with pytest.warns(PluginLoadWarning) as record:
        pm = get_plugin_manager(autoload=True)
    messages = sorted(str(w.message) for w in record if issubclass(w.category, PluginLoadWarning))
    assert len(messages) == 3
    assert messages[0].startswith("plugin 'broken' (no_such_module_xyz:plugin) failed to load")
    assert "ModuleNotFoundError" in messages[0]
    assert "'broken-attr'" in messages[1] and "AttributeError" in messages[1]
    assert "'broken-hook'" in messages[2] and "unexpected" in messages[2]
    cat = Catalog.from_plugin_manager(pm)
    assert cat.variants.names() == [*BUILTIN_VARIANTS, "good-one"]
    assert cat.variants.origin("good-one") == "good"
    assert [row["name"] for row in cat.plugins()] == [*BUILTIN_PLUGINS, "good"]


def test_broken_plugin_warning_names_it(monkeypatch):
    ep = EntryPoint(name="broken", value="no_such_module_xyz:plugin", group="ganbench")
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [ep])
    with pytest.warns(PluginLoadWarning, match="broken"):
        cat = Catalog.from_plugin_manager(get_plugin_manager(autoload=True))
    assert cat.variants.names() == BUILTIN_VARIANTS


# ---- every hook has a built-in implementation ---------------------------------------------------------


def test_hookspecs_are_found():
    assert HOOKSPECS == sorted(REGISTERING_HOOKS), "every hook is merged into the catalog"


def test_plugin_only_hooks_have_no_builtin_implementation():
    pm = get_plugin_manager(autoload=False)
    for hook in PLUGIN_ONLY_HOOKS:
        assert not getattr(pm.hook, hook).get_hookimpls()


@pytest.mark.parametrize("hook", sorted(set(HOOKSPECS) - set(PLUGIN_ONLY_HOOKS)))
def test_every_hook_has_a_builtin_implementation(hook):
    pm = get_plugin_manager(autoload=False)
    impls = getattr(pm.hook, hook).get_hookimpls()
    assert {impl.plugin_name for impl in impls} & set(BUILTIN_PLUGINS)
    items = [item for impl in impls for item in impl.function()]
    attr, _ = REGISTERING_HOOKS[hook]
    registry = getattr(Catalog.from_plugin_manager(pm), attr)
    assert items and all(isinstance(getattr(item, registry.key), str) and getattr(item, registry.key) for item in items)
    assert registry.names() == [getattr(item, registry.key) for item in items]
    assert {registry.origin(n) for n in registry.names()} <= set(BUILTIN_PLUGINS)


def test_builtin_variants_are_registered_by_the_variants_plugin():
    cat = Catalog.from_plugin_manager(get_plugin_manager(autoload=False))
    assert len(cat.variants) == len(VARIANTS) > 0 and "dcgan" in cat.variants
    assert {cat.variants.origin(n) for n in cat.variants.names()} == {"ganbench.variants"}


# ---- a third party's plugin, end to end: installed, run, reported, uninstalled, reported again ----------

MYPLUG = '''"""myplug: a throwaway ganbench plugin, written from docs/plugins.md alone."""
import math
from collections import OrderedDict

import torch
import torch_fidelity
from torch import nn

from ganbench.arch import build, init_weights
from ganbench.claims import Claim
from ganbench.data import DatasetSpec, ImageSet
from ganbench.hookspecs import hookimpl
from ganbench.metrics import ExtractorSpec, MetricSpec
from ganbench.protocol import Protocol
from ganbench.variants import Rule, Variant


def build_d_mix(spec):
    """The paper's G; D with a 1x1 convolution mixing its 4x4 features before its head."""
    G, D = build(spec)
    width = spec.d_width * 2 ** (spec.stages - 1)
    mix = nn.Sequential(nn.Conv2d(width, width, 1, bias=False), nn.LeakyReLU(spec.leaky_slope))
    init_weights(mix, spec.init)
    stages = [(name, m) for name, m in D.named_children() if name != "head"]    # down0, down1, ...
    return G, nn.Sequential(OrderedDict([*stages, ("mix", mix), ("head", D.head)]))


def load_blobs(split, resolution, channels, root, seed):
    """One Gaussian blob per image, at a random place and size: no labels."""
    gen = torch.Generator().manual_seed(2 * seed + (split == "test"))
    n = 512 if split == "train" else 256
    y, x = torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")
    cy, cx = (torch.rand(2, n, 1, 1, generator=gen) * resolution).unbind(0)
    r = 1.5 + torch.rand(n, 1, 1, generator=gen) * resolution / 6
    img = torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r ** 2))
    images = (img * 255).round().to(torch.uint8).unsqueeze(1).expand(n, channels, resolution, resolution)
    return ImageSet(images.contiguous(), None)


class PooledPixels(torch_fidelity.FeatureExtractorBase):
    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)

    @staticmethod
    def get_provided_features_list():
        return ("pooled",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "pooled"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None

    def forward(self, x):
        return (nn.functional.adaptive_avg_pool2d(x.float() / 127.5 - 1, 4).flatten(1),)


def sharpness(ctx):
    fake = ctx.fake_images()
    if fake is None:
        return {"sharpness": math.nan}
    x = fake.float() / 127.5 - 1
    lap = x[..., 1:-1, 1:-1] * 4 - x[..., :-2, 1:-1] - x[..., 2:, 1:-1] - x[..., 1:-1, :-2] - x[..., 1:-1, 2:]
    return {"sharpness": float(lap.abs().mean()), "sharpness_n": len(fake)}


@hookimpl
def ganbench_rules():
    return [Rule("P1", "mix D's last features before its logit", "mixing sharpens what D looks at")]


@hookimpl
def ganbench_claims():
    return [Claim("P1.sharper", "P1", "a D that mixes its features makes G's samples sharper",
                  variants=("d-mix",), metric="sharpness", direction="better")]


@hookimpl
def ganbench_variants():
    return [Variant("d-mix", rule="P1", description="D: a 1x1 conv mixing its 4x4 features",
                    expects={"sharpness": "better"}, builder=build_d_mix)]


@hookimpl
def ganbench_datasets():
    return [DatasetSpec("blobs", "one Gaussian blob an image", load_blobs, None, "blob", needs_root=False)]


@hookimpl
def ganbench_extractors():
    return [ExtractorSpec("pooled-pixels", "4x4 average-pooled pixels", PooledPixels, "pooled", families=("blob",))]


@hookimpl
def ganbench_metrics():
    return [MetricSpec("sharpness", "mean absolute Laplacian of the samples", sharpness, {"sharpness": True},
                       metadata=("sharpness_n",), ratio_scale=("sharpness",))]


@hookimpl
def ganbench_protocols():
    return [Protocol(name="blobs-smoke", description="seconds: blobs at 16 px", dataset="blobs", resolution=16,
                     g_width=8, d_width=8, z_dim=16, batch_size=32, steps=20, eval_every=10, n_eval=256,
                     n_final=256, n_real=256, seeds=2, metrics=("quality", "stability", "sharpness"))]
'''


def _install_throwaway_plugin(root, monkeypatch) -> None:
    """``myplug`` as a real distribution with an entry point, found through ``sys.path`` only."""
    (root / "myplug").mkdir(parents=True)
    (root / "myplug" / "__init__.py").write_text(MYPLUG)
    info = root / "myplug-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: myplug\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ganbench]\nmyplug = myplug\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delenv("GANBENCH_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    found = plugins.entry_points   # importlib.metadata's own lookup, less the other plugins installed here
    monkeypatch.setattr(plugins, "entry_points", lambda *, group: [ep for ep in found(group=group) if ep.name == "myplug"])
    plugins.catalog.cache_clear()


def test_a_third_party_plugin_runs_and_its_rule_is_reported_with_and_without_it(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from ganbench.cli import main
    from ganbench.suite import expand_variants

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))   # no InceptionV3: its own extractor
    monkeypatch.setitem(sys.modules, "myplug", None)          # so that undo() forgets the module imported below
    del sys.modules["myplug"]
    _install_throwaway_plugin(tmp_path / "site", monkeypatch)
    results, runner = tmp_path / "results", CliRunner()
    try:
        cat = plugins.catalog()
        assert [name for name, _ in cat.pm.list_name_plugin()] == [*BUILTIN_PLUGINS, "myplug"]
        assert not cat.notes and not cat.clashes
        for kind, name in (("variants", "d-mix"), ("rules", "P1"), ("claims", "P1.sharper"), ("datasets", "blobs"),
                           ("metrics", "sharpness"), ("extractors", "pooled-pixels"), ("protocols", "blobs-smoke")):
            assert cat.provenance(kind, name) == {"plugin": "myplug", "distribution": "myplug", "version": "0.1"}
        assert expand_variants(["P1"]) == ("d-mix",)
        shown = runner.invoke(main, ["show", "d-mix", "--resolution", "16", "--width", "8", "--channels", "1",
                                     "--format", "json"])
        assert shown.exit_code == 0, shown.output
        assert [row["module"] for row in json.loads(shown.stdout)["layers"]["D"]][:3] == ["down0.0", "down0.1", "down1.0"]
        listed = runner.invoke(main, ["list", "rules", "--format", "json"])
        assert [r["id"] for r in json.loads(listed.stdout)] == ["R1", "R2", "R3", "R4", "R5", "R6", "P1"]
        r = runner.invoke(main, ["run", "--protocol", "smoke", "--variant", "d-mix", "--variant", "dcgan",
                                 "--set", 'dataset="blobs"', "--set", 'metrics=["quality", "stability", "sharpness"]',
                                 "--seeds", "2", "--results", str(results)], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        spec = json.loads((results / "smoke" / "d-mix" / "seed-0" / "spec.json").read_text())
        assert spec["rule"] == {"id": "P1", "text": "mix D's last features before its logit",
                                "claim": "mixing sharpens what D looks at", "plugin": "myplug",
                                "distribution": "myplug", "version": "0.1"}
        assert [c["id"] for c in spec["claims"]] == ["P1.sharper"] and spec["claims"][0]["plugin"] == "myplug"
        assert spec["metrics"]["sharpness"]["outputs"] == {"sharpness": True}
        assert spec["metrics"]["sharpness"]["ratio_scale"] == ["sharpness"]
        assert spec["dataset"]["family"] == "blob" and spec["variant"]["distribution"] == "myplug"
        summary = json.loads((results / "smoke" / "d-mix" / "seed-0" / "summary.json").read_text())
        assert summary["final"]["quality_extractor"] == "pooled-pixels-v1" and summary["final"]["sharpness"] > 0
        dcgan = json.loads((results / "smoke" / "dcgan" / "seed-0" / "spec.json").read_text())
        # the baseline's records carry every claim it is the baseline of, the plugin's and the paper's
        assert {"P1.sharper", "R1.learn-downsampling"} <= {c["id"] for c in dcgan["claims"]}
        assert dcgan["rule"] == {"id": "-", "text": "", "claim": ""}
        with_plugin = _report(runner, results, tmp_path / "with.json")
    finally:
        plugins.catalog.cache_clear()
    # uninstalled: its module gone from sys.path and autoload off; every plugin-declared property from the records
    monkeypatch.undo()
    monkeypatch.setenv("GANBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
    plugins.catalog.cache_clear()
    assert "d-mix" not in plugins.catalog().variants and "P1" not in plugins.catalog().rules
    without = _report(runner, results, tmp_path / "without.json")
    for report in (with_plugin, without):
        # reported as what they trained: a builder's networks are its own, not dcgan's (re-labelling compares them)
        assert {r["variant"] for r in report["runs"]} == {"d-mix", "dcgan"}
        assert not [w for w in report["warnings"] if "trained as" in w]
        rule = {r["rule"]: r for r in report["rules"]}["P1"]
        assert rule["paper_rule"] == "mix D's last features before its logit"
        assert rule["rule_claim"] == "mixing sharpens what D looks at"
        claim = {c["claim"]: c for c in report["claims"]}["P1.sharper"]
        assert claim["text"] == "a D that mixes its features makes G's samples sharper"
        assert (claim["variant"], claim["metric"], claim["expected"], claim["better"]) == (
            "d-mix", "sharpness", "better", "higher")
        assert claim["verdict"] in ("supported", "contradicted", "inconclusive", "underpowered")
        assert claim["scale"] == "log-ratio"      # as the plugin declared it, installed or not
        scales = {c["metric"]: c["scale"] for c in report["comparisons"] if c["variant"] == "d-mix"}
        assert scales["sharpness"] == scales["fid"] == "log-ratio" and scales["precision"] == "difference"
        sharp = [a for a in report["aggregates"] if a["metric"] == "sharpness"]
        assert sharp and {a["better"] for a in sharp} == {"higher"}
        # the built-in claims no run here tests are still accounted for
        assert {c["claim"]: c for c in report["claims"]}["R6.lr"]["verdict"] == "untested"
    assert with_plugin["rules"] == without["rules"] and with_plugin["claims"] == without["claims"]


def _report(runner, results, out) -> dict:
    from ganbench.cli import main

    r = runner.invoke(main, ["report", "--results", str(results), "--format", "json", "--out", str(out)],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())


# ---- the author's guide cannot drift from the specs ------------------------------------------------------

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"


def _spec_classes() -> dict[str, type]:
    from ganbench.arch import ArchSpec
    from ganbench.claims import Claim
    from ganbench.data import DatasetSpec, ImageSet
    from ganbench.metrics import EvalContext, ExtractorSpec, MetricSpec
    from ganbench.protocol import Protocol
    from ganbench.variants import Adam, OptimSpec

    return {f"{c.__module__}.{c.__name__}": c for c in (Variant, OptimSpec, Adam, ArchSpec, Rule, Claim, DatasetSpec,
                                                          ImageSet, MetricSpec, EvalContext, ExtractorSpec, Protocol)}


def _guide_tables() -> dict[str, dict[str, list[str]]]:
    """Class path -> {name in the first column: the row's cells} for each table under ``<!-- fields: PATH -->``."""
    tables: dict[str, dict[str, list[str]]] = {}
    current = None
    for line in GUIDE.read_text().splitlines():
        marker = re.fullmatch(r"<!-- fields: ([\w.]+) -->", line.strip())
        if marker:
            current = tables.setdefault(marker.group(1), {})
        elif current is not None and line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            name = re.fullmatch(r"`(\w+)(\(\))?`", cells[0])
            if name:
                current[name.group(1)] = cells
        elif current is not None and current:
            current = None    # the table ended
    return tables


def test_the_guide_has_a_table_for_every_spec_a_plugin_author_fills_in():
    assert set(_guide_tables()) == set(_spec_classes())


@pytest.mark.parametrize("path", sorted(_spec_classes()))
def test_the_guide_describes_every_field_with_its_default(path):
    cls = _spec_classes()[path]
    rows = _guide_tables()[path]
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not f.name.startswith("_")}
    assert set(fields) <= set(rows), f"docs/plugins.md lacks {sorted(set(fields) - set(rows))} of {path}"
    public = {n for n in dir(cls) if not n.startswith("_")}
    assert set(rows) - set(fields) <= public, f"docs/plugins.md describes what {path} does not have"
    for name, f in fields.items():
        default = rows[name][2]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            assert default == "required", (path, name, default)
            continue
        assert default != "required", (path, name)
        value = f.default
        if isinstance(value, bool) or value is None:
            assert default == f"`{value}`", (path, name, default)
        elif isinstance(value, (int, float)):
            assert float(default.strip("`")) == value, (path, name, default)
        elif isinstance(value, str) and default.startswith("`"):
            assert default == f'`"{value}"`', (path, name, default)


def _allowed_values() -> dict[tuple[str, str], list[str]]:
    from ganbench import arch, metrics, protocol
    from ganbench.claims import REQUIREMENTS
    from ganbench.metrics.features import FAMILIES
    from ganbench.variants import DIRECTIONS

    a = "ganbench.arch.ArchSpec"
    p = "ganbench.protocol.Protocol"
    return {(a, "g_input"): list(arch.G_INPUTS), (a, "g_upsample"): list(arch.UPSAMPLERS),
            (a, "d_downsample"): list(arch.DOWNSAMPLERS), (a, "d_head"): list(arch.D_HEADS),
            (a, "g_act"): list(arch.ACTIVATIONS), (a, "d_act"): list(arch.ACTIVATIONS), (a, "g_out"): list(arch.OUTPUTS),
            (a, "bias"): list(arch.BIAS_POLICIES), (a, "init"): list(arch.INITS), (a, "g_bn"): list(arch.BN_POLICIES),
            (a, "d_bn"): list(arch.BN_POLICIES), (p, "extractor"): list(protocol.EXTRACTORS),
            (p, "precision"): list(protocol.PRECISIONS), (p, "device"): list(protocol.DEVICES),
            (p, "reference_split"): ["test", "train"], ("ganbench.metrics.MetricSpec", "when"): list(metrics.WHEN),
            ("ganbench.variants.Variant", "expects"): list(DIRECTIONS),
            ("ganbench.claims.Claim", "direction"): list(DIRECTIONS), ("ganbench.claims.Claim", "needs"): list(REQUIREMENTS),
            ("ganbench.data.DatasetSpec", "family"): list(FAMILIES)}


@pytest.mark.parametrize("path, field", sorted(_allowed_values()))
def test_the_guide_lists_every_allowed_value(path, field):
    row = " | ".join(_guide_tables()[path][field])
    missing = [v for v in _allowed_values()[(path, field)] if f'`"{v}"`' not in row]
    assert not missing, f"docs/plugins.md: {path}.{field} does not list {missing}"


def test_the_hookspecs_point_to_the_guide_and_their_example_changes_d_only():
    from ganbench.arch import ArchSpec

    assert "docs/plugins.md" in hookspecs.__doc__
    example = re.search(r'arch=(\{[^}]*\})', hookspecs.__doc__).group(1)
    changed = eval(example)   # noqa: S307  (our own docstring)
    base = ArchSpec(resolution=32, channels=1, g_width=8, d_width=8, z_dim=16)
    G0, D0 = build(base)
    G1, D1 = build(dataclasses.replace(base, **changed))
    assert repr(G0) == repr(G1) and repr(D0) != repr(D1)
    assert all(f'"{hook}' in GUIDE.read_text() or f"`{hook}`" in GUIDE.read_text() for hook in HOOKSPECS)
