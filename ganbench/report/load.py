"""Loading: every run record under a results folder -> the runs table (a row per run), the metric series
(long form), what the records say about their metrics (directions, metadata keys), and the claims and
rules the records carry.

Everything comes from the records (``ganbench.record``). Records written before they carried their
metrics' declarations (schema 1 without ``metrics`` in spec.json) take them from the installed plugins;
records written before they carried their claims and rules leave those to the package's built-in tables
(``report.verdicts.study_claims``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from ganbench.claims import BY_ID, Claim
from ganbench.errors import GanbenchError
from ganbench.metrics.stability import broke_down, fid_curve, plateau
from ganbench.record import TRAINER_DIRECTIONS, RecordData, RunRecord, Unusable, run_dirs
from ganbench.variants import Rule

COLLAPSE_MODES = 1           # covering at most this many modes counts as collapse

# Columns of the runs table that describe a run rather than measure it.
META = ("protocol", "variant", "rule", "seed", "status", "device", "train_dtype", "dataset", "description", "claim", "expects",
        "primary", "steps", "step", "train_seconds", "run_dir", "git_commit", "channels", "resolution", "trained_as")
# Ratio-scale values before metrics declared theirs (``MetricSpec.ratio_scale``): for older records only.
LEGACY_LOG_SCALE = ("fid", "fid_best", "fid_auc", "kid_mean")
# Numbers in a metrics row that are bookkeeping, not results.
NOT_METRICS = {"step", "images_seen", "interval_ips", "classifier_accuracy"}
# Outcomes the report derives from a run's status and metrics: 0/1 per run, lower is better.
DERIVED_DIRECTIONS: dict[str, bool | None] = {"collapsed": False, "diverged": False, "converged": None,
                                              "broke_down": False, "unstable": False, "probe_gain": True,
                                              "g_lr": None, "d_lr": None}
COST_METRICS = ("train_ips", "sample_ips", "peak_mem_mb", "g_params", "d_params", "g_flops", "d_flops")


class ReportError(GanbenchError):
    """Nothing to report on: no results folder, no runs, an unknown protocol or baseline."""


@dataclass
class Loaded:
    runs: pd.DataFrame                      # a row per usable run: META columns, then every final metric
    series: pd.DataFrame                    # protocol, variant, seed, step, images_seen, metric, value
    warnings: list[str]                     # one line per record skipped or incomplete, naming its folder
    directions: dict[str, bool | None]      # value -> higher is better (None: neither), in declaration order
    metrics: list[str]                      # the metrics (plugins) that produced the values, in declaration order
    log_scale: frozenset[str] = frozenset()  # ratio-scale values, compared as log ratios (as the metrics declared)
    claims: list[Claim] = field(default_factory=list)   # the claims the records carry, one per id, first seen first
    rules: dict[str, Rule] = field(default_factory=dict)   # the rules the records carry (text, claim), by id


def installed_declarations() -> tuple[dict[str, bool | None], list[str]]:
    """Directions and metric names from the installed plugins: only for records that do not carry theirs."""
    from ganbench.plugins import catalog

    directions: dict[str, bool | None] = {}
    for spec in catalog().metrics:
        directions.update(spec.outputs)
    return directions, [m.name for m in catalog().metrics]


def declared_log_scale(spec: Mapping[str, Any]) -> set[str]:
    """The values a record's metrics declared ratio-scale; for a metric recorded before metrics declared it,
    the installed plugin's declaration, else the built-in list the report used then (``LEGACY_LOG_SCALE``)."""
    from ganbench.plugins import catalog

    out: set[str] = set()
    metrics = spec.get("metrics")
    if not isinstance(metrics, dict):
        return set(LEGACY_LOG_SCALE)
    for name, declared in metrics.items():
        if isinstance(declared, dict) and isinstance(declared.get("ratio_scale"), list):
            out.update(str(v) for v in declared["ratio_scale"])
        elif name in catalog().metrics:
            out.update(catalog().metrics.get(name).ratio_scale)
        else:
            out.update(LEGACY_LOG_SCALE)
    return out


