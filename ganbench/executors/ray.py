"""The Ray executor: each run of a suite is one Ray task, on a cluster or on a local Ray instance.

A task asks for the resources its protocol needs (one GPU when the run trains on CUDA, ``threads`` or one
CPU otherwise) and is retried when its worker process or node dies (``max_retries``); an exception raised
by the run itself is not retried, except an ``OSError`` (a full scratch disk, a flaky mount). A user's
mistake raised on a worker (missing data, say) comes back to the driver as that same ``GanbenchError``.

Where the record is written:

- by default the workers need not see the driver's results folder: a task trains into a scratch folder
  on its node (``<tmp>/ganbench-ray/<run_id>/...``) and returns the run folder's files as bytes; the
  driver writes them atomically into ``RESULTS/<protocol>/<variant>/seed-<n>/``, ``summary.json`` last.
  A partial run in the driver's folder (an interrupted suite) travels with the task and resumes there; a
  retried task that lands on the node of its killed attempt resumes from that attempt's checkpoint.
- with ``shared_results`` the results folder is reachable from every worker at the same absolute path
  (one machine, or a shared file system): a task trains in place, and ``run_one`` resumes by itself.

The driver holds each run folder's lock while its task is in flight (in the shared case the worker holds
it), so two suites never train one run twice at once.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import tempfile
from contextlib import ExitStack, suppress
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import ray
import ray.exceptions

from ganbench.errors import GanbenchError, one_line
from ganbench.executors import Observer, run_guarded
from ganbench.protocol import Protocol
from ganbench.record import RunLocked, RunRecord, RunSpec, resumable_step
from ganbench.train import RunResult

SCRATCH = "ganbench-ray"     # a worker's scratch folder, under its temporary directory
POLL_S = 0.5                 # how often the driver looks for tasks that have started


def task_resources(protocol: Protocol, cluster_gpus: float) -> dict:
    """Ray resources of one run: a GPU when its device is ``cuda``, or ``auto`` on a cluster that has GPUs
    (so every run of a suite trains on the same kind of device), and ``threads`` CPUs (1 when 0), which
    are also the torch threads it uses."""
    if protocol.device == "cuda" and cluster_gpus < 1:
        raise GanbenchError("device cuda: the Ray cluster has no GPU; start workers on GPU nodes "
                            "(ray start finds their GPUs, or give --num-gpus N) or use --device cpu or auto")
    gpu = protocol.device == "cuda" or (protocol.device == "auto" and cluster_gpus >= 1)
    return {"num_cpus": protocol.threads or 1, "num_gpus": 1 if gpu else 0}


# ---- the task, on a worker --------------------------------------------------------------------------


@ray.remote(num_cpus=0)
class _StartLog:
    """Indices of the tasks that have begun on a worker, so the driver can count the runs in progress."""

    def __init__(self):
        self.started: list[int] = []

    def add(self, index: int) -> None:
        self.started.append(index)

    def take(self) -> list[int]:
        started, self.started = self.started, []
        return started


def scratch_spec(spec: RunSpec, scratch: str | None = None) -> RunSpec:
    """The run as a worker trains it when the results folder is not shared: under ``scratch`` (by default
    the worker's temporary directory), in a folder named by its run id, so that a retried attempt on the
    same node finds its predecessor's checkpoint."""
    return replace(spec, results=Path(scratch or tempfile.gettempdir(), SCRATCH) / spec.run_id)


def _train_task(spec: RunSpec, index: int, threads: int, shared: bool, scratch: str | None,
                seed_files: dict[str, bytes], start_log) -> dict:
    """Train one run on a worker and return its outcome, with the run folder's files unless ``shared``."""
    from ganbench.device import set_threads

    set_threads(threads)
    try:
        start_log.add.remote(index)
    except Exception:  # the progress display is not worth failing a run for
        pass
    if shared:
        result = run_guarded(spec)
        return {"status": result.status, "wall_s": result.wall_s, "error": result.error, "files": {}}

    local = scratch_spec(spec, scratch)
    try:
        with RunRecord(local.run_dir).lock():
            if resumable_step(seed_files) > resumable_step(RunRecord(local.run_dir).read_files()):
                RunRecord(local.run_dir).write_files(seed_files)   # the driver's partial run is further along
    except RunLocked as exc:
        return {"status": "locked", "wall_s": 0.0, "error": str(exc), "files": {}}
    result = run_guarded(local)
    if result.status == "locked":
        return {"status": "locked", "wall_s": 0.0, "error": result.error, "files": {}}
    # "skipped": an earlier attempt finished here but its driver never got the files; send them now
    status = RunRecord(local.run_dir).status() if result.status == "skipped" else result.status
    files = RunRecord(local.run_dir).read_files()
    shutil.rmtree(local.results, ignore_errors=True)
    return {"status": status, "wall_s": result.wall_s, "error": result.error, "files": files}


_train_on_cpu = ray.remote(_train_task)


@ray.remote(num_gpus=1, max_calls=1)   # a fresh worker process per GPU run: its GPU memory goes back after it
def _train_on_gpu(*args) -> dict:
    return _train_task(*args)


# ---- the driver -------------------------------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {one_line(exc)}"


def _check_reachable(address: str) -> None:
    """A plain HOST:PORT that nothing listens on would make ray.init retry for minutes; say so at once."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", ray://... (Ray Client): left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise GanbenchError(f"--address {address}: no Ray head node answers there ({exc.strerror or exc}); "
                            "start one with `ray start --head` or leave out --address for a local Ray instance") from None


class RayExecutor:
    """Every run as a Ray task; results come back to the driver's results folder."""

    name = "ray"

    def __init__(self, address: str | None = None, num_cpus: int | None = None, shared_results: bool = False,
                 max_retries: int = 3, scratch: str | None = None, max_in_flight: int = 256):
        self.address = address              # None: $RAY_ADDRESS, else a local Ray instance
        self.num_cpus = num_cpus            # CPUs of a local instance (None: every core here)
        self.shared_results = shared_results
        self.max_retries = max_retries      # retries of a task whose worker or node died
        self.scratch = scratch              # where workers train (None: their temporary directory)
        self.max_in_flight = max_in_flight  # tasks submitted at once (each holds a lock and its inputs)

    def _connect(self) -> bool:
        """Connect to the cluster or start a local instance; True when this call did (and must shut down)."""
        if ray.is_initialized():
            return False
        address = self.address or os.environ.get("RAY_ADDRESS")
        quiet = dict(log_to_driver=False, logging_level=logging.ERROR)
        if address:
            _check_reachable(address)
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=self.num_cpus or os.cpu_count(), include_dashboard=False, **quiet)
        return True

    def run(self, specs: Sequence[RunSpec], observer: Observer) -> list[RunResult]:
        for spec in specs:
            RunRecord(spec.run_dir).check_identity(spec.run_id)   # a user's mistake: refused before anything is submitted
        owned = self._connect()
        try:
            return self._run(specs, observer)
        finally:
            if owned:
                ray.shutdown()

    def _run(self, specs: Sequence[RunSpec], observer: Observer) -> list[RunResult]:
        results: list[RunResult | None] = [None] * len(specs)
        started: set[int] = set()

        def begin(i: int) -> None:
            if i not in started:
                started.add(i)
                observer.started(specs[i])

        queue = []
        for i, spec in enumerate(specs):
            if RunRecord(spec.run_dir).is_done():
                begin(i)
                results[i] = RunResult(spec, "skipped", 0.0)
                observer.done(results[i])
            else:
                queue.append(i)
        if not queue:
            return results  # type: ignore[return-value]

        gpus = ray.cluster_resources().get("GPU", 0)
        resources = {i: task_resources(specs[i].protocol, gpus) for i in queue}
        start_log = _StartLog.remote()
        pending: dict = {}                  # ObjectRef -> (index, lock held while in flight)
        try:
            while queue or pending:
                while queue and len(pending) < self.max_in_flight:
                    i = queue.pop(0)
                    submitted = self._submit(i, specs[i], resources[i], start_log)
                    if isinstance(submitted, RunResult):   # locked by another process
                        begin(i)
                        results[i] = submitted
                        observer.done(submitted)
                    else:
                        pending[submitted[0]] = (i, submitted[1])
                if not pending:
                    continue
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
                if ready:
                    ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=0)
                for i in self._started(start_log):
                    begin(i)
                for ref in ready:
                    i, lock = pending.pop(ref)
                    try:
                        results[i] = self._collect(ref, specs[i])
                    finally:
                        lock.close()
                    begin(i)
                    observer.done(results[i])
        finally:
            for ref, (_, lock) in pending.items():   # a user's mistake, or Ctrl-C: stop the rest
                ray.cancel(ref, force=True)
                lock.close()
            with suppress(ray.exceptions.RayError):
                ray.kill(start_log)
        return results  # type: ignore[return-value]

    @staticmethod
    def _started(start_log) -> list[int]:
        try:
            return ray.get(start_log.take.remote(), timeout=30)
        except ray.exceptions.RayError:   # its node is gone: runs then count as running when they end
            return []

    def _submit(self, i: int, spec: RunSpec, resources: dict, start_log):
        """Submit one run; returns (ObjectRef, lock), or a "locked" RunResult."""
        lock = ExitStack()
        seed_files: dict[str, bytes] = {}
        # a worker's current folder is not the driver's: paths go as absolute ones
        task_spec = replace(spec, data_root=spec.data_root and os.path.abspath(spec.data_root))
        if self.shared_results:
            task_spec = replace(task_spec, results=Path(spec.results).resolve())
        else:
            try:
                lock.enter_context(RunRecord(spec.run_dir).lock())
            except RunLocked as exc:
                return RunResult(spec, "locked", 0.0, str(exc))
            if (spec.run_dir / "checkpoint.pt").exists():   # an interrupted run: it resumes on the worker
                try:
                    seed_files = RunRecord(spec.run_dir).read_files()
                except BaseException:
                    lock.close()
                    raise
        options = dict(resources, max_retries=self.max_retries, retry_exceptions=[OSError],
                       name=f"ganbench {spec.protocol.name} {spec.variant} seed {spec.seed}")
        train = _train_on_gpu if resources["num_gpus"] else _train_on_cpu
        try:
            ref = train.options(**options).remote(
                task_spec, i, resources["num_cpus"], self.shared_results, self.scratch, seed_files, start_log)
        except BaseException:
            lock.close()
            raise
        return ref, lock

    def _collect(self, ref, spec: RunSpec) -> RunResult:
        try:
            out = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, GanbenchError):
                raise exc.cause from None   # a user's mistake: one line and exit 2, as with the local executors
            return RunResult(spec, "failed", 0.0, _one_line(exc.cause or exc))
        except ray.exceptions.RayError as exc:   # its worker or node died more often than max_retries allows
            return RunResult(spec, "failed", 0.0, f"{_one_line(exc)} (retried {self.max_retries} times)")
        if out["files"]:
            RunRecord(spec.run_dir).write_files(out["files"])
        return RunResult(spec, out["status"], out["wall_s"], out["error"])
