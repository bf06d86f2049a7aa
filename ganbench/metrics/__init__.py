"""Metrics: what each evaluation of a run measures.

A ``MetricSpec`` names a metric, says for each value it produces whether higher is better, when it runs
("eval": at every evaluation, the end included; "final": only at the end of training) and how to compute it
from an ``EvalContext``, and which of its values are ratio-scale (``ratio_scale``: positive quantities such as
FID, which the report compares as ratios on a log scale, "1.2x", rather than as differences). The built-ins
register through ``ganbench_metrics`` like any plugin's:

- ``quality``: fid, kid_mean, kid_std, precision, recall, fid_n_eval (``ganbench.metrics.quality``), with
  ``quality_extractor`` (and its weights' ``quality_extractor_digest``), ``quality_n_real``, ``quality_n_fake``
  and ``quality_reference`` recorded beside them.
- ``modes`` (labelled data): modes, kl_modes, confident_classes (``ganbench.metrics.modes``), with
  ``modes_total``, ``modes_n``, ``modes_classifier``, ``modes_classifier_accuracy`` and ``modes_classifier_digest``.
- ``stability``: diverged, d_wins, sample_drift, sample_oscillation, loss_oscillation_g, loss_oscillation_d,
  fid_best, fid_regression, fid_auc, steps_to_target; whether the run converged (fid_tail_change,
  converged); collapse apart from not learning (failed_to_learn, diversity, mode_collapse); whether it
  learned and then lost it (broke_down) (``ganbench.metrics.stability``).
- ``cost``: train_ips, sample_ips, peak_mem_mb, g_params, d_params, g_flops, d_flops (``ganbench.metrics.cost``).

Scores are plain floats, NaN where they cannot be computed: every sample score (FID, KID, precision, recall,
modes, KL, confident classes, drift, diversity, mode_collapse, failed_to_learn) of a diverged run or of a G
whose output is not finite; fid_regression, fid_tail_change, converged and broke_down after divergence;
fid_tail_change, converged and broke_down with fewer than three FIDs; a spread over one evaluation;
steps_to_target never reached. The ``metadata`` keys of a spec are recorded beside its scores (strings and
counts saying how they were made) and are never compared. A metric returns every output it declares, or
nothing (``{}``: it does not apply to this data, like ``modes`` on unlabelled images); ``evaluate`` raises
``MetricError``, naming the metric, for a declared output left out.

An ``ExtractorSpec`` (registered through ``ganbench_extractors``) gives the metrics that read features a
torch-fidelity feature extractor for the data sets it serves (``ganbench.metrics.features``).

``evaluate`` runs metrics in the order named; each sees the values of those before it in the current record
(``ctx.history[-1]``), so ``stability`` must come after ``quality`` to use this evaluation's FID (the
protocols' default order does this). Metrics never print.
"""

from __future__ import annotations

import math
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import torch

from ganbench.arch import ArchSpec
from ganbench.data import DatasetSpec, ImageSet, to_uint8
from ganbench.errors import GanbenchError, SpecError
from ganbench.hookspecs import hookimpl
from ganbench.metrics import cost, stability
from ganbench.protocol import Protocol

if TYPE_CHECKING:
    from ganbench.metrics.features import Extractor

# quality, modes and the extractors import torch-fidelity (seconds, with torchvision): they are imported
# where a metric runs, not when the plugin catalog is built (``ganbench list`` stays quick)

WHEN = ("eval", "final")

Value = float | int | str   # scores are floats; metadata may be counts or strings (all JSON-able)


class MetricError(GanbenchError):
    """A metric that did not return what it declared."""