def _protocol_set(protocol: str | Iterable[str] | None) -> set[str] | None:
    if protocol is None:
        return None
    return {protocol} if isinstance(protocol, str) else set(protocol) or None


def load_results(results_dir: str | Path, protocol: str | Iterable[str] | None = None,
                 at_step: int | None = None) -> Loaded:
    """Every usable run record under ``results_dir`` (of the given protocol or protocols, if any); with
    ``at_step``, each run as it stood after its evaluation at that step (``ganbench.record.at``)."""
    root = Path(results_dir)
    if not root.is_dir():
        raise ReportError(f"{root}: no such results folder; train first (ganbench run --results {root}) "
                          "or point --results at one")
    rows: list[dict] = []
    series: list[dict] = []
    warnings: list[str] = []
    declared: dict[str, bool | None] = {}     # what the records' metrics declared, in order
    metrics: list[str] = []
    claims: dict[str, Claim] = {}
    rules: dict[str, Rule] = {}
    undeclared = False
    log_scale: set[str] = set()
    wanted = _protocol_set(protocol)
    for run_dir in run_dirs(root):
        if wanted is not None and run_dir.parent.parent.name not in wanted:
            continue
        try:
            data = RunRecord(run_dir).read(at_step)
            row = run_row(data)
        except Unusable as exc:
            warnings.append(f"skipped {run_dir}: {exc}")
            continue
        except OSError as exc:
            warnings.append(f"skipped {run_dir}: cannot be read ({exc})")
            continue
        mine = run_series(data, row)
        fids = [r["value"] for r in mine if r["metric"] == "fid"]
        log_scale |= declared_log_scale(data.spec)
        if "fid_best" not in row and any(math.isfinite(f) for f in fids):   # stability not run: from the curve
            row["fid_best"] = min(f for f in fids if math.isfinite(f))
            log_scale.add("fid_best")
        if "converged" not in row:    # a record from before the stability metric recorded it: the same rule
            row["converged"] = plateau(fid_curve(data.series))[1]
        if "broke_down" not in row:   # recorded since 2026-12-01; older records: the same rule on their curve
            row["broke_down"] = broke_down(data.series)
        row["unstable"] = _unstable(row)
        note = trained_as_now(data.spec)
        if note:
            warnings.append(f"{run_dir}: {note[1]}")
            row["trained_as"], row["variant"] = row["variant"], note[0]
        rows.append(row)
        series += mine
        warnings += [f"{run_dir}: {n}" for n in data.notes]
        warnings += [f"{run_dir}: {n}" for n in recorded_claims(data.spec, claims, rules)]
        if data.directions is None:
            undeclared = True
        else:
            declared.update((k, v) for k, v in data.directions.items() if k not in TRAINER_DIRECTIONS)
            metrics += [m for m in data.spec["metrics"] if m not in metrics]
    directions = {**TRAINER_DIRECTIONS, **DERIVED_DIRECTIONS}
    if undeclared:
        installed, installed_metrics = installed_declarations()
        directions.update(installed)
        metrics = installed_metrics + [m for m in metrics if m not in installed_metrics]
    directions.update(declared)
    runs = pd.DataFrame(rows)
    if runs.empty:
        runs = pd.DataFrame(columns=list(META))
    else:
        runs = runs.sort_values(["protocol", "variant", "seed"], kind="stable").reset_index(drop=True)
        warnings += mixed_precisions(runs) + mixed_extractors(runs)
    series_df = pd.DataFrame(series, columns=["protocol", "variant", "seed", "step", "images_seen", "metric", "value"])
    return Loaded(runs, series_df, warnings, directions, metrics, frozenset(log_scale), list(claims.values()), rules)


