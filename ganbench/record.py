"""The run record: one folder per run, ``RESULTS/<protocol>/<variant>/seed-<n>/``, and the only code that
knows its files.

A run folder holds::

    spec.json       the resolved protocol, variant, ArchSpec, optimizer, seed and environment, what each
                    metric declared (its outputs and their directions), the variant's rule (``rule``: id,
                    text, claim) and the claims its run takes part in (``claims``: every claim naming the
                    variant as an arm or as the baseline, and every claim of its rule; ``rules``: the rules
                    those claims are about), and which plugin provided the variant, the data set, each
                    metric, rule and claim; its ``run_id`` is a hash of everything that determines the result
    metrics.jsonl   one JSON object per evaluation (the metric time series)
    summary.json    status ("running", "complete", "diverged", "failed"), final metrics, training and wall
                    time (``wall_seconds``: every session's, each earlier one to its last checkpoint), and the
                    spans of steps trained together with other seeds (``trained_together``)
    samples/        sample grids of G(z_fixed), one PNG per evaluation
    checkpoint.pt   G, D, optimizers and the series so far, from the last evaluation
    probe.json      the probe command's results (``ganbench probe``)
    .lock           held by the process training this run

Every file is written atomically (``ganbench.files``). The trainer writes a record through ``RunRecord``;
the report reads it with ``RunRecord.read`` (which returns the record or says why it cannot be used);
``ganbench probe``, ``sample`` and ``interpolate`` load the trained networks with ``load_networks``; the
Ray executor moves a record as bytes with ``read_files`` and ``write_files``.
"""

from __future__ import annotations

import hashlib
import json
import math
import platform
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ganbench.errors import GanbenchError, one_line
from ganbench.files import Locked, atomic_path, atomic_write_bytes, file_lock, read_json, write_json, write_jsonl
from ganbench.protocol import Protocol

SCHEMA_VERSION = 1
DONE = ("complete", "diverged")     # statuses that are results: never trained again
STATUSES = ("running", "complete", "diverged", "failed")

SPEC, SUMMARY, SERIES, CHECKPOINT, PROBE, LOCK, SAMPLES = (
    "spec.json", "summary.json", "metrics.jsonl", "checkpoint.pt", "probe.json", ".lock", "samples")
CHECKPOINT_VERSION = 1

# Directions of the values the trainer records itself (a metric's own are declared by its plugin and
# stored in the record).
TRAINER_DIRECTIONS: dict[str, bool | None] = {
    "g_loss": None, "d_loss": None, "d_real": None, "d_fake": None, "g_grad_norm": None, "d_grad_norm": None,
}


class RunLocked(GanbenchError):
    """Another process is training this run."""


class RunMismatch(GanbenchError):
    """A run folder already holds a run with other inputs."""


class Unusable(Exception):
    """A run record that cannot be used; the message says why."""


class CheckpointError(GanbenchError):
    """A checkpoint that cannot be read or does not fit the run's networks."""


@dataclass(frozen=True)
class RunSpec:
    protocol: Protocol
    variant: str
    seed: int
    results: Path = Path("results")
    data_root: str | None = None    # --data-root (None: $GANBENCH_DATA or the cache)

    @property
    def run_dir(self) -> Path:
        return Path(self.results) / self.protocol.name / self.variant / f"seed-{self.seed}"

    def identity(self) -> dict[str, Any]:
        """Everything that determines the result (not where it is stored, nor the device or threads)."""
        proto = self.protocol.to_dict()
        for key in ("source", "description", "device", "threads", "seeds", "compile", "cuda_graph"):   # how, not what
            proto.pop(key)
        if proto["precision"] not in ("fp32", "bf16"):   # what it trains at here: fp32 and bf16 runs are different results
            from ganbench.device import resolve_device, resolve_precision

            try:
                proto["precision"] = resolve_precision(proto["precision"], resolve_device(self.protocol.device))[0]
            except GanbenchError:
                pass    # no such device: the run is refused before it starts
        return {"protocol": proto, "variant": self.variant, "seed": self.seed}

    @property
    def run_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class RecordData:
    """A finished run as the report needs it: everything comes from the record's own files."""
    run_dir: Path
    spec: dict                       # spec.json
    summary: dict                    # summary.json
    series: list[dict]               # metrics.jsonl, the rows that could be read
    directions: dict[str, bool | None] | None   # value -> higher is better, as the metrics declared it (None: not recorded)
    notes: list[str] = field(default_factory=list)   # what is incomplete, one line each

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def final(self) -> dict:
        return self.summary["final"]


