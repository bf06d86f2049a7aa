"""Progress of a suite as it trains: a rich progress bar on a terminal, plain lines in a log. Both are
``executors.Observer``s; the command line picks one."""

from __future__ import annotations

import math
import time

import click
from rich.progress import Progress


class LineObserver:
    """Progress for a log (stderr is not a terminal): one line per finished run (variant, seed, status,
    final FID, seconds) and, from runs that report their steps, a line per evaluation at most every
    ``EVERY_S`` seconds."""

    EVERY_S = 30.0

    def __init__(self, n_runs: int):
        self.n_runs, self.finished, self.last = n_runs, 0, -math.inf

    def started(self, spec) -> None:
        pass

    def step(self, spec, step: int, row: dict) -> None:
        now = time.monotonic()
        if row and now - self.last >= self.EVERY_S:
            self.last = now
            stats = " ".join(f"{k}={row[k]:.4g}" for k in ("g_loss", "d_loss", "fid") if k in row)
            click.echo(f"  {spec.protocol.name} {spec.variant} seed {spec.seed}: step {step}/{spec.protocol.steps} {stats}",
                       err=True)

    def done(self, result) -> None:
        from ganbench.record import RunRecord

        self.finished += 1
        fid = ""
        if result.status in ("complete", "diverged", "skipped"):
            value = (RunRecord(result.spec.run_dir).summary().get("final") or {}).get("fid")
            fid = f" fid={value:.4g}" if isinstance(value, (int, float)) else ""
        click.echo(f"[{self.finished}/{self.n_runs}] {result.spec.protocol.name} {result.spec.variant} seed "
                   f"{result.spec.seed}: {result.status}{fid} ({result.wall_s:.0f} s)"
                   + (f" {result.error}" if result.error else ""), err=True)


class RichObserver:
    """One progress bar over the suite (runs done, running, failed) and one over the steps of each run that
    reports its steps, until it is done (the runs of a group trained together report theirs side by side;
    executors whose runs report no steps, a pool or Ray, show the suite bar only)."""

    def __init__(self, progress: Progress, n_runs: int):
        self.progress = progress
        self.suite_task = progress.add_task("suite", total=n_runs, stats="")
        self.run_tasks: dict = {}     # RunSpec -> its bar
        self.running = self.failed = 0

    def _suite_stats(self) -> None:
        self.progress.update(self.suite_task, stats=f"{self.running} running, {self.failed} failed")

    def started(self, spec) -> None:
        self.running += 1
        self._suite_stats()

    def step(self, spec, step: int, row: dict) -> None:
        if spec not in self.run_tasks:
            self.run_tasks[spec] = self.progress.add_task(f"{spec.variant} seed {spec.seed}", total=spec.protocol.steps,
                                                          stats="")
        stats = ""
        if row:
            stats = " ".join(f"{k}={row[k]:.3g}" for k in ("g_loss", "d_loss", "interval_ips", "fid") if k in row)
        self.progress.update(self.run_tasks[spec], completed=step, **({"stats": stats} if stats else {}))

    def done(self, result) -> None:
        self.running -= 1
        self.failed += result.status == "failed"
        if result.spec in self.run_tasks:
            self.progress.remove_task(self.run_tasks.pop(result.spec))
        self.progress.advance(self.suite_task)
        self._suite_stats()
