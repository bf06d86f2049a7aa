"""Metrics: what each evaluation of a run measures.

A ``MetricSpec`` names a metric, says whether each value it produces is better high or low, when it runs
("eval": at every evaluation, the last included; "final": only at the end of training) and how to compute
it from an ``EvalContext``. The built-ins are registered through ``ganbench_metrics`` like any plugin's:

- ``quality``: fid, kid_mean, kid_std, precision, recall (torch-fidelity), with the extractor, N real,
  N fake and reference split recorded beside them (``quality_*`` keys).
- ``modes``: modes, kl_modes (labelled data only; see ``ganbench.metrics.modes``).
- ``stability``: sample_drift, sample_oscillation, d_wins, diverged, loss_oscillation_g/_d, fid_best,
  fid_regression, fid_auc, steps_to_target (see ``ganbench.metrics.stability``).
- ``cost``: train_ips, sample_ips, peak_mem_mb, g_params, d_params, g_flops, d_flops (see
  ``ganbench.metrics.cost``).

Metrics run in the order the protocol lists them; each sees the values of those before it in the current
row (``ctx.history[-1]``), so ``stability`` can read this evaluation's FID.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch

from ganbench.arch import ArchSpec
from ganbench.data import DatasetSpec, ImageSet, to_uint8
from ganbench.hookspecs import hookimpl
from ganbench.metrics import cost, modes, quality, stability
from ganbench.metrics.features import choose_extractor, domain_channels, load_classifier
from ganbench.protocol import Protocol

N_DRIFT = 64   # fixed-z images compared between evaluations, and real images per batch for the scale


@dataclass(frozen=True)
class MetricSpec:
    name: str
    description: str
    compute: Callable[["EvalContext"], dict[str, Any]]
    outputs: Mapping[str, bool | None]      # value name -> higher is better (None: neither)
    when: str = "eval"                      # "eval" or "final"


@dataclass
class EvalContext:
    """What a metric may look at, built by the trainer at each evaluation."""
    protocol: Protocol
    dataset: DatasetSpec
    sample: Callable[[int], torch.Tensor]   # n -> n generated images, float [-1, 1], CPU; same step, same images
    reference: ImageSet                     # the protocol's reference split, uint8
    fixed: torch.Tensor                     # G(z_fixed) now, float [-1, 1], CPU
    fixed_history: list[torch.Tensor]       # G(z_fixed) (uint8) at every earlier evaluation, oldest first
    history: list[dict]                     # the run's evaluation rows, the current one last
    step: int
    final: bool
    device: torch.device
    generator: torch.nn.Module
    discriminator: torch.nn.Module
    arch: ArchSpec
    data_root: str | None = None
    _fakes: torch.Tensor | None = field(default=None, repr=False)

    @property
    def n_fake(self) -> int:
        return self.protocol.n_final if self.final else self.protocol.n_eval

    def fakes(self, n: int) -> torch.Tensor:
        """n generated images as uint8, generated once per evaluation and shared by the metrics."""
        if self._fakes is None or len(self._fakes) < n:
            self._fakes = to_uint8(self.sample(n))
        return self._fakes[:n]

    def real(self) -> torch.Tensor:
        return self.reference.images[: min(self.protocol.n_real, len(self.reference.images))]


def _extractor(ctx: EvalContext):
    p = ctx.protocol
    return choose_extractor(p.extractor, p.fid_weights, ctx.dataset, p.resolution, p.channels, ctx.data_root)


def compute_quality(ctx: EvalContext) -> dict[str, Any]:
    p = ctx.protocol
    ex = _extractor(ctx)
    real = ctx.real()
    cache = f"ganbench-{ctx.dataset.name}-{p.reference_split}-{p.resolution}px-c{p.channels}-{len(real)}-{ex.label}"
    cache = cache.replace(":", "_").replace("/", "_")
    scores = quality.quality(real, ctx.fakes(ctx.n_fake), ex, cache if not ctx.dataset.name.startswith("folder:") else None,
                             cuda=ctx.device.type == "cuda")
    return {**scores, "quality_extractor": ex.label, "quality_n_real": len(real), "quality_n_fake": ctx.n_fake,
            "quality_reference": p.reference_split}


def compute_modes(ctx: EvalContext) -> dict[str, Any]:
    if not ctx.dataset.num_classes or ctx.reference.labels is None or ctx.dataset.family == "":
        return {}
    p = ctx.protocol
    clf = load_classifier(ctx.dataset.family, p.resolution, domain_channels(ctx.dataset, p.channels), ctx.data_root)
    pred = modes.predict(clf.net, ctx.fakes(ctx.n_fake))
    return {**modes.coverage(pred, ctx.reference.labels, ctx.dataset.num_classes),
            "modes_total": float(ctx.dataset.num_classes), "modes_n": ctx.n_fake,
            "classifier_accuracy": clf.accuracy}


def _drift_features(ctx: EvalContext) -> Callable[[torch.Tensor], torch.Tensor]:
    """The domain classifier's features where there is one, else raw pixels."""
    p = ctx.protocol
    if ctx.dataset.family:
        net = load_classifier(ctx.dataset.family, p.resolution, domain_channels(ctx.dataset, p.channels), ctx.data_root).net
        c = net.body[0].in_channels
        with_grad_off = torch.no_grad()

        def feats(x_u8: torch.Tensor) -> torch.Tensor:
            with with_grad_off:
                x = x_u8.float() / 127.5 - 1
                return torch.cat([net.features(g) for g in x.split(c, dim=1)], dim=1)
        return feats
    return lambda x_u8: x_u8.flatten(1).float() / 127.5 - 1