def recorded_claims(spec: Mapping[str, Any], claims: dict[str, Claim], rules: dict[str, Rule]) -> list[str]:
    """Add the claims and rules a record carries to ``claims`` and ``rules`` (by id; the first record to carry
    one gives it); returns what could not be read, or differs from what an earlier record said, one line each."""
    notes = []
    for data in spec.get("claims") or []:
        try:
            claim = Claim.from_dict(data, BY_ID)      # fields added since the record was written: the package's
        except GanbenchError as exc:
            notes.append(f"a claim it carries cannot be read ({exc}); left out")
            continue
        if claim.id not in claims:
            claims[claim.id] = claim
        elif claims[claim.id] != claim:
            notes.append(f"claim {claim.id!r} differs from an earlier record's (the claim was changed between "
                         "runs); the earlier one is judged")
    own = spec.get("rule")
    for data in [*(spec.get("rules") or []), *([own] if isinstance(own, dict) else [])]:
        try:
            rule = Rule(str(data["id"]), str(data["text"]), str(data.get("claim", "")))
        except (GanbenchError, KeyError, TypeError):
            continue    # "-" (no rule), or a rule no plugin registered when it ran: no text recorded
        if rule.id not in rules:
            rules[rule.id] = rule
    return notes


def mixed_precisions(runs: pd.DataFrame) -> list[str]:
    """One line per protocol whose runs trained at more than one precision (the default is bf16 on a GPU and
    fp32 on a CPU, so a study moved between them mixes): its comparisons confound precision with the arm."""
    out = []
    for name, group in runs.groupby("protocol", sort=True):
        counts = group["train_dtype"].fillna("").astype(str).value_counts()
        if len(counts) > 1:
            which = ", ".join(f"{p or 'unrecorded'}: {n} runs ({', '.join(sorted(set(group.loc[group['train_dtype'] == p, 'variant'])))})"
                              for p, n in counts.sort_index().items())
            out.append(f"protocol {name!r}: its runs trained at different precisions ({which}); comparisons between "
                       "them confound precision with the arm: train them all at one (--set precision=fp32 or bf16)")
    return out


# What a run's scores were computed through, as recorded beside them: two runs whose known values differ in any
# of these were scored in different feature spaces. The classifier's accuracy tells two trainings of one
# classifier apart in records from before the digests.
SCORED_THROUGH = ("quality_extractor", "quality_extractor_digest", "modes_classifier", "modes_classifier_accuracy",
                  "modes_classifier_digest")


def mixed_extractors(runs: pd.DataFrame) -> list[str]:
    """One line per protocol whose runs were scored through different extractors, or different weights of
    one (a domain classifier trained again on another machine, or at another thread count, has other
    weights, and its FIDs and mode counts move with them): those runs cannot be compared."""
    out = []
    for name, group in runs.groupby("protocol", sort=True):
        for col in (c for c in SCORED_THROUGH if c in group.columns):
            known = group[col].dropna()
            known = known[known.astype(str) != ""]               # "": no weights file (or not recorded)
            if known.nunique() < 2:
                continue
            variants = {value: ", ".join(sorted(set(group.loc[known.index[known == value], "variant"])))
                        for value in known.unique()}
            which = "; ".join(f"{value}: {n} runs ({variants[value]})"
                              for value, n in known.value_counts().sort_index().items())
            out.append(f"protocol {name!r}: its runs were scored through different feature extractors ({col} "
                       f"{which}); their FID, KID, precision/recall and mode counts are not comparable: score them "
                       "all through one (train them on one machine, or give every machine the same weights file "
                       "before it trains: ganbench's classifiers are cached in $GANBENCH_CACHE/classifiers, else "
                       "~/.cache/ganbench/classifiers)")
            break
    return out