@dataclass(frozen=True)
class MetricSpec:
    name: str                                          # e.g. "quality"
    description: str                                   # one line
    compute: Callable[["EvalContext"], dict[str, Value]]
    outputs: Mapping[str, bool | None]                 # each score it produces -> higher is better (None: neither)
    when: str = "eval"                                 # "eval": every evaluation and the end; "final": only the end
    metadata: tuple[str, ...] = ()                     # keys it records beside the scores (how they were made)
    needs_features: bool = False                       # uses the protocol's feature extractor (EvalContext.extractor)
    ratio_scale: tuple[str, ...] = ()                  # outputs that are positive and compared as ratios (on a log
                                                       # scale: "1.2x FID"), not as differences; e.g. distances like FID

    def __post_init__(self):
        if self.when not in WHEN:
            raise SpecError(f"metric {self.name!r}: when={self.when!r} is not allowed; expected eval or final")
        bad = {k: v for k, v in self.outputs.items() if v not in (True, False, None)}
        if bad:
            raise SpecError(f"metric {self.name!r}: outputs {bad} must map each output to True (higher is better), "
                            "False (lower is better) or None (neither)")
        both = set(self.outputs) & set(self.metadata)
        if both:
            raise SpecError(f"metric {self.name!r}: {sorted(both)} declared both as outputs and as metadata")
        object.__setattr__(self, "metadata", tuple(self.metadata))
        object.__setattr__(self, "ratio_scale", tuple(self.ratio_scale))
        unknown = sorted(set(self.ratio_scale) - set(self.outputs))
        if unknown:
            raise SpecError(f"metric {self.name!r}: ratio_scale names {unknown}, which are not among its outputs")


@dataclass(frozen=True)
class ExtractorSpec:
    """A feature extractor for the data sets it serves, registered through ``ganbench_extractors``."""
    name: str                              # registry name, recorded (with the version) as the scores' extractor
    description: str                       # one line
    feature_extractor: type | str          # a torch_fidelity FeatureExtractorBase subclass, or "module:Class"
                                           # (imported when first used); built as cls(name, [layer],
                                           # feature_extractor_weights_path=<weights() or None>, **torch-fidelity kwargs)
    layer: str                             # the feature layer FID, KID, precision/recall and drift all read
    families: tuple[str, ...] = ()         # data set families it serves (DatasetSpec.family)
    datasets: tuple[str, ...] = ()         # data set names it serves (before any extractor serving their family)
    weights: Callable[..., str | Path] | None = None   # weights(protocol, dataset, root) -> the file the extractor
                                           # loads (find it, or train and cache it); None: it loads nothing
    problem: Callable[..., str] | None = None   # problem(protocol, dataset) -> why it cannot score here ("": it
                                           # can), checked before any run trains; must not load or train anything
    rgb: bool = False                      # grey images are repeated to 3 channels before the extractor
    batch_size: int = 256                  # images per forward pass
    version: str = "1"                     # change it whenever the features change: names cached real statistics

    def __post_init__(self):
        if not self.name or self.name.strip() != self.name or "/" in self.name or "\\" in self.name:
            raise SpecError(f"extractor {self.name!r}: a name without slashes or surrounding spaces is required")
        object.__setattr__(self, "families", tuple(self.families))
        object.__setattr__(self, "datasets", tuple(self.datasets))
        if not (self.families or self.datasets):
            raise SpecError(f"extractor {self.name!r}: name the data set families or names it serves "
                            "(families=... or datasets=...)")
        if not self.layer:
            raise SpecError(f"extractor {self.name!r}: layer (the feature layer the scores read) is required")
        if self.batch_size < 1:
            raise SpecError(f"extractor {self.name!r}: batch_size={self.batch_size} must be >= 1")

    def serves(self, dataset: DatasetSpec) -> int:
        """2 when it serves the data set by name, 1 by family, 0 not at all."""
        return 2 if dataset.name in self.datasets else int(bool(dataset.family) and dataset.family in self.families)

    def extractor_class(self) -> type:
        """The torch-fidelity feature extractor class (imported now where it was given as "module:Class")."""
        if not isinstance(self.feature_extractor, str):
            return self.feature_extractor
        module, _, attr = self.feature_extractor.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError, ValueError) as exc:
            raise GanbenchError(f"extractor {self.name!r}: cannot import {self.feature_extractor!r} "
                                f"({type(exc).__name__}: {exc})") from None


