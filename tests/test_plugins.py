"""The plugin system, for real: the example package through its entry point, autoload on and off, a name
registered twice, a plugin that fails to load, and a built-in implementation of every hook."""

from __future__ import annotations

import functools
import json
import sys
import types
from importlib.metadata import EntryPoint, PackageNotFoundError, version

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from ganbench import hookspecs, plugins
from ganbench.arch import ArchSpec
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


def _named(*names: str) -> list:
    return [types.SimpleNamespace(name=n) for n in names]


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
