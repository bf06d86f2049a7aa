"""The probe metric: the paper's representation check (its Table 1) on a discriminator's features.

**The probe.** The paper reads features off the trained discriminator (each conv stage's activations
max-pooled to a 4x4 grid, flattened and concatenated) and fits a regularised linear L2-SVM on them: 82.8%
on CIFAR-10. ganbench does the same for any variant, so a broken rule can be judged on the representation
D learned as well as on the samples G draws:

- features: D in eval mode without gradients; the output of every block named ``down<i>`` (the one
  builder's conv stages; a plugin's own D takes part by naming its stages the same way), each
  ``adaptive_max_pool2d``-ed to 4x4, flattened, concatenated;
- classifier: standardisation fitted on the labelled subset, then scikit-learn's ``LinearSVC`` (squared
  hinge, L2 penalty; liblinear's dual solver for label budgets up to 20,000 images); C from ``C_GRID`` by
  accuracy on a held-out fifth of the labelled subset (ties to the smaller C), then refitted on the whole
  labelled subset. The label budget is all there is: no extra labels are used to choose C;
- data: ``labels_per_class`` images per class from the training split (0: all of it), drawn ``draws``
  times; accuracy on ``n_test`` images of the test split, the same for every draw. The draws and the test
  images depend on the probe's seed and the draw only, so every run and every variant is scored on the
  same images (paired comparisons);
- baselines, by the same code on the same images: an untrained D of the same architecture, and raw
  pixels. The untrained D is a copy of the run's D with every layer reset and the ArchSpec's init applied,
  seeded by the run's seed (the context's ``seed``; ``RANDOM_D_SEED`` where a context does not know it), so
  the metric, which sees D but not the variant, and ``ganbench probe`` give the same number, and each seed
  of a variant gets its own untrained draw: averaged over seeds, as the trained figure is, the untrained
  figure measures what the architecture gives before any training (in the published MNIST paper-rules
  records, one fixed init of an untrained ``d-avgpool`` D scored 0.9445 and its trained Ds 0.942-0.9475:
  the architecture, not training, earned the lead over ``dcgan``'s 0.93);
- ``probe_gain``: trained minus untrained accuracy (the same draws and test images, so the difference is
  paired), what training added to the representation. ``probe_random_seed`` records the untrained D's seed.

Unlike the paper (D trained on ImageNet-1k, SVM on CIFAR-10's labels), D here is trained on the data set
it is probed on; the numbers compare variants under one protocol, not with the paper's 82.8%.

The probe of a trained run (``ganbench probe``) loads its networks from the run record and adds its
result to the record (``probe.json``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ganbench.arch import init_weights
from ganbench.data import ImageSet, cache_dir, load_dataset, to_float
from ganbench.errors import GanbenchError, SpecError
from ganbench.files import atomic_write_text
from ganbench.hookspecs import hookimpl
from ganbench.protocol import Protocol

C_GRID = (0.01, 0.1, 1.0)       # SVM regularisation values tried on each draw
HOLDOUT = 5                     # 1/HOLDOUT of each class's labelled images chooses C
POOL = 4                        # each stage's activations are max-pooled to POOL x POOL
MAX_ITER = 2000                 # liblinear iterations per fit; fits that stop short are counted, not hidden
DUAL_MAX_IMAGES = 20000         # up to this many labelled images, liblinear's dual solver (see _svm)
RANDOM_D_SEED = 0               # the untrained D's seed where the run's seed is not known
CACHE_VERSION = 2               # bump when the probe's procedure changes: cached baseline scores are then ignored
FEATURE_SETS = ("trained", "random", "pixels")


class ProbeError(GanbenchError):
    """A run folder, checkpoint, network or data set the probe (or sample/interpolate) cannot use."""


@dataclass(frozen=True)
class ProbeSettings:
    labels_per_class: int = 100     # labelled training images per class (0: the whole training split)
    draws: int = 3                  # independent draws of the labelled images; mean and spread over them
    n_test: int = 2000              # test-split images scored (0, or more than there are: all of them)
    c_grid: tuple = C_GRID          # LinearSVC C values; the best on the held-out fifth wins
    seed: int = 0                   # which images are drawn (not the run's seed: every run sees the same)

    def __post_init__(self):
        object.__setattr__(self, "c_grid", tuple(float(c) for c in self.c_grid))
        for name, ok, allowed in (
            ("labels_per_class", self.labels_per_class >= 0, "an integer >= 0 (0: all labels)"),
            ("draws", self.draws >= 1, "an integer >= 1"),
            ("n_test", self.n_test >= 0, "an integer >= 0 (0: the whole test split)"),
            ("c_grid", len(self.c_grid) > 0 and all(c > 0 for c in self.c_grid), "one or more numbers > 0"),
        ):
            if not ok:
                raise SpecError(f"probe {name}={getattr(self, name)!r} is not allowed; expected {allowed}")

    @classmethod
    def from_protocol(cls, p: Protocol, **changes) -> "ProbeSettings":
        """The protocol's probe keys (defaults where it has none), with ``changes`` that are not None."""
        values = dict(labels_per_class=getattr(p, "probe_labels_per_class", 100),
                      draws=getattr(p, "probe_draws", 3), n_test=getattr(p, "probe_test", 2000))
        values.update({k: v for k, v in changes.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class ProbeScore:
    """One feature set's test accuracy over the draws."""
    features: str                   # "trained", "random" or "pixels"
    dim: int                        # feature dimension
    accuracy: float                 # mean test accuracy over draws (nan where the features are not finite)
    std: float                      # standard deviation over draws (ddof 1; 0 for one draw)
    accuracies: tuple               # test accuracy of each draw
    chosen_c: tuple                 # C chosen on each draw
    unconverged: int = 0            # fits that hit MAX_ITER


@dataclass(frozen=True)
class ProbeResult:
    settings: ProbeSettings
    n_labelled: int                 # labelled training images per draw (fit + held out)
    n_test: int                     # test images scored
    classes: int
    scores: Mapping[str, ProbeScore] = field(default_factory=dict)   # feature set -> score
    random_seed: int = RANDOM_D_SEED                                  # the untrained D's init seed

    def metric_values(self) -> dict[str, float | int]:
        """The ``probe`` metric's scores, and the label budget, draws, test images and untrained D's seed they
        were made with."""
        s = self.scores
        return {"probe_acc": s["trained"].accuracy, "probe_acc_std": s["trained"].std,
                "probe_random_acc": s["random"].accuracy, "probe_pixels_acc": s["pixels"].accuracy,
                "probe_gain": s["trained"].accuracy - s["random"].accuracy,
                "probe_labels_per_class": self.settings.labels_per_class, "probe_draws": self.settings.draws,
                "probe_n_test": self.n_test, "probe_random_seed": self.random_seed}

    def to_dict(self) -> dict:
        return {**self.metric_values(), "settings": asdict(self.settings), "n_labelled": self.n_labelled,
                "n_test": self.n_test, "classes": self.classes,
                "scores": {k: asdict(v) for k, v in self.scores.items()}}


# ---- features -----------------------------------------------------------------------------------------


def conv_stages(D: nn.Module) -> list[nn.Module]:
    """D's conv stages: its modules named ``down<i>``, in order."""
    stages = [m for name, m in D.named_modules() if name.rsplit(".", 1)[-1].startswith("down")]
    if not stages:
        raise ProbeError(f"this D ({type(D).__name__}) has no modules named down<i>; the probe reads the output "
                         "of each conv stage, so a plugin's own D must name its stages down0, down1, ...")
    return stages


def d_features(D: nn.Module, images: torch.Tensor, device: torch.device | str = "cpu", batch: int = 500) -> np.ndarray:
    """uint8 images -> the paper's D features: each conv stage max-pooled to 4x4, flattened, concatenated
    (float32, one row per image). D runs in eval mode without gradients; its mode is restored after."""
    device = torch.device(device)
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: outputs.append(
        F.adaptive_max_pool2d(out.float(), POOL).flatten(1))) for m in conv_stages(D)]
    was_training = D.training
    D.eval()
    rows = []
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                outputs.clear()
                D(to_float(images[start:start + batch].to(device)))
                rows.append(torch.cat(outputs, dim=1).cpu())
    finally:
        for h in hooks:
            h.remove()
        D.train(was_training)
    return torch.cat(rows).numpy() if rows else np.zeros((0, 0), np.float32)


