"""The local executors: one run after another in this process, or ``jobs`` runs at a time in worker
processes."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
from typing import Sequence

from ganbench.executors import Observer, run_guarded
from ganbench.record import RunSpec
from ganbench.train import RunResult


class InProcessExecutor:
    """One run after another in this process, with per-step progress."""

    name = "local"

    def run(self, specs: Sequence[RunSpec], observer: Observer) -> list[RunResult]:
        results = []
        for spec in specs:
            observer.started(spec)
            result = run_guarded(spec, observer)
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
                futures[pool.submit(run_guarded, spec)] = spec
            by_spec = {}
            for fut in cf.as_completed(futures):
                result = fut.result()   # a user's mistake raised in a worker re-raises here
                observer.done(result)
                by_spec[id(futures[fut])] = result
        return [by_spec[id(s)] for s in specs]
