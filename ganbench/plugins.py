"""The plugin manager and the catalog of everything the plugins registered.

Built-ins are plugins too: each built-in module is registered through the very same hooks as a
third-party package, then the ``ganbench`` entry points are loaded. A plugin that fails to import is
skipped with a warning naming it. ``GANBENCH_DISABLE_PLUGIN_AUTOLOAD=1`` skips entry points altogether
(hermetic tests).

A name two plugins register is a clash: the catalog keeps the first registration and notes the clash;
``catalog()`` (what ``run``, ``show`` and ``report`` use) then raises ``PluginClash`` naming both plugins,
while ``loaded_catalog()`` (``ganbench list``) lists everything, the clashes included. A variant or claim
naming a rule no plugin registers is allowed, with a ``PluginWarning``: it runs, but no rule text is recorded.
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
from ganbench.errors import PluginClash
from ganbench.registry import Registry
from ganbench.variants import NO_RULE

BUILTIN_PLUGINS = (
    "ganbench.variants",
    "ganbench.claims",
    "ganbench.data",
    "ganbench.protocol",
    "ganbench.metrics",
    "ganbench.metrics.probe",
)

ENTRY_POINT_GROUP = "ganbench"

# hook name -> (catalog attribute, kind as named in messages)
REGISTERING_HOOKS = {
    "ganbench_variants": ("variants", "variant"),
    "ganbench_rules": ("rules", "rule"),
    "ganbench_claims": ("claims", "claim"),
    "ganbench_datasets": ("datasets", "data set"),
    "ganbench_protocols": ("protocols", "protocol"),
    "ganbench_metrics": ("metrics", "metric"),
    "ganbench_extractors": ("extractors", "extractor"),
}
# hooks no built-in module implements: ganbench's own extractors (InceptionV3, the domain classifiers) are
# chosen by the protocol's ``extractor`` key (``ganbench.metrics.features``)
PLUGIN_ONLY_HOOKS = ("ganbench_extractors",)


class PluginLoadWarning(UserWarning):
    """A plugin could not be loaded; everything else still works."""


class PluginWarning(UserWarning):
    """A plugin registered something that works but is incomplete (a rule no plugin registers)."""


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


def _registry(kind: str, attr: str) -> Registry:
    return Registry(kind, key="id" if attr in ("rules", "claims") else "name")


@dataclass
class Catalog:
    """Every variant, rule, claim, data set, protocol, metric and extractor, with the plugin that added it,
    and the names two plugins registered (``clashes``: the first registration is kept)."""

    pm: pluggy.PluginManager
    variants: Registry = field(default_factory=lambda: _registry("variant", "variants"))
    rules: Registry = field(default_factory=lambda: _registry("rule", "rules"))
    claims: Registry = field(default_factory=lambda: _registry("claim", "claims"))
    datasets: Registry = field(default_factory=lambda: _registry("data set", "datasets"))
    protocols: Registry = field(default_factory=lambda: _registry("protocol", "protocols"))
    metrics: Registry = field(default_factory=lambda: _registry("metric", "metrics"))
    extractors: Registry = field(default_factory=lambda: _registry("extractor", "extractors"))
    clashes: list[PluginClash] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)      # what works but is incomplete (PluginWarning), one line each

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager, warn: bool = True) -> "Catalog":
        """Every hook's lists merged into one registry per kind. Clashes are collected, not raised (``check``
        raises them); a rule no plugin registers is noted, and warned about unless ``warn`` is False."""
        cat = cls(pm)
        for hook_name, (attr, _kind) in REGISTERING_HOOKS.items():
            registry: Registry = getattr(cat, attr)
            # get_hookimpls() lists in registration order: built-ins first, then entry-point plugins
            for impl in getattr(pm.hook, hook_name).get_hookimpls():
                for item in impl.function() or []:
                    try:
                        registry.add(item, origin=impl.plugin_name)
                    except PluginClash as clash:
                        cat.clashes.append(clash)
        cat.notes = cat._unregistered_rules()
        for note in cat.notes if warn else ():
            warnings.warn(note, PluginWarning, stacklevel=2)
        return cat

    def _unregistered_rules(self) -> list[str]:
        """One line per (plugin, rule) for the variants and claims naming a rule no plugin registers."""
        users: dict[tuple[str, str], list[str]] = {}
        for kind, registry in (("variant", self.variants), ("claim", self.claims)):
            for name in registry.names():
                rule = getattr(registry.get(name), "rule", NO_RULE)
                if rule != NO_RULE and rule not in self.rules:
                    users.setdefault((registry.origin(name), rule), []).append(f"{kind} {name}")
        return [f"plugin {plugin!r} names rule {rule!r} ({', '.join(names)}), which no plugin registers: it works, "
                "but runs record no text for the rule; register it with the ganbench_rules hook (docs/plugins.md)"
                for (plugin, rule), names in users.items()]

    def check(self) -> "Catalog":
        """This catalog, or ``PluginClash`` for the first name two plugins registered (and how many more)."""
        if self.clashes:
            first, more = self.clashes[0], len(self.clashes) - 1
            raise PluginClash(f"{first}" + (f" (and {more} more name clash{'es' if more > 1 else ''})" if more else "")
                              + "; uninstall or fix one of them (`ganbench list plugins` shows every plugin and "
                              "its clashing names)", kind=first.kind, name=first.name, plugins=first.plugins)
        return self

    def provenance(self, kind: str, name: str) -> dict[str, str]:
        """Which plugin (and distribution and version) registered ``name`` among the catalog's ``kind``
        ("variants", "rules", "claims", "datasets", "metrics", "protocols", "extractors"): recorded in every
        run so a run can be traced."""
        return _plugin_source(getattr(self, kind).origin(name))

    def rows(self, what: str) -> tuple[list[dict], list[str]]:
        """``ganbench list WHAT``: one row per registered item, and the columns a table shows."""
        if what == "variants":
            rows = [{"name": v.name, "rule": v.rule, "description": v.description,
                     "plugin": self.variants.origin(v.name), "expects": dict(v.expects)} for v in self.variants]
            return rows, ["name", "rule", "description", "plugin"]
        if what == "rules":
            rows = [{"id": r.id, "text": r.text, "claim": r.claim, "plugin": self.rules.origin(r.id),
                     "variants": [v.name for v in self.variants if v.rule == r.id]} for r in self.rules]
            return rows, ["id", "text", "variants", "plugin"]
        if what == "claims":
            rows = [{"id": c.id, "rule": c.rule, "variants": list(c.variants), "baseline": c.baseline,
                     "endpoint": f"{c.metric} {c.direction}".strip() or "-", "untested": c.untested,
                     "text": c.text, "plugin": self.claims.origin(c.id)} for c in self.claims]
            return rows, ["id", "variants", "baseline", "endpoint", "untested", "plugin"]
        if what == "datasets":
            rows = [{"name": d.name, "description": d.description, "family": d.family, "classes": d.num_classes,
                     "plugin": self.datasets.origin(d.name)} for d in self.datasets]
            return rows, ["name", "description", "family", "classes", "plugin"]
        if what == "metrics":
            rows = [{"name": m.name, "description": m.description, "when": m.when, "outputs": sorted(m.outputs),
                     "plugin": self.metrics.origin(m.name)} for m in self.metrics]
            return rows, ["name", "description", "when", "outputs", "plugin"]
        if what == "protocols":
            rows = [{"name": p.name, "description": p.description, "dataset": p.dataset, "resolution": p.resolution,
                     "steps": p.steps, "plugin": self.protocols.origin(p.name)} for p in self.protocols]
            return rows, ["name", "description", "dataset", "resolution", "steps", "plugin"]
        if what == "extractors":
            rows = [{"name": e.name, "description": e.description, "serves": [*e.datasets, *e.families],
                     "layer": e.layer, "plugin": self.extractors.origin(e.name)} for e in self.extractors]
            return rows, ["name", "description", "serves", "layer", "plugin"]
        return self.plugins(), ["name", "distribution", "version", "module", "hooks", "clashes"]

    def plugins(self) -> list[dict]:
        """Each plugin: name, distribution, version, where it lives, which hooks it implements, and the names it
        registered that another plugin registered too (``clashes``, each with the other plugin)."""
        clashes: dict[str, list[str]] = {}
        for c in self.clashes:
            first, second = c.plugins
            clashes.setdefault(first, []).append(f"{c.kind} {c.name!r} (also {second})")
            clashes.setdefault(second, []).append(f"{c.kind} {c.name!r} (also {first})")
        rows = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            rows.append({**_plugin_source(name), "name": name,
                         "module": getattr(plugin, "__name__", type(plugin).__name__), "hooks": hooks,
                         "clashes": clashes.get(name, [])})
        return [{k: r[k] for k in ("name", "distribution", "version", "module", "hooks", "clashes")} for r in rows]


def _plugin_source(plugin: str) -> dict[str, str]:
    builtin = plugin in BUILTIN_PLUGINS
    return {"plugin": plugin,
            "distribution": "ganbench" if builtin else _DISTRIBUTIONS.get(plugin, ""),
            "version": _builtin_version() if builtin else _VERSIONS.get(plugin, "")}


def _builtin_version() -> str:
    from ganbench import __version__
    return __version__


@cache
def loaded_catalog() -> Catalog:
    """The catalog of this process, built on first use, clashes and all (``ganbench list``)."""
    return Catalog.from_plugin_manager(get_plugin_manager())


def catalog() -> Catalog:
    """The catalog of this process; ``PluginClash`` when two plugins registered one name."""
    return loaded_catalog().check()


catalog.cache_clear = loaded_catalog.cache_clear   # type: ignore[attr-defined]  # forget the catalog: rebuilt on next use