def environment(device: str) -> dict[str, Any]:
    import torch

    from ganbench import __version__

    env = {
        "ganbench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "device": device,
        "cpu_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "git_commit": _git_commit(),
    }
    if device.startswith("cuda"):
        env["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return env


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def run_dirs(results: Path) -> list[Path]:
    """Every run folder under a results folder (those with a spec.json first, then those left empty by an
    interruption). ``results`` may also be one protocol's folder (RESULTS/<protocol>) or one variant's."""
    results = Path(results)
    for pattern in ("*/*/seed-*", "*/seed-*", "seed-*"):   # RESULTS, RESULTS/<protocol>, RESULTS/<protocol>/<variant>
        found = sorted(p for p in results.glob(pattern) if p.is_dir())
        if found:
            return [p for p in found if (p / SPEC).exists()] + [p for p in found if not (p / SPEC).exists()]
    return []


def _read_or_unusable(path: Path, what: str) -> Any:
    if not path.exists():
        raise Unusable(f"no {path.name} ({what})")
    try:
        return read_json(path)
    except ValueError as exc:
        raise Unusable(f"{path.name} is not valid JSON ({exc}); the file is truncated or damaged") from None
    except OSError as exc:
        raise Unusable(f"{path.name} cannot be read ({exc})") from None


def at(data: RecordData, step: int) -> RecordData:
    """The run as it stood after its evaluation at ``step``: its series up to there, that evaluation's row as
    its final values, "complete" (or "diverged" where it had diverged by then). A run that never evaluated at
    ``step`` is ``Unusable``. FID is taken at the sample size of the run's other evaluations: a final row
    (scored on ``n_final`` images) gives its ``fid_n_eval``, the FID of its first ``n_eval`` images, so that runs
    whose last step is ``step`` and runs that went on compare alike (KID, precision and recall stay at the
    row's own sample size)."""
    status = data.summary.get("status")
    if status == "failed":
        raise Unusable(f"the run failed: {data.summary.get('error', 'no error recorded')}")
    if status not in (*DONE, "running"):
        raise Unusable(f"unknown status {status!r} in {SUMMARY}")
    rows = [r for r in data.series if isinstance(r.get("step"), int) and r["step"] <= step]
    if status == "diverged" and data.series and data.series[-1].get("step", math.inf) <= step:
        return replace(data, series=rows)   # it had diverged by then: a divergence at or before the step
    if not rows or rows[-1]["step"] != step:
        steps = [r.get("step") for r in data.series]
        where = f"its evaluations: {steps[0]}..{steps[-1]}" if steps else "it has not evaluated yet"
        raise Unusable(f"no evaluation at step {step} ({where}; --at-step compares runs at one of their evaluations)")
    final = dict(rows[-1])
    if "fid_n_eval" in final:
        final["fid"] = final["fid_n_eval"]
    summary = {**data.summary, "status": "complete", "step": step, "steps": step, "final": final}
    return replace(data, summary=summary, series=rows)


class RunRecord:
    """One run's folder."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)

    def path(self, name: str) -> Path:
        return self.dir / name

    # -- state ---------------------------------------------------------------------------------------

    def summary(self) -> dict:
        """The summary as it is now ({} where there is no readable one): a cheap look, no validation."""
        try:
            doc = read_json(self.dir / SUMMARY)
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def status(self) -> str | None:
        """The status in the summary, or None where there is no readable summary."""
        return self.summary().get("status")

    def is_done(self) -> bool:
        return self.status() in DONE

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the run's lock for the block; another process holding it raises RunLocked at once."""
        try:
            with file_lock(self.dir / LOCK, wait=False):
                yield
        except Locked:
            raise RunLocked(f"{self.dir} is being trained by another process") from None

    def check_identity(self, run_id: str) -> None:
        """A folder holding a run of other inputs (a protocol changed with --set under the same name, say)
        must not be resumed or skipped as if it were this one."""
        try:
            old = read_json(self.dir / SPEC).get("run_id")
        except (OSError, ValueError, AttributeError):
            return
        if old and old != run_id:
            raise RunMismatch(
                f"{self.dir} holds a run with other inputs (run_id {old}, this one {run_id}); "
                "give the changed protocol its own name (--set name=...) or use another --results folder")

    # -- writing (the trainer) -----------------------------------------------------------------------

    def write_spec(self, spec: RunSpec, variant, arch, dataset, metrics: list, device: str, precision: str) -> None:
        """The run's inputs, environment, and what the plugins declared (directions, rule, claims, provenance),
        so that a report never needs the plugins installed."""
        from ganbench.plugins import catalog

        cat = catalog()
        claims = [c for c in cat.claims if c.concerns(variant.name, variant.rule)]

        def rule(rule_id: str) -> dict:
            r = cat.rules.get(rule_id) if rule_id in cat.rules else None
            return ({"id": r.id, "text": r.text, "claim": r.claim, **cat.provenance("rules", r.id)} if r else
                    {"id": rule_id, "text": "", "claim": ""})   # "-" (no rule), or one no plugin registers

        write_json(self.dir / SPEC, {
            "schema": SCHEMA_VERSION, "run_id": spec.run_id, "protocol": spec.protocol.to_dict(),
            "variant": {"name": variant.name, "rule": variant.rule, "description": variant.description,
                        "claim": variant.claim, "expects": dict(variant.expects), "primary": variant.primary,
                        "optim": variant.optim,
                        **cat.provenance("variants", variant.name)},
            "arch": arch, "seed": spec.seed,
            "dataset": {"name": dataset.name, "family": dataset.family,
                        **(cat.provenance("datasets", dataset.name) if dataset.name in cat.datasets else {})},
            "metrics": {m.name: {"outputs": dict(m.outputs), "metadata": list(m.metadata), "when": m.when,
                                 "ratio_scale": list(m.ratio_scale),
                                 **(cat.provenance("metrics", m.name) if m.name in cat.metrics else {})}
                        for m in metrics},
            "rule": rule(variant.rule),
            "rules": [rule(r) for r in dict.fromkeys(c.rule for c in claims) if r in cat.rules],
            "claims": [{**c.to_dict(), **cat.provenance("claims", c.id)} for c in claims],
            "environment": {**environment(device), "precision": precision},   # as trained ("auto" resolved)
        })

    def write_running(self, step: int, resumed: bool) -> None:
        write_json(self.dir / SUMMARY, {"status": "running", "step": step, "resumed": resumed})

    def write_series(self, rows: list[dict]) -> None:
        write_jsonl(self.dir / SERIES, rows)

    def write_summary(self, run_id: str, status: str, step: int, steps: int, train_seconds: float,
                      wall_seconds: float, resumed: bool, final: Mapping, trained_together: Sequence[dict] = (),
                      wall_seconds_total: float | None = None) -> None:
        """``trained_together``: the spans of steps trained as one batch with other seeds (``ganbench run
        --together``), each ``{"steps": [from, to], "seeds": [...]}`` (the run's own seed among them); for those
        steps ``train_seconds`` counts the batch's training time divided by its number of seeds.
        ``wall_seconds``: the last session's wall time (``wall_seconds_last_session`` in the summary);
        ``wall_seconds_total``: every session's, each earlier one up to its last checkpoint (``wall_seconds``;
        None where unknown)."""
        write_json(self.dir / SUMMARY, {
            "schema": SCHEMA_VERSION, "run_id": run_id, "status": status, "step": step, "steps": steps,
            "train_seconds": train_seconds, "wall_seconds_last_session": wall_seconds,
            "wall_seconds": wall_seconds_total, "resumed": resumed,
            "trained_together": list(trained_together), "final": dict(final),
        })

    def write_failure(self, run_id: str, error: str) -> None:
        write_json(self.dir / SUMMARY, {"schema": SCHEMA_VERSION, "run_id": run_id, "status": "failed", "error": error})

    def sample_grid(self, step: int) -> Path:
        return self.dir / SAMPLES / f"step-{step:07d}.png"

    def save_checkpoint(self, run_id: str, state: Mapping) -> None:
        import torch

        with atomic_path(self.dir / CHECKPOINT) as tmp:
            torch.save({"version": CHECKPOINT_VERSION, "run_id": run_id, **state}, tmp)

    def load_checkpoint(self, run_id: str | None = None, map_location: Any = "cpu",
                        weights_only: bool = False) -> dict | None:
        """The checkpoint's state, None when there is none (or it belongs to a run of other inputs);
        a file that cannot be read raises CheckpointError naming it."""
        import torch

        path = self.dir / CHECKPOINT
        if not path.exists():
            return None
        try:
            state = torch.load(path, map_location=map_location, weights_only=weights_only)
        except Exception as exc:  # unpickling garbage raises anything from UnpicklingError to IndexError
            raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {one_line(exc)}); "
                                  "delete it to train the run again from its start") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{path}: not a ganbench checkpoint (it holds a {type(state).__name__})")
        if run_id is not None and state.get("run_id") != run_id:
            return None
        return state

    # -- reading (the report) ------------------------------------------------------------------------

    def read(self, at_step: int | None = None) -> RecordData:
        """The finished run, or ``Unusable`` saying why it cannot be used. With ``at_step``: the run as it stood
        after that step's evaluation (``at``), a run still training included once it has evaluated there."""
        if not any(p.name != LOCK for p in self.dir.iterdir()):
            raise Unusable("empty run folder (a run interrupted before it started?)")
        spec = _read_or_unusable(self.dir / SPEC, "a run interrupted before it started?")
        summary = _read_or_unusable(self.dir / SUMMARY, "a run interrupted before it started?")
        if not isinstance(spec, dict) or not isinstance(summary, dict):
            raise Unusable(f"{SPEC} or {SUMMARY} does not hold a JSON object")
        if at_step is not None:
            series, notes = self._read_series()
            return at(RecordData(self.dir, spec, summary, series, self._directions(spec), notes), at_step)
        status = summary.get("status")
        if status == "running":
            rows, _ = self._read_series()
            start = rows[-1].get("step", 0) if rows and (self.dir / CHECKPOINT).exists() else 0
            raise Unusable(f"still running, or interrupted; `ganbench run` with the same arguments resumes it from "
                           f"step {start}" + (" (its last checkpoint)" if start else " (its start: no checkpoint yet)"))
        if status == "failed":
            raise Unusable(f"the run failed: {summary.get('error', 'no error recorded')}")
        if status not in DONE:
            raise Unusable(f"unknown status {status!r} in {SUMMARY}")
        if not isinstance(summary.get("final"), dict):
            raise Unusable(f"{SUMMARY} has no final metrics")
        series, notes = self._read_series()
        return RecordData(self.dir, spec, summary, series, self._directions(spec), notes)

    @staticmethod
    def _directions(spec: dict) -> dict[str, bool | None] | None:
        """Value -> higher is better, from what the run's metrics declared; None for records written before
        the record carried them."""
        metrics = spec.get("metrics")
        if not isinstance(metrics, dict):
            return None
        out = dict(TRAINER_DIRECTIONS)
        for m in metrics.values():
            out.update((m or {}).get("outputs") or {})
        return out

    def series(self) -> list[dict]:
        """The evaluation rows written so far (a run still training included), oldest first."""
        return self._read_series()[0]

    def _read_series(self) -> tuple[list[dict], list[str]]:
        try:
            lines = (self.dir / SERIES).read_text().splitlines()
        except OSError:
            return [], [f"no {SERIES}: its curves are left out"]
        rows = []
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:
                return rows, [f"{SERIES} line {i} is not valid JSON: the rest of its curves are left out"]
        return rows, []

    # -- the trained networks (probe, sample, interpolate) -------------------------------------------

    def load_networks(self, device: Any = "cpu") -> "TrainedRun":
        """The run's networks, rebuilt from its spec.json and loaded from its checkpoint."""
        import torch

        from ganbench.arch import ArchSpec
        from ganbench.plugins import catalog
        from ganbench.protocol import apply

        spec_path = self.dir / SPEC
        if not self.dir.is_dir():
            raise CheckpointError(f"{self.dir}: no such folder; expected a run folder RESULTS/<protocol>/<variant>/seed-<n>")
        try:
            spec = read_json(spec_path)
            proto_values = {k: v for k, v in spec["protocol"].items() if k != "source"}
            variant_name, arch_values = spec["variant"]["name"], spec["arch"]
        except FileNotFoundError:
            raise CheckpointError(f"{self.dir}: no {SPEC}; expected a run folder RESULTS/<protocol>/<variant>/seed-<n> "
                                  "written by ganbench run") from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{spec_path}: unreadable run spec ({type(exc).__name__}: {exc})") from None
        state = self.load_checkpoint(map_location="cpu", weights_only=True)
        if state is None:
            raise CheckpointError(f"{self.dir}: no {CHECKPOINT}; the run has not reached its first evaluation")
        protocol = apply(Protocol(), proto_values, source=str(spec_path))
        variant = catalog().variants.get(variant_name)
        arch = ArchSpec(**arch_values)
        G, D = variant.build(arch)
        try:
            G.load_state_dict(state["G"])
            D.load_state_dict(state["D"])
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{self.dir / CHECKPOINT}: does not load into variant {variant_name!r} as defined "
                                  f"now ({one_line(exc)})") from None
        device = torch.device(device)
        return TrainedRun(self.dir, spec, protocol, variant_name, variant.arch_spec(arch), int(state.get("step", 0)),
                          G.to(device), D.to(device))

    def add_probe(self, entry: dict) -> Path:
        """Add one ``ganbench probe`` result to probe.json, replacing an earlier one with the same settings
        and checkpoint step; returns the file's path."""
        path = self.dir / PROBE
        try:
            doc = read_json(path) if path.exists() else {}
            old = doc.get("probes", []) if isinstance(doc, dict) else []
        except (OSError, ValueError):
            old = []
        key = lambda e: json.dumps([e.get("settings"), e.get("step")], sort_keys=True)  # noqa: E731  (tuples as lists)
        try:
            spec = read_json(self.dir / SPEC)
        except (OSError, ValueError):
            spec = {}
        write_json(path, {"schema": SCHEMA_VERSION, "run_id": spec.get("run_id"), "variant": (spec.get("variant") or {}).get("name"),
                          "seed": spec.get("seed"), "probes": [e for e in old if key(e) != key(entry)] + [entry]})
        return path

    # -- the record as bytes (executors that train elsewhere) ----------------------------------------

    def read_files(self) -> dict[str, bytes]:
        """The folder's files by relative path (spec, series, summary, samples, checkpoint), without the
        lock and temporary files (names starting with a dot)."""
        if not self.dir.is_dir():
            return {}
        files = {}
        for path in sorted(self.dir.rglob("*")):
            rel = path.relative_to(self.dir)
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                files[rel.as_posix()] = path.read_bytes()
        return files

    def write_files(self, files: Mapping[str, bytes]) -> None:
        """Each file atomically; the summary last, so a reader that sees the status sees the rest."""
        for rel in sorted(files, key=lambda r: r == SUMMARY):
            atomic_write_bytes(self.dir / rel, files[rel])


def resumable_step(files: Mapping[str, bytes]) -> int:
    """The step a record's files (``RunRecord.read_files``) resume from: the last evaluated step when
    there is a checkpoint, else -1."""
    if CHECKPOINT not in files:
        return -1
    rows = [line for line in files.get(SERIES, b"").decode().splitlines() if line.strip()]
    return json.loads(rows[-1])["step"] if rows else 0


@dataclass
class TrainedRun:
    run_dir: Path
    spec: dict                      # spec.json as written by the trainer
    protocol: Protocol
    variant: str
    arch: Any                       # the variant's ArchSpec under the run's protocol
    step: int                       # the checkpoint's step
    G: Any                          # torch.nn.Module
    D: Any
