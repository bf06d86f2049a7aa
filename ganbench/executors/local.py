"""The local executors: one run after another in this process, or ``jobs`` runs at a time in worker
processes; with ``together`` K > 1, groups of up to K runs of one variant trained together
(``ganbench.together``) take the place of runs."""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import multiprocessing.connection
import os
import threading
import warnings
from typing import Sequence

from ganbench.errors import one_line_warning
from ganbench.executors import Observer, run_group_guarded
from ganbench.record import RunSpec
from ganbench.together import group_runs
from ganbench.train import RunResult


class InProcessExecutor:
    """One run (or group of runs trained together) after another in this process, with per-step progress."""

    name = "local"

    def __init__(self, together: int = 1):
        self.together = together

    def run(self, specs: Sequence[RunSpec], observer: Observer) -> list[RunResult]:
        by_spec = {}
        for group in group_runs(specs, self.together):
            for spec in group:
                observer.started(spec)
            for spec, result in zip(group, run_group_guarded(group, observer)):
                observer.done(result)
                by_spec[id(spec)] = result
        return [by_spec[id(s)] for s in specs]


WORKER: dict = {}     # in a worker process: its index among the pool's workers and the device it was given


def _worker_init(threads: int, counter, device: str) -> None:
    """Each worker process: its torch threads, its index (0 .. jobs-1, from a shared counter) and, for runs on
    CUDA, its own GPU of the machine's, round-robin (``device.device_for_worker``): N workers share one GPU,
    or spread over several."""
    import torch

    from ganbench.device import device_for_worker, set_threads

    set_threads(threads)
    _exit_with_parent()
    warnings.formatwarning = one_line_warning     # as the command line prints them
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    WORKER["index"] = index
    WORKER["device"] = device_for_worker(index, None, device)
    if WORKER["device"].startswith("cuda:"):
        torch.cuda.set_device(int(WORKER["device"].split(":")[1]))


def _exit_with_parent() -> None:
    """A worker whose ``ganbench run`` is gone (killed with SIGTERM or SIGKILL, which reach it alone, unlike
    Ctrl-C, which reaches the whole process group) ends at once instead of training on unseen, holding its
    run's lock and a core: run again, the suite resumes that run from its last checkpoint (files are written
    atomically, so nothing is half-written). The parent's sentinel, which multiprocessing gives every spawned
    child, becomes ready when the parent dies."""
    parent = multiprocessing.parent_process()
    if parent is None:               # called in the main process (tests)
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="ganbench-exit-with-parent", daemon=True).start()


def worker_info() -> dict:
    """The calling worker's index and device (for tests and progress)."""
    return dict(WORKER)


class ProcessPoolExecutor:
    """``jobs`` runs (or groups of runs trained together) at a time in worker processes (spawned, so each has
    a clean torch), each with ``cpu_count // jobs`` torch threads unless the protocol sets them (jobs: at most
    the number of units of work); on CUDA each worker is given a GPU, round-robin over the machine's (all of
    them share the one GPU there is on a single-GPU machine)."""

    name = "pool"

    def __init__(self, jobs: int, together: int = 1):
        self.jobs, self.together = jobs, together

    def run(self, specs: Sequence[RunSpec], observer: Observer) -> list[RunResult]:
        groups = group_runs(specs, self.together)
        jobs = min(self.jobs, len(groups))
        threads = max(1, (os.cpu_count() or 1) // jobs)
        ctx = multiprocessing.get_context("spawn")
        devices = {spec.protocol.device for spec in specs}
        device = devices.pop() if len(devices) == 1 else "auto"
        with cf.ProcessPoolExecutor(jobs, mp_context=ctx, initializer=_worker_init,
                                    initargs=(threads, ctx.Value("i", 0), device)) as pool:
            futures = {}
            for group in groups:
                for spec in group:
                    observer.started(spec)
                futures[pool.submit(run_group_guarded, group)] = group
            by_spec = {}
            for fut in cf.as_completed(futures):
                # a user's mistake raised in a worker re-raises here
                for spec, result in zip(futures[fut], fut.result()):
                    observer.done(result)
                    by_spec[id(spec)] = result
        return [by_spec[id(s)] for s in specs]