@dataclass
class EvalContext:
    """What a metric may look at, built by the trainer at each evaluation."""
    protocol: Protocol
    dataset: DatasetSpec
    sample: Callable[[int], torch.Tensor]   # n -> n generated images, float [-1, 1], (n, C, H, W), CPU; deterministic
    reference: ImageSet                     # the protocol's reference split, uint8
    fixed: torch.Tensor                     # G(z_fixed) now: 64 images, float [-1, 1], CPU
    fixed_history: list[torch.Tensor]       # G(z_fixed) at every earlier evaluation (uint8), oldest first
    history: list[dict]                     # the run's evaluation records, oldest first, the current one last
    step: int
    final: bool                             # True at the end-of-training evaluation
    device: torch.device
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    arch: ArchSpec                          # the variant's resolved ArchSpec
    diverged: bool = False                  # True when training stopped on a non-finite loss
    data_root: str | None = None            # where data sets live (None: $GANBENCH_DATA or the default)
    seed: int | None = None                 # the run's seed (None: not known, e.g. a context built by hand)
    _fakes: torch.Tensor | None = field(default=None, init=False, repr=False)
    _fakes_finite: bool = field(default=True, init=False, repr=False)
    _extractor: Extractor | None = field(default=None, init=False, repr=False)

    @property
    def n_fake(self) -> int:
        """Generated images scored now: the protocol's n_final at the end, n_eval otherwise."""
        return self.protocol.n_final if self.final else self.protocol.n_eval

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def fake_images(self) -> torch.Tensor | None:
        """The evaluation's ``n_fake`` generated images as uint8, drawn once and shared by every metric;
        None when the run diverged or G's output is not finite (its scores are then NaN)."""
        if self.diverged or not self._fakes_finite:
            return None
        if self._fakes is None:
            x = self.sample(self.n_fake)
            self._fakes_finite = bool(torch.isfinite(x).all())
            self._fakes = to_uint8(x) if self._fakes_finite else None
        return self._fakes

    def extractor(self) -> Extractor:
        """The protocol's feature extractor (the same one for every metric of this evaluation)."""
        if self._extractor is None:
            from ganbench.metrics.features import choose_extractor

            self._extractor = choose_extractor(self.protocol, self.dataset, self.data_root)
        return self._extractor


# ---- the built-in metrics ------------------------------------------------------------------------------


def compute_quality(ctx: EvalContext) -> dict[str, Value]:
    from ganbench.metrics import quality

    p = ctx.protocol
    ex = ctx.extractor()
    real = quality.reference_subset(ctx.reference.images, p.n_real)
    meta = {"quality_extractor": ex.label, "quality_extractor_digest": ex.digest, "quality_n_real": len(real),
            "quality_n_fake": ctx.n_fake, "quality_reference": p.reference_split}
    fake = ctx.fake_images()
    if fake is None:
        return {**{k: math.nan for k in quality.SCORES}, **meta}
    cache = quality.real_cache_name(ctx.dataset.name, p.reference_split, p.resolution, p.channels, p.data_seed,
                                    len(real), ex)
    return {**quality.quality(fake, real, ex, real_cache=cache, cuda=ctx.cuda, n_eval=p.n_eval), **meta}


