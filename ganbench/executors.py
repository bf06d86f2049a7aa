"""Executors: how a suite's independent runs are carried out.

An executor takes the planned ``RunSpec``s and an ``Observer`` and returns one ``RunResult`` per spec, in
order. Runs already complete are skipped by ``run_one`` itself, so every executor resumes a suite. A
distributed engine implements the same two-method shape (see ``Executor``): Ray's is in
``ganbench.executors_ray``, imported only when asked for, as Ray is an optional dependency.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from typing import Protocol as TypingProtocol
from typing import Sequence

from ganbench.results import RunLocked, RunSpec
from ganbench.train import RunResult, run_one


class Observer(TypingProtocol):
    def started(self, spec: RunSpec) -> None: ...
    def step(self, spec: RunSpec, step: int, row: dict) -> None: ...
    def done(self, result: RunResult) -> None: ...


class NullObserver:
    def started(self, spec: RunSpec) -> None: pass
    def step(self, spec: RunSpec, step: int, row: dict) -> None: pass
    def done(self, result: RunResult) -> None: pass


class Executor(TypingProtocol):
    name: str

    def run(self, specs: Sequence[RunSpec], observer: Observer) -> list[RunResult]:
        """Carry out every spec; a failed or diverged run does not stop the others."""


def _run_guarded(spec: RunSpec, observer: Observer | None = None) -> RunResult:
    progress = (lambda step, row: observer.step(spec, step, row)) if observer else None
    try:
        return run_one(spec, progress)
    except RunLocked as exc:
        return RunResult(spec, "locked", 0.0, str(exc))


class InProcessExecutor:
    """One run after another in this process, with per-step progress."""

    name = "local"

    def run(self, specs: Sequence[RunSpec], observer: Observer) -> list[RunResult]:
        results = []
        for spec in specs:
            observer.started(spec)
            result = _run_guarded(spec, observer)
            observer.done(result)
            results.append(result)
        return results


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class ProcessPoolExecutor:
    """``jobs`` runs at a time in worker processes (spawned, so each has a clean torch), each with
    ``cpu_count // jobs`` torch threads unless the protocol sets them."""

    name = "pool"

    def __init__(self, jobs: int):
        self.jobs = jobs

    def run(self, specs: Sequence[RunSpec], observer: Observer) -> list[RunResult]:
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        ctx = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_worker_init,
                                    initargs=(threads,)) as pool:
            futures = {}
            for spec in specs:
                observer.started(spec)
                futures[pool.submit(_run_guarded, spec)] = spec
            by_spec = {}
            for fut in cf.as_completed(futures):
                result = fut.result()   # a user's mistake raised in a worker re-raises here
                observer.done(result)
                by_spec[id(futures[fut])] = result
        return [by_spec[id(s)] for s in specs]


def make_executor(name: str, jobs: int = 1, address: str | None = None, shared_results: bool = False) -> Executor:
    """``local``: in-process, or ``jobs`` worker processes. ``ray``: Ray tasks on the cluster at ``address``
    (else a local Ray instance of ``jobs`` CPUs when jobs > 1, of every core otherwise); ``shared_results``
    when the results folder is reachable from every worker (see ``ganbench.executors_ray``)."""
    from ganbench.errors import GanbenchError

    if name == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise GanbenchError("--executor ray needs Ray, which is not installed: pip install 'ganbench[ray]'") from None
        from ganbench.executors_ray import RayExecutor

        return RayExecutor(address=address, num_cpus=jobs if jobs > 1 else None, shared_results=shared_results)
    if name != "local":
        raise GanbenchError(f"unknown executor {name!r}; known: local, ray")
    if address or shared_results:
        raise GanbenchError("--address and --shared-results are options of --executor ray")
    return InProcessExecutor() if jobs <= 1 else ProcessPoolExecutor(jobs)
