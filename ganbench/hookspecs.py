"""The plugin contract: every hook ganbench calls, with what it receives and returns.

A plugin is a module (or object) with functions named like these hooks and marked ``@hookimpl``,
exposed through the ``ganbench`` entry-point group of its package::

    # pyproject.toml of your package
    [project.entry-points.ganbench]
    my_variants = "my_package.plugin"

    # my_package/plugin.py
    from ganbench.hookspecs import hookimpl
    from ganbench.variants import Variant

    @hookimpl
    def ganbench_variants():
        return [Variant("d-wide-kernel", rule="extra", description="D with 6x6 kernels",
                        arch={"kernel": 6})]

ganbench's own variants, data sets, metrics and protocols register through these same hooks. All the
hooks here *register*: they take no arguments, are called once when the plugin catalog is built, and
return a list that ganbench merges into one registry per kind. A name registered by two plugins is an
error that names both.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("ganbench")
hookimpl = pluggy.HookimplMarker("ganbench")


@hookspec
def ganbench_variants() -> list:
    """Variants this plugin adds: a list of ``ganbench.variants.Variant``.

    A variant is a named diff from the paper's network: ArchSpec fields (``arch={"d_act": "relu"}``),
    optimizer settings (``optim=adam_both(lr=1e-3)``), or its own ``builder(ArchSpec) -> (G, D)`` for a
    change the ArchSpec cannot express. ``rule`` is R1..R6 for one of the paper's rules, any other string
    for an idea of your own; ``expects`` maps a metric name to "worse", "better" or "same".
    """


@hookspec
def ganbench_datasets() -> list:
    """Data sets this plugin adds: a list of ``ganbench.data.DatasetSpec``.

    A data set loads real images as one uint8 tensor (N, C, H, W) at the requested resolution and channel
    count, with integer labels where known, for a split ("train" or "test").
    """


@hookspec
def ganbench_protocols() -> list:
    """Protocol presets this plugin adds: a list of ``ganbench.protocol.Protocol``."""


@hookspec
def ganbench_metrics() -> list:
    """Metrics this plugin adds: a list of ``ganbench.metrics.MetricSpec``.

    A metric declares its name, whether higher is better, when it runs ("eval": on the protocol's
    evaluation schedule, "final": once at the end) and a ``compute(ctx) -> dict[str, float]`` over an
    evaluation context (the generator, real data, protocol, device and the run's history so far).
    """