def pixel_features(images: torch.Tensor) -> np.ndarray:
    """uint8 images -> raw pixels in [-1, 1], flattened."""
    return to_float(images.flatten(1)).numpy()


def untrained_copy(D: nn.Module, init: str, seed: int = RANDOM_D_SEED) -> nn.Module:
    """D's architecture with fresh weights: every layer reset to PyTorch's own init (BN statistics too), then
    the ArchSpec's ``init`` scheme, from ``seed``; the global random state is left as it was. The weights
    are drawn on the CPU in the default memory format, so a D trained on a GPU or channels-last gets the
    same untrained twin as the same D loaded from its checkpoint."""
    params = list(D.parameters())
    device = params[0].device if params else torch.device("cpu")
    fresh = copy.deepcopy(D).to("cpu", memory_format=torch.contiguous_format)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for m in fresh.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
        init_weights(fresh, init)
    return fresh.to(device)


# ---- the linear probe ---------------------------------------------------------------------------------


def draw_labelled(labels: np.ndarray, settings: ProbeSettings, draw: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held out) indices into the training split: per class ``labels_per_class`` images (all where
    0), of which a fifth (at least one, where a class has two or more) is held out to choose C."""
    rng = np.random.default_rng([settings.seed, 1, draw])
    fit, held = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if settings.labels_per_class:
            idx = idx[:settings.labels_per_class]
        n_held = max(1, len(idx) // HOLDOUT) if len(idx) >= 2 else 0
        held.append(idx[:n_held])
        fit.append(idx[n_held:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(held))


def scored_test_indices(n: int, settings: ProbeSettings) -> np.ndarray:
    """The test images scored: ``n_test`` of the split's ``n``, the same for every draw and every run."""
    idx = np.random.default_rng([settings.seed, 2]).permutation(n)
    return np.sort(idx[:settings.n_test] if settings.n_test else idx)