def compute_stability(ctx: EvalContext) -> dict[str, Any]:
    row = ctx.history[-1]
    if ctx.fixed_history:
        feats = _drift_features(ctx)
        real = ctx.reference.images
        g = torch.Generator().manual_seed(0)
        idx = torch.randperm(len(real), generator=g)[: 2 * N_DRIFT]
        half = len(idx) // 2
        row["sample_drift"] = stability.drift(feats(to_uint8(ctx.fixed[:N_DRIFT])), feats(ctx.fixed_history[-1][:N_DRIFT]),
                                              feats(real[idx[:half]]), feats(real[idx[half:2 * half]]))
    else:
        row["sample_drift"] = math.nan
    return {"sample_drift": row["sample_drift"], **stability.from_history(ctx.history, ctx.protocol.fid_target)}


def compute_cost(ctx: EvalContext) -> dict[str, Any]:
    p = ctx.protocol
    n = min(4 * p.batch_size, 1024)
    return {"train_ips": cost.steady_train_ips(ctx.history), "sample_ips": cost.sample_ips(ctx.sample, n),
            "peak_mem_mb": cost.peak_memory_mb(ctx.device),
            **cost.size(ctx.generator, ctx.discriminator, ctx.arch.z_dim, ctx.arch.channels, ctx.arch.resolution)}


BUILTIN_METRICS = [
    MetricSpec("quality", "FID, KID and precision/recall by torch-fidelity, with the recorded extractor", compute_quality,
               {"fid": False, "kid_mean": False, "kid_std": None, "precision": True, "recall": True}),
    MetricSpec("modes", "classes (or stacked-MNIST triples) covered, and KL to the data's class histogram", compute_modes,
               {"modes": True, "kl_modes": False}),
    MetricSpec("stability", "divergence, D winning, sample drift/oscillation, FID regression, loss oscillation, "
               "convergence speed", compute_stability,
               {"sample_drift": False, "sample_oscillation": False, "d_wins": False, "diverged": False,
                "loss_oscillation_g": False, "loss_oscillation_d": False, "fid_best": False,
                "fid_regression": False, "fid_auc": False, "steps_to_target": False}),
    MetricSpec("cost", "training and sampling images per second, peak memory, parameters, FLOPs per image",
               compute_cost,
               {"train_ips": True, "sample_ips": True, "peak_mem_mb": False, "g_params": None, "d_params": None,
                "g_flops": None, "d_flops": None}),
]


@hookimpl
def ganbench_metrics() -> list[MetricSpec]:
    return BUILTIN_METRICS


def evaluate(ctx: EvalContext, names: Sequence[str]) -> dict[str, Any]:
    """Run the named metrics that are due (``final`` ones only at the end) and merge their values."""
    from ganbench.plugins import catalog

    registry = catalog().metrics
    out: dict[str, Any] = {}
    for name in names:
        spec = registry.get(name)
        if spec.when == "final" and not ctx.final:
            continue
        values = spec.compute(ctx)
        out.update(values)
        ctx.history[-1].update(values)   # later metrics see this evaluation's values
    return out