def compute_modes(ctx: EvalContext) -> dict[str, Value]:
    from ganbench.metrics import modes, quality
    from ganbench.metrics.features import FAMILIES, domain_classifier

    ds, p = ctx.dataset, ctx.protocol
    if not ds.num_classes or ds.family not in FAMILIES or ctx.reference.labels is None:
        return {}
    clf = domain_classifier(p, ds, ctx.data_root)
    groups = p.channels // clf.channels
    if clf.net.num_classes ** groups != ds.num_classes:
        raise GanbenchError(f"data set {ds.name!r} declares {ds.num_classes} classes, but its family's classifier "
                            f"reads {clf.net.num_classes} classes in each of {groups} channel group(s)")
    meta = {"modes_total": ds.num_classes, "modes_n": ctx.n_fake, "modes_classifier": clf.name,
            "modes_classifier_accuracy": clf.accuracy, "modes_classifier_digest": clf.digest}
    fake = ctx.fake_images()
    if fake is None:
        return {"modes": math.nan, "kl_modes": math.nan, "confident_classes": math.nan, **meta}
    pred, confidence, feats = modes.classify(clf.net, fake)
    real = modes.classify(clf.net, quality.reference_subset(ctx.reference.images, p.n_real))[2]
    counted = (confidence > modes.CONFIDENT) & modes.on_manifold(feats, real, quality.PRC_NEIGHBORHOOD)
    return {**modes.coverage(pred, ctx.reference.labels, ds.num_classes),
            "confident_classes": modes.confident_classes(pred, counted, ds.num_classes), **meta}


def sample_scores(ctx: EvalContext) -> tuple[float, float]:
    from ganbench.metrics.features import ExtractorMissing, extract_features

    """``sample_drift`` and ``diversity`` of this evaluation (see ``ganbench.metrics.stability``), from one
    pass of the extractor over the images both compare."""
    fake = ctx.fake_images()
    drifts = bool(ctx.fixed_history) and not ctx.diverged and bool(torch.isfinite(ctx.fixed).all())
    if fake is None and not drifts:
        return math.nan, math.nan
    try:
        ex = ctx.extractor()
    except ExtractorMissing:
        return math.nan, math.nan
    parts: dict[str, torch.Tensor] = {}
    if drifts:
        n = min(stability.N_DRIFT, len(ctx.fixed), len(ctx.fixed_history[-1]))
        parts["now"], parts["before"] = to_uint8(ctx.fixed[:n]), ctx.fixed_history[-1][:n]
        parts["real_a"], parts["real_b"] = stability.real_pairs(ctx.reference.images)
    if fake is not None:
        parts["fake"], parts["real"] = fake[:stability.N_DIVERSITY], stability.diversity_subset(ctx.reference.images)
    feats = extract_features(torch.cat(list(parts.values())), ex, ctx.cuda).split([len(v) for v in parts.values()])
    f = dict(zip(parts, feats))
    return (stability.drift(f["now"], f["before"], f["real_a"], f["real_b"]) if drifts else math.nan,
            stability.diversity(f["fake"], f["real"]) if fake is not None else math.nan)


def compute_stability(ctx: EvalContext) -> dict[str, Value]:
    drift, diversity = sample_scores(ctx)
    history = ctx.history[:-1] + [{**ctx.history[-1], "sample_drift": drift}]
    return {"sample_drift": drift, "diversity": diversity, "mode_collapse": stability.mode_collapse(diversity),
            **stability.from_history(history, ctx.protocol.fid_target, ctx.diverged)}


def compute_cost(ctx: EvalContext) -> dict[str, Value]:
    a = ctx.arch
    return {"train_ips": cost.steady_train_ips(ctx.history),
            "sample_ips": cost.sample_ips(ctx.sample, cost.SAMPLE_BATCHES * ctx.protocol.batch_size),
            "peak_mem_mb": cost.peak_memory_mb(ctx.device),
            **cost.size(ctx.generator, ctx.discriminator, a.z_dim, a.channels, a.resolution)}