def _svm(c: float, n: int, dim: int):
    """Standardisation, then a linear L2-SVM (squared hinge, L2 penalty). liblinear's dual solver unless the
    labelled set is both large and longer than the features are wide: scikit-learn's ``dual="auto"`` picks
    the primal whenever there are more images than features, which on 1,000 standardised MNIST images (768
    features) took 33 s and did not converge at C=1, against 1.4 s for the dual.

    With fewer images than features (D's features: 3,584 at 32 px and width 32, against 800-1,000 labelled
    images), the standardised features are first rotated onto their principal axes (``PCA``, every component
    kept: a rotation of the span of the images, no whitening). The SVM's optimum is unchanged: w lies in the
    span of the training images, and the dual depends on them only through their inner products, which a
    rotation keeps; liblinear then works on n instead of dim columns (measured on MNIST, 100 labels per class,
    one BLAS thread: 47-68 s -> 12-16 s per feature set, the same accuracies and C choices on 4 of 4; decision
    values within 1.4e-5 relative on digits). Cached baseline scores stay valid (``CACHE_VERSION`` unchanged)."""
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    dual = n <= DUAL_MAX_IMAGES or dim >= n
    rotate = [PCA(svd_solver="full")] if dim > n else []
    return make_pipeline(StandardScaler(), *rotate, LinearSVC(C=c, loss="squared_hinge", penalty="l2", dual=dual,
                                                              max_iter=MAX_ITER, random_state=0))


