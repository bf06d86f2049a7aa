"""The plugin contract: every hook ganbench calls, with what it receives and returns.

The author's guide, with every field of every spec and a worked plugin, is ``docs/plugins.md``.

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
        # d_* fields change D only; maxout_k only where maxout is used (the paper's G uses ReLU)
        return [Variant("d-maxout-3", rule="R5", description="D: maxout over 3 pieces instead of LeakyReLU",
                        expects={"fid": "worse"}, arch={"d_act": "maxout", "maxout_k": 3})]

ganbench's own variants, rules, claims, data sets, metrics and protocols register through these same
hooks. All the hooks here *register*: they take no arguments, are called once when the plugin catalog is
built, and return a list that ganbench merges into one registry per kind. A name (an id, for rules and
claims) registered by two plugins stops ``ganbench run``, ``show`` and ``report`` with an error naming both;
``ganbench list plugins`` still lists both, with the clashing names. ``GANBENCH_DISABLE_PLUGIN_AUTOLOAD=1``
loads the built-ins only.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("ganbench")
hookimpl = pluggy.HookimplMarker("ganbench")


@hookspec
def ganbench_variants() -> list:
    """Variants this plugin adds: a list of ``ganbench.variants.Variant``.

    A variant is a named diff from the paper's network under the protocol's ArchSpec: ArchSpec fields
    (``arch={"d_act": "relu"}``; the ``g_*`` fields change G only, the ``d_*`` fields D only, the others
    both), optimizer settings (``optim=adam_both(lr=1e-3)``), or its own ``builder(ArchSpec) -> (G, D)`` for
    a change the ArchSpec cannot express. A builder starts from ``ganbench.arch.build(spec)``, initialises
    every layer it adds itself (``ganbench.arch.init_weights(layer, spec.init)``), returns a D whose output
    has shape (N,) (one logit per image), and keeps D's conv stages named ``down0``, ``down1``, ... (the
    probe reads them). ``rule`` names a registered rule (``ganbench_rules``): one of the paper's R1..R6 or
    your own; a rule no plugin registers still works, with a warning, and the report then has no text for
    it. ``expects`` maps a metric to "worse", "better" or "same" against ``dcgan``.
    """


@hookspec
def ganbench_rules() -> list:
    """Rules this plugin adds: a list of ``ganbench.variants.Rule(id, text, claim)``.

    A rule is the architecture rule a variant breaks: its ``text`` says the rule and ``claim`` what its
    author claims it does. ``ganbench run --variant ID`` runs every variant of the rule; the report gives
    the rule a verdict from its claims. Every run records its rule, so the report shows it without the
    plugin installed. The paper's R1..R6 register here too.
    """


@hookspec
def ganbench_claims() -> list:
    """Claims this plugin adds: a list of ``ganbench.claims.Claim``.

    A claim is one testable statement about one rule (yours or the paper's): the variants that test it,
    the baseline arm they are compared with (``dcgan`` unless said), the one primary endpoint (a metric
    output) and the predicted direction, or why it cannot be tested (``untested``). The report judges it on
    that endpoint alone. Every run whose variant a claim concerns (an arm, its baseline, or a variant of its
    rule) records the claim, so the report judges it without the plugin installed.
    """


@hookspec
def ganbench_datasets() -> list:
    """Data sets this plugin adds: a list of ``ganbench.data.DatasetSpec``.

    A data set loads real images, called with keywords ``load(split=, resolution=, channels=, root=,
    seed=)``, as an ``ImageSet``: one uint8 tensor (N, C, H, W) at the requested resolution and channel
    count, with int64 labels (N,) where known, for a split ("train" or "test"). ``family`` names what scores
    it: a built-in domain classifier's family, or one an extractor of ``ganbench_extractors`` serves.
    """


@hookspec
def ganbench_protocols() -> list:
    """Protocol presets this plugin adds: a list of ``ganbench.protocol.Protocol``.

    Every key of ``Protocol`` can be set; ``--set key=value`` overrides one (the value is read as TOML).
    ``metrics`` names the metrics run at each evaluation, in order.
    """


@hookspec
def ganbench_metrics() -> list:
    """Metrics this plugin adds: a list of ``ganbench.metrics.MetricSpec``.

    A metric declares its name, its ``outputs`` (each value it returns -> whether higher is better, None:
    neither), when it runs ("eval": on the protocol's evaluation schedule, "final": once at the end) and a
    ``compute(ctx) -> dict`` over an ``EvalContext`` (generated images ``ctx.fake_images()``, the reference
    images ``ctx.reference``, the protocol, the networks, the run's history so far). ``compute`` returns
    every declared output (NaN where it cannot be computed), or ``{}`` where the metric does not apply (for
    example, to unlabelled data); a declared output left out is an error naming the metric.
    """


@hookspec
def ganbench_extractors() -> list:
    """Feature extractors this plugin adds: a list of ``ganbench.metrics.ExtractorSpec``.

    An extractor scores the data sets it serves (by family or by name) for every metric that reads
    features (FID, KID, precision/recall, sample drift): a torch-fidelity ``FeatureExtractorBase`` subclass
    and the feature layer to read. It is chosen when the protocol's ``extractor`` is "auto" and no
    InceptionV3 weights are found, or when it is "domain"; before ganbench's own domain classifiers.
    """