def run_row(data: RecordData) -> dict[str, Any]:
    """A run's row of the runs table: what it is (META), then its final values."""
    spec, summary = data.spec, data.summary
    try:
        variant = spec["variant"]
        proto = spec.get("protocol") or {}
        env = spec.get("environment") or {}
        row: dict[str, Any] = {
            "protocol": proto.get("name", data.run_dir.parent.parent.name),
            "variant": variant["name"],
            "rule": variant.get("rule", ""),
            "seed": int(spec["seed"]),
            "status": data.status,
            "device": device_label(env),
            "train_dtype": env.get("precision") or proto.get("precision", ""),   # as trained (the default resolved);
            # not "precision": that is quality's score
            "dataset": (spec.get("dataset") or {}).get("name", proto.get("dataset", "")),
            "description": variant.get("description", ""),
            "claim": variant.get("claim", ""),
            "expects": dict(variant.get("expects") or {}),
            "primary": variant.get("primary") or "",
            "steps": summary.get("steps", proto.get("steps")),
            "step": summary.get("step"),
            "train_seconds": summary.get("train_seconds"),
            "run_dir": str(data.run_dir),
            "git_commit": env.get("git_commit", ""),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise Unusable(f"spec.json lacks {exc} (not a ganbench run record?)") from None
    for key, value in data.final.items():
        if key in META:
            continue
        row[key] = _number(value) if not isinstance(value, str) else value
    row["diverged"] = 1.0 if data.status == "diverged" else 0.0
    row["collapsed"] = _collapsed(row)
    row["channels"], row["resolution"] = proto.get("channels", 1), proto.get("resolution", 32)
    lr_scale = proto.get("lr_scale", 1.0) or 1.0
    for net in ("g", "d"):    # the learning rates it trained with: a confound when they differ from the baseline's
        row[f"{net}_lr"] = _number(((variant.get("optim") or {}).get(net) or {}).get("lr", math.nan)) * lr_scale
    if "probe_gain" not in row and isinstance(row.get("probe_acc"), float):   # probes from before probe_gain
        row["probe_gain"] = row["probe_acc"] - row.get("probe_random_acc", math.nan)
    return row


def trained_as_now(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    """Variants are redefined now and then (the no-batchnorm arms gained BN's bias): a record whose networks
    are not what its variant now builds is reported under the installed variant that builds exactly what it
    trained (``no-bn`` from before the change is today's ``no-bn-bias-free``), else as "<name> (earlier
    definition)", so it is never judged as the variant it no longer is. None (nothing changes) when the
    record matches its variant, or its variant is not installed to compare with. Networks are compared by
    what they are: every layer with its shapes and biases, the init scheme and the optimizer settings."""
    from ganbench.arch import ArchSpec
    from ganbench.errors import GanbenchError
    from ganbench.plugins import catalog

    variants = catalog().variants
    name = (spec.get("variant") or {}).get("name")
    if name not in variants:
        return None
    try:
        proto = spec["protocol"]
        base = ArchSpec(resolution=proto["resolution"], channels=proto["channels"], z_dim=proto["z_dim"],
                        g_width=proto["g_width"], d_width=proto["d_width"])
        # a variant with its own builder built its networks with it (from the recorded ArchSpec)
        recorded = (_signature(json.dumps(spec["arch"], sort_keys=True), name if variants.get(name).builder else ""),
                    json.dumps(spec["variant"].get("optim"), sort_keys=True, default=str))
    except (GanbenchError, KeyError, TypeError, ValueError):
        return None

    def builds(v) -> bool:
        try:
            return (_signature(json.dumps(asdict(v.arch_spec(base)), sort_keys=True), v.name if v.builder else ""),
                    json.dumps(json.loads(json.dumps(asdict(v.optim))), sort_keys=True)) == recorded
        except GanbenchError:
            return False

    if builds(variants.get(name)):
        return None
    same = [v.name for v in variants if v.builder is None and builds(v)]
    label = same[0] if same else f"{name} (earlier definition)"
    return label, f"trained as {name!r} with networks that {name!r} no longer builds; reported as {label!r}"


@lru_cache(maxsize=256)
def _signature(arch_json: str, builder: str = "") -> str:
    """What an ArchSpec builds (the variant's own builder when ``builder`` names one): the networks' layers
    with their shapes and biases, and the init scheme; built on the meta device, so it costs no memory."""
    import torch

    from ganbench.arch import ArchSpec, build
    from ganbench.plugins import catalog

    arch = ArchSpec(**json.loads(arch_json))
    make = catalog().variants.get(builder).builder if builder else build
    try:
        with torch.device("meta"):
            G, D = make(arch)
    except (NotImplementedError, RuntimeError):   # a builder that cannot run on the meta device
        with torch.random.fork_rng(devices=[]):
            G, D = make(arch)
    return f"{G!r}\n{D!r}\ninit={arch.init}"


def run_series(data: RecordData, row: Mapping[str, Any]) -> list[dict]:
    """A run's metric series in long form (numbers only)."""
    out = []
    for rec in data.series:
        for key, value in rec.items():
            v = _number(value)
            if key in ("step", "images_seen") or isinstance(value, str) or v is None:
                continue
            out.append({"protocol": row["protocol"], "variant": row["variant"], "seed": row["seed"],
                        "step": rec.get("step"), "images_seen": rec.get("images_seen"), "metric": key, "value": v,
                        "run_dir": row["run_dir"]})
    return out


def _number(value: Any) -> float | None:
    if value is None:
        return math.nan
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _collapsed(row: Mapping[str, Any]) -> float:
    """1 when the run covers at most COLLAPSE_MODES modes or D won outright, 0 when neither, NaN unknown."""
    if row.get("diverged") == 1.0:
        return 0.0
    modes, d_wins = row.get("modes"), row.get("d_wins")
    known = [v for v in (modes, d_wins) if isinstance(v, float) and math.isfinite(v)]
    if not known:
        return math.nan
    hit = (isinstance(modes, float) and math.isfinite(modes) and modes <= COLLAPSE_MODES) or d_wins == 1.0
    return 1.0 if hit else 0.0


def _unstable(row: Mapping[str, Any]) -> float:
    """1 when the run diverged, broke down or collapsed (the instability stage's one outcome), 0 when it is
    known to have done none of them, NaN otherwise."""
    parts = [row.get(k) for k in ("diverged", "broke_down", "collapsed")]
    if any(v == 1.0 for v in parts):
        return 1.0
    return 0.0 if all(isinstance(v, float) and v == 0.0 for v in parts) else math.nan


def device_label(env: Mapping[str, Any]) -> str:
    """"cpu", or "cuda:0 (NVIDIA H100 ...)" where the GPU's name was recorded."""
    device = str(env.get("device", "") or "unknown")
    return f"{device} ({env['gpu']})" if env.get("gpu") else device


def metric_columns(runs: pd.DataFrame, loaded_directions: Mapping[str, bool | None],
                   metric_names: Iterable[str]) -> list[str]:
    """The runs table's numeric columns that measure a run, in declaration order, then the rest by name.

    A value a metric declares is a metric; so is any other number, except the trainer's bookkeeping
    (NOT_METRICS) and what a metric records beside its values under its own name (``quality_n_real``,
    ``modes_classifier_accuracy``: ``<metric>_...`` where ``<metric>`` names a metric of the records)."""
    specs = list(metric_names)

    def measures(c: str) -> bool:
        if c in loaded_directions:
            return True
        return c not in META and c not in NOT_METRICS and not any(c.startswith(s + "_") for s in specs)

    cols = [c for c in runs.columns if measures(c) and c not in META and pd.api.types.is_numeric_dtype(runs[c])]
    order = {name: i for i, name in enumerate(loaded_directions)}
    return sorted(cols, key=lambda c: (order.get(c, len(order)), c))


def order_runs(runs: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Runs by protocol, then the baseline, then variants in the installed catalog's order (rule by rule;
    presentation only), then any others (a plugin no longer installed) by name; seeds ascending."""
    from ganbench.plugins import catalog

    known = {v.name: i for i, v in enumerate(catalog().variants)}
    key = runs["variant"].map(lambda v: (v != baseline, known.get(v, len(known)), v))
    return (runs.assign(_key=key).sort_values(["protocol", "_key", "seed"], kind="stable")
            .drop(columns="_key").reset_index(drop=True))