def _fit(c: float, x: np.ndarray, y: np.ndarray):
    """A fitted scaler + LinearSVC, and whether liblinear stopped at MAX_ITER."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model = _svm(c, *x.shape).fit(x, y)
    return model, any(issubclass(w.category, ConvergenceWarning) for w in caught)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, fit: np.ndarray, held: np.ndarray,
                 test_x: np.ndarray, test_y: np.ndarray, c_grid=C_GRID) -> tuple[float, float, int]:
    """(test accuracy, chosen C, fits that did not converge): C chosen on ``held`` after fitting on ``fit``,
    then refitted on both."""
    unconverged = 0
    if len(held) and len(c_grid) > 1:
        scores = []
        for c in c_grid:
            model, short = _fit(c, train_x[fit], train_y[fit])
            unconverged += short
            scores.append(float((model.predict(train_x[held]) == train_y[held]).mean()))
        best = c_grid[int(np.argmax(scores))]   # first maximum: the smallest C, the strongest regularisation
    else:
        best = c_grid[len(c_grid) // 2]
    both = np.concatenate([fit, held])
    model, short = _fit(best, train_x[both], train_y[both])
    return float((model.predict(test_x) == test_y).mean()), best, unconverged + short


def probe(extractors: Mapping[str, Callable[[torch.Tensor], np.ndarray]], train: ImageSet, test: ImageSet,
          settings: ProbeSettings, fingerprints: Mapping[str, str] | None = None) -> ProbeResult:
    """Each feature extractor (uint8 images -> features) scored by the linear probe on the same draws and
    the same test images. Features are computed once, for the images some draw or the test uses.

    An extractor with a ``fingerprints`` entry (a string that changes whenever its features would) has its
    score cached under ``$GANBENCH_CACHE/probe``, keyed by that fingerprint, the images and labels used and
    the settings: the baselines (pixels, the same for every run; an untrained D, the same for a variant's
    run with a given seed and for ``ganbench probe`` on it later) are then fitted once, not once per call,
    and give the very same numbers."""
    if train.labels is None or test.labels is None:
        raise ProbeError("the probe needs labels on the training and test splits; this data set has none")
    train_y, test_y = train.labels.numpy(), test.labels.numpy()
    classes = len(np.unique(train_y))
    if classes < 2:
        raise ProbeError(f"the probe needs two or more classes; the training split has {classes}")
    draws = [draw_labelled(train_y, settings, d) for d in range(settings.draws)]
    used = np.unique(np.concatenate([np.concatenate(d) for d in draws]))
    where = np.full(len(train_y), -1)
    where[used] = np.arange(len(used))
    test_idx = scored_test_indices(len(test_y), settings)
    train_used = train.images[torch.from_numpy(used)]
    test_used = test.images[torch.from_numpy(test_idx)]
    scores = {}
    data_key = _digest(train_used.numpy(), train_y[used], test_used.numpy(), test_y[test_idx],
                       json.dumps(asdict(settings), sort_keys=True), CACHE_VERSION)
    for name, extract in extractors.items():
        cached = None
        if fingerprints and name in fingerprints:
            cached = cache_dir("probe") / f"{name}-{_digest(fingerprints[name], data_key)}.json"
            if cached.is_file():
                try:
                    scores[name] = _score_from_json(cached.read_text())
                    continue
                except (ValueError, TypeError, KeyError):
                    pass   # an unreadable cache entry is recomputed and rewritten
        scores[name] = _score(name, extract, train_used, test_used, train_y[used], test_y[test_idx], where,
                              draws, settings)
        if cached is not None:
            atomic_write_text(cached, json.dumps(asdict(scores[name])))
    return ProbeResult(settings, len(np.concatenate(draws[0])), len(test_idx), classes, scores)


def _digest(*parts) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.tobytes() if isinstance(part, np.ndarray) else repr(part).encode())
    return h.hexdigest()[:24]


def _score_from_json(text: str) -> ProbeScore:
    d = json.loads(text)
    return ProbeScore(**{**d, "accuracies": tuple(d["accuracies"]), "chosen_c": tuple(d["chosen_c"])})


def module_fingerprint(module: nn.Module) -> str:
    """What a network's features depend on: its structure and every parameter and buffer, bit for bit."""
    state = module.state_dict()
    return _digest(repr(module), *[(k, tuple(v.shape), str(v.dtype)) for k, v in state.items()],
                   *[v.detach().cpu().contiguous().numpy() for v in state.values() if v.dtype != torch.bfloat16])


def _score(name: str, extract: Callable[[torch.Tensor], np.ndarray], train_used: torch.Tensor,
           test_used: torch.Tensor, train_y: np.ndarray, test_y: np.ndarray, where: np.ndarray, draws: list,
           settings: ProbeSettings) -> ProbeScore:
    """One feature set's probe over every draw."""
    x_train, x_test = extract(train_used), extract(test_used)
    if not (np.isfinite(x_train).all() and np.isfinite(x_test).all()):
        return ProbeScore(name, x_train.shape[1], math.nan, math.nan, (), ())
    accs, cs, short = [], [], 0
    for fit, held in draws:
        acc, c, n_short = linear_probe(x_train, train_y, where[fit], where[held], x_test, test_y, settings.c_grid)
        accs.append(acc)
        cs.append(c)
        short += n_short
    std = float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
    return ProbeScore(name, x_train.shape[1], float(np.mean(accs)), std, tuple(accs), tuple(cs), short)


