"""The results store: one folder per run, ``RESULTS/<protocol>/<variant>/seed-<n>/``.

A run folder holds::

    spec.json       the resolved protocol, variant, ArchSpec, optimizer, seed and environment; its ``run_id``
                    is a hash of everything that determines the result
    metrics.jsonl   one JSON object per evaluation (the metric time series)
    summary.json    status ("running", "complete", "diverged", "failed"), final metrics, wall time
    samples/        sample grids of G(z_fixed), one PNG per evaluation
    checkpoint.pt   G, D, optimizers and the series so far, from the last evaluation
    .lock           held by the process training this run

Every write goes to a temporary file in the same folder and is renamed into place, so a reader sees the
old file or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ganbench.errors import GanbenchError
from ganbench.protocol import Protocol

SCHEMA_VERSION = 1
DONE = ("complete", "diverged")     # statuses that are results: never trained again
STATUSES = ("running", "complete", "diverged", "failed")


class RunLocked(GanbenchError):
    """Another process is training this run."""


class RunMismatch(GanbenchError):
    """A run folder already holds a run with other inputs."""


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
        for key in ("source", "description", "device", "threads", "seeds"):
            proto.pop(key)
        return {"protocol": proto, "variant": self.variant, "seed": self.seed}

    @property
    def run_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ---- atomic writes ----------------------------------------------------------------------------------


def _file_mode() -> int:
    """The mode a plain ``open`` would give a new file (0o666 less the umask); mkstemp's own is 0o600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, default=_jsonable) + "\n" for r in rows))


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a library that writes files itself (torch.save, save_image);
    renamed to ``path`` when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _jsonable(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "items"):
        return dict(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def read_jsonl(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ---- run folders ------------------------------------------------------------------------------------


def status(run_dir: Path) -> str | None:
    """The status in a run folder's summary, or None where there is no readable summary."""
    try:
        return read_json(Path(run_dir) / "summary.json").get("status")
    except (OSError, ValueError):
        return None


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock for the block; another process holding it raises RunLocked at once."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{run_dir} is being trained by another process") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def check_identity(spec: RunSpec) -> None:
    """A run folder holding a run of other inputs (a protocol changed with --set under the same name, say)
    must not be resumed or skipped as if it were this one."""
    path = spec.run_dir / "spec.json"
    if not path.exists():
        return
    try:
        old = read_json(path).get("run_id")
    except (OSError, ValueError):
        return
    if old and old != spec.run_id:
        raise RunMismatch(
            f"{spec.run_dir} holds a run with other inputs (run_id {old}, this one {spec.run_id}); "
            "give the changed protocol its own name (--set name=...) or use another --results folder"
        )


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
    """Every run folder under a results folder (those with a spec.json, or left empty by an interruption)."""
    results = Path(results)
    return sorted(p.parent for p in results.glob("*/*/seed-*/spec.json")) + sorted(
        p for p in results.glob("*/*/seed-*") if p.is_dir() and not (p / "spec.json").exists()
    )
