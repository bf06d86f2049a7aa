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


WORKER: dict = {}     # in a worker process: its index among the pool's workers and the device it was given


def _worker_init(threads: int, counter, device: str) -> None:
    """Each worker process: its torch threads, its index (0 .. jobs-1, from a shared counter) and, for runs on
    CUDA, its own GPU of the machine's, round-robin (``device.device_for_worker``): N workers share one GPU,
    or spread over several."""
    import torch

    from ganbench.device import device_for_worker, set_threads

    set_threads(threads)
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    WORKER["index"] = index
    WORKER["device"] = device_for_worker(index, None, device)
    if WORKER["device"].startswith("cuda:"):
        torch.cuda.set_device(int(WORKER["device"].split(":")[1]))


def worker_info() -> dict:
    """The calling worker's index and device (for tests and progress)."""
    return dict(WORKER)


class ProcessPoolExecutor:
    """``jobs`` runs at a time in worker processes (spawned, so each has a clean torch), each with
    ``cpu_count // jobs`` torch threads unless the protocol sets them; on CUDA each worker is given a GPU,
    round-robin over the machine's (all of them share the one GPU there is on a single-GPU machine)."""

    name = "pool"

    def __init__(self, jobs: int):
        self.jobs = jobs

    def run(self, specs: Sequence[RunSpec], observer: Observer) -> list[RunResult]:
        threads = max(1, (os.cpu_count() or 1) // self.jobs)
        ctx = multiprocessing.get_context("spawn")
        devices = {spec.protocol.device for spec in specs}
        device = devices.pop() if len(devices) == 1 else "auto"
        with cf.ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_worker_init,
                                    initargs=(threads, ctx.Value("i", 0), device)) as pool:
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