def probe_discriminator(D: nn.Module, init: str, train: ImageSet, test: ImageSet, settings: ProbeSettings,
                        device: torch.device | str = "cpu", seed: int = RANDOM_D_SEED) -> ProbeResult:
    """The probe on a trained D, on the same D untrained (``init`` is its ArchSpec's scheme, ``seed`` its
    init's seed: the run's), and on pixels."""
    random_d = untrained_copy(D, init, seed)
    result = probe({"trained": lambda x: d_features(D, x, device),
                    "random": lambda x: d_features(random_d, x, device),
                    "pixels": pixel_features}, train, test, settings,
                   fingerprints={"random": f"{torch.device(device).type} {module_fingerprint(random_d)}",
                                 "pixels": "pixels"})
    return replace(result, random_seed=seed)


def labelled_splits(p: Protocol, root: str | Path | None = None) -> tuple[ImageSet, ImageSet]:
    """The protocol's data set at its resolution and channels: (training split, test split)."""
    load = dict(resolution=p.resolution, channels=p.channels, root=root, seed=p.data_seed)
    return load_dataset(p.dataset, "train", **load), load_dataset(p.dataset, "test", **load)


# ---- the metric ----------------------------------------------------------------------------------------


def compute_probe(ctx) -> dict[str, float | int]:
    """The ``probe`` metric: nothing for unlabelled data sets."""
    train, test = labelled_splits(ctx.protocol, ctx.data_root)
    if train.labels is None or test.labels is None:
        return {}
    seed = RANDOM_D_SEED if ctx.seed is None else ctx.seed
    result = probe_discriminator(ctx.discriminator, ctx.arch.init, train, test,
                                 ProbeSettings.from_protocol(ctx.protocol), ctx.device, seed)
    return result.metric_values()


def _metric_spec():
    from ganbench.metrics import MetricSpec

    return MetricSpec(
        "probe", "the paper's Table 1: linear L2-SVM on D's conv features max-pooled to 4x4; baselines: "
        "untrained D (seeded by the run's seed), raw pixels; trained minus untrained", compute_probe,
        {"probe_acc": True, "probe_acc_std": None, "probe_random_acc": None, "probe_pixels_acc": None,
         "probe_gain": True},
        when="final", metadata=("probe_labels_per_class", "probe_draws", "probe_n_test", "probe_random_seed"))


@hookimpl
def ganbench_metrics() -> list:
    return [_metric_spec()]


# ---- a trained run ------------------------------------------------------------------------------------


def probe_run(run_dir: str | Path, labels_per_class: int | None = None, draws: int | None = None,
              n_test: int | None = None, device: str = "auto", data_root: str | None = None) -> dict:
    """Probe a run's trained D (settings: the run's protocol, then the arguments that are not None), add the
    result to the run's ``probe.json`` (replacing one with the same settings and step) and return it."""
    from ganbench.device import resolve_device
    from ganbench.record import RunRecord

    t0 = time.perf_counter()
    dev = resolve_device(device)
    record = RunRecord(run_dir)
    run = record.load_networks(dev)
    settings = ProbeSettings.from_protocol(run.protocol, labels_per_class=labels_per_class, draws=draws, n_test=n_test)
    train, test = labelled_splits(run.protocol, data_root)
    if train.labels is None or test.labels is None:
        raise ProbeError(f"{run.protocol.dataset}: no labels; the probe needs a labelled data set")
    seed = run.spec.get("seed")
    result = probe_discriminator(run.D, run.arch.init, train, test, settings, dev,
                                 RANDOM_D_SEED if seed is None else int(seed))
    entry = {**result.to_dict(), "step": run.step, "device": str(dev), "seconds": time.perf_counter() - t0,
             "dataset": run.protocol.dataset, "resolution": run.protocol.resolution}
    path = record.add_probe(entry)
    return {**entry, "variant": run.variant, "seed": run.spec.get("seed"), "path": str(path)}
