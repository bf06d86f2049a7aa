"""Executors: how a suite's independent runs are carried out.

An executor takes the planned ``RunSpec``s and an ``Observer`` and returns one ``RunResult`` per spec, in
order. Runs already complete are skipped by ``run_one`` itself, so every executor resumes a suite. The
executors are looked up by name in ``EXECUTORS``: ``local`` (in this process, or a pool of worker
processes with ``jobs`` > 1, ``ganbench.executors.local``) and ``ray`` (one Ray task per run,
``ganbench.executors.ray``, imported only when asked for, as Ray is an optional dependency). A distributed
engine implements the same two-method shape (``Executor``) with ``run_guarded`` for each run.

With ``together`` K > 1 (local executors only) the unit of work is a group of up to K runs of one variant
trained as one batched computation (``ganbench.together``), carried out by ``run_group_guarded``.
"""

from __future__ import annotations

import importlib
from typing import Callable, Sequence
from typing import Protocol as TypingProtocol

from ganbench.errors import GanbenchError
from ganbench.record import RunLocked, RunSpec
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


def _progress(spec: RunSpec, observer: Observer | None):
    return (lambda step, row: observer.step(spec, step, row)) if observer else None


def run_guarded(spec: RunSpec, observer: Observer | None = None) -> RunResult:
    """``run_one`` for an executor: a run locked by another process is a result ("locked"), not an error."""
    try:
        return run_one(spec, _progress(spec, observer))
    except RunLocked as exc:
        return RunResult(spec, "locked", 0.0, str(exc))


def run_group_guarded(group: Sequence[RunSpec], observer: Observer | None = None) -> list[RunResult]:
    """One unit of work (``together.group_runs``): a run alone (``run_guarded``), or a group of runs trained
    together (``together.run_together``); one result per spec, in order."""
    if len(group) == 1:
        return [run_guarded(group[0], observer)]
    from ganbench.together import run_together

    return run_together(group, lambda spec: _progress(spec, observer))


def _local(jobs: int, address: str | None, shared_results: bool, together: int) -> Executor:
    from ganbench.executors.local import InProcessExecutor, ProcessPoolExecutor

    if address or shared_results:
        raise GanbenchError("--address and --shared-results are options of --executor ray")
    return InProcessExecutor(together) if jobs <= 1 else ProcessPoolExecutor(jobs, together)


def _ray(jobs: int, address: str | None, shared_results: bool, together: int) -> Executor:
    if together > 1:
        raise GanbenchError("--together is an option of --executor local; with --executor ray each run is its own "
                            "task (leave --together out, or run the suite with --executor local)")
    try:
        importlib.import_module("ray")
    except ImportError:
        raise GanbenchError("--executor ray needs Ray, which is not installed: pip install 'ganbench[ray]'") from None
    from ganbench.executors.ray import RayExecutor

    return RayExecutor(address=address, num_cpus=jobs if jobs > 1 else None, shared_results=shared_results)


# name -> (jobs, address, shared_results, together) -> executor
EXECUTORS: dict[str, Callable[[int, str | None, bool, int], Executor]] = {"local": _local, "ray": _ray}


def make_executor(name: str, jobs: int = 1, address: str | None = None, shared_results: bool = False,
                  together: int = 1) -> Executor:
    """``local``: in-process, or ``jobs`` worker processes, each unit of work a run or, with ``together`` > 1,
    a group of up to that many runs of one variant trained together. ``ray``: Ray tasks on the cluster at
    ``address`` (else a local Ray instance of ``jobs`` CPUs when jobs > 1, of every core otherwise);
    ``shared_results`` when the results folder is reachable from every worker (see ``ganbench.executors.ray``)."""
    if name not in EXECUTORS:
        raise GanbenchError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")
    return EXECUTORS[name](jobs, address, shared_results, together)
