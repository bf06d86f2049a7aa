"""The plugin manager and the catalog of everything the plugins registered.

Built-ins are plugins too: each built-in module is registered through the very same hooks as a
third-party package, then the ``ganbench`` entry points are loaded. A plugin that fails to import is
skipped with a warning naming it. ``GANBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points altogether
(hermetic tests).
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points

import pluggy

from ganbench import hookspecs
from ganbench.registry import Registry

BUILTIN_PLUGINS = (
    "ganbench.variants",
    "ganbench.data",
    "ganbench.protocol",
    "ganbench.metrics",
    "ganbench.metrics.probe",
)

ENTRY_POINT_GROUP = "ganbench"

# hook name -> (catalog attribute, kind as named in messages)
REGISTERING_HOOKS = {
    "ganbench_variants": ("variants", "variant"),
    "ganbench_datasets": ("datasets", "data set"),
    "ganbench_protocols": ("protocols", "protocol"),
    "ganbench_metrics": ("metrics", "metric"),
}


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded; everything else still works."""


def get_plugin_manager(autoload: bool | None = None) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("ganbench")
    pm.add_hookspecs(hookspecs)
    for module in BUILTIN_PLUGINS:
        pm.register(importlib.import_module(module), name=module)
    if autoload is None:
        autoload = not os.environ.get("GANBENCH_DISABLE_PLUGIN_AUTOLOAD")
    if autoload:
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
                continue
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
                pm.check_pending()  # a hookimpl that matches no hookspec is a typo in that plugin
            except Exception as exc:  # a broken plugin must not take ganbench down
                if pm.get_plugin(ep.name) is not None:
                    pm.unregister(name=ep.name)
                warnings.warn(f"plugin {ep.name!r} ({ep.value}) failed to load and was skipped: "
                              f"{type(exc).__name__}: {exc}", PluginLoadWarning, stacklevel=2)
                continue
            _DISTRIBUTIONS[ep.name] = ep.dist.name if ep.dist else ""
            _VERSIONS[ep.name] = ep.dist.version if ep.dist else ""
    pm.check_pending()  # a built-in hookimpl that matches no hookspec is our own typo: fail loudly
    return pm


_DISTRIBUTIONS: dict[str, str] = {}
_VERSIONS: dict[str, str] = {}


@dataclass
class Catalog:
    """Every variant, data set, protocol and metric, with the plugin that added it."""

    pm: pluggy.PluginManager
    variants: Registry = field(default_factory=lambda: Registry("variant"))
    datasets: Registry = field(default_factory=lambda: Registry("data set"))
    protocols: Registry = field(default_factory=lambda: Registry("protocol"))
    metrics: Registry = field(default_factory=lambda: Registry("metric"))

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager) -> "Catalog":
        cat = cls(pm)
        for hook_name, (attr, _kind) in REGISTERING_HOOKS.items():
            registry: Registry = getattr(cat, attr)
            # get_hookimpls() lists in registration order: built-ins first, then entry-point plugins
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                registry.extend(impl.function() or [], origin=impl.plugin_name)
        return cat

    def provenance(self, kind: str, name: str) -> dict[str, str]:
        """Which plugin (and distribution and version) registered ``name`` among the catalog's ``kind``
        ("variants", "datasets", "metrics", "protocols"): recorded in every run so a run can be traced."""
        plugin = getattr(self, kind).origin(name)
        builtin = plugin in BUILTIN_PLUGINS
        return {"plugin": plugin,
                "distribution": "ganbench" if builtin else _DISTRIBUTIONS.get(plugin, ""),
                "version": _builtin_version() if builtin else _VERSIONS.get(plugin, "")}

    def rows(self, what: str) -> tuple[list[dict], list[str]]:
        """``ganbench list WHAT``: one row per registered item, and the columns a table shows."""
        if what == "variants":
            rows = [{"name": v.name, "rule": v.rule, "description": v.description,
                     "plugin": self.variants.origin(v.name), "expects": dict(v.expects)} for v in self.variants]
            return rows, ["name", "rule", "description", "plugin"]
        if what == "datasets":
            rows = [{"name": d.name, "description": d.description, "classes": d.num_classes,
                     "plugin": self.datasets.origin(d.name)} for d in self.datasets]
            return rows, ["name", "description", "classes", "plugin"]
        if what == "metrics":
            rows = [{"name": m.name, "description": m.description, "when": m.when, "outputs": sorted(m.outputs),
                     "plugin": self.metrics.origin(m.name)} for m in self.metrics]
            return rows, ["name", "description", "when", "outputs", "plugin"]
        if what == "protocols":
            rows = [{"name": p.name, "description": p.description, "dataset": p.dataset, "resolution": p.resolution,
                     "steps": p.steps, "plugin": self.protocols.origin(p.name)} for p in self.protocols]
            return rows, ["name", "description", "dataset", "resolution", "steps", "plugin"]
        return self.plugins(), ["name", "distribution", "version", "module", "hooks"]

    def plugins(self) -> list[dict]:
        """Each plugin: name, distribution, version, where it lives, and which hooks it implements."""
        rows = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            builtin = name in BUILTIN_PLUGINS
            rows.append({
                "name": name,
                "distribution": "ganbench" if builtin else _DISTRIBUTIONS.get(name, ""),
                "version": _builtin_version() if builtin else _VERSIONS.get(name, ""),
                "module": getattr(plugin, "__name__", type(plugin).__name__),
                "hooks": hooks,
            })
        return rows


def _builtin_version() -> str:
    from ganbench import __version__
    return __version__


@cache
def catalog() -> Catalog:
    """The catalog of this process, built on first use."""
    return Catalog.from_plugin_manager(get_plugin_manager())