BUILTIN_METRICS = [
    MetricSpec("quality", "FID, KID and precision/recall by torch-fidelity, with the extractor, N real, N fake "
               "and reference split", compute_quality,
               {"fid": False, "kid_mean": False, "kid_std": None, "precision": True, "recall": True,
                "fid_n_eval": False}, needs_features=True, ratio_scale=("fid", "kid_mean", "fid_n_eval"),
               metadata=("quality_extractor", "quality_extractor_digest", "quality_n_real", "quality_n_fake",
                         "quality_reference")),
    MetricSpec("modes", "classes (or stacked-MNIST digit triples) the domain classifier finds in the samples, "
               "those it is sure of, and KL to the data's class histogram (labelled data only)", compute_modes,
               {"modes": True, "kl_modes": False, "confident_classes": True},
               metadata=("modes_total", "modes_n", "modes_classifier", "modes_classifier_accuracy",
                         "modes_classifier_digest")),
    MetricSpec("stability", "divergence, D winning outright, sample drift and oscillation, loss oscillation, "
               "FID regression from its best, convergence speed (FID area, steps to target), whether FID "
               "plateaued, failure to learn, breakdown and mode collapse told apart", compute_stability,
               {"diverged": False, "d_wins": False, "sample_drift": None, "sample_oscillation": False,
                "loss_oscillation_g": False, "loss_oscillation_d": False, "fid_best": False,
                "fid_regression": False, "fid_auc": False, "steps_to_target": False, "fid_tail_change": None,
                "converged": None, "failed_to_learn": False, "broke_down": False, "diversity": None,
                "mode_collapse": False}, needs_features=True,
               ratio_scale=("fid_best", "fid_auc")),
    MetricSpec("cost", "training and sampling images per second, peak memory, parameters and FLOPs per image",
               compute_cost,
               {"train_ips": True, "sample_ips": True, "peak_mem_mb": False, "g_params": None, "d_params": None,
                "g_flops": None, "d_flops": None}),
]


@hookimpl
def ganbench_metrics() -> list[MetricSpec]:
    return list(BUILTIN_METRICS)


def evaluate(ctx: EvalContext, names: Sequence[str]) -> dict[str, Value]:
    """Run the named metrics (from the plugin catalog) whose ``when`` fits ``ctx.final``, in order, and merge
    their values. An unknown name raises ``UnknownName`` (with the closest names) before any metric runs.
    After each metric, ``ctx.history[-1]`` is replaced by a copy holding its values, for the next."""
    from ganbench.plugins import catalog

    registry = catalog().metrics
    specs = [registry.get(name) for name in names]
    out: dict[str, Value] = {}
    for spec in specs:
        if spec.when == "final" and not ctx.final:
            continue
        values = spec.compute(ctx)
        check_outputs(spec, values, registry.origin(spec.name) if spec.name in registry else "")
        out.update(values)
        ctx.history[-1] = {**ctx.history[-1], **values}
    return out


def check_outputs(spec: MetricSpec, values: object, plugin: str = "") -> None:
    """A metric's values hold every output it declared, or none (``{}``: it does not apply here);
    ``MetricError`` naming the metric (and its plugin) otherwise."""
    who = f"metric {spec.name!r}" + (f" (plugin {plugin!r})" if plugin else "")
    if not isinstance(values, Mapping):
        raise MetricError(f"{who}: compute returned a {type(values).__name__}, not a dict of its outputs")
    missing = [k for k in spec.outputs if k not in values]
    if values and missing:
        raise MetricError(f"{who} did not return its declared outputs {missing} (it returned "
                          f"{sorted(values) or 'nothing'}); return every declared output, NaN where it cannot be "
                          "computed, or {} where the metric does not apply")


__all__ = ["MetricSpec", "ExtractorSpec", "EvalContext", "MetricError", "evaluate", "check_outputs",
           "ganbench_metrics", "BUILTIN_METRICS", "Value"]


def metric_problem(spec: MetricSpec, protocol: Protocol, dataset: DatasetSpec) -> str:
    """Why a metric cannot run under a protocol on a data set ("" when it can), checked before training."""
    from ganbench.metrics.features import extractor_problem

    return extractor_problem(protocol, dataset) if spec.needs_features else ""
