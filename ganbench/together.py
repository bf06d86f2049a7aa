"""Runs trained together (``ganbench run --together K``): K seeds of one variant as one batched computation,
each keeping its own run record exactly as if it had trained alone.

``group_runs`` makes the units of work: per protocol and variant, the runs that are not yet results, K at a
time in plan order (done runs stay alone, to be skipped). ``run_together`` trains one group in this process.
Each run of a group is an ordinary ``Trainer``: it sets up, resumes from its own checkpoint, evaluates,
checkpoints and writes its record through its own code (``Trainer.start``, ``end_interval``, ``finish``).
Only the steps between two evaluations differ: the runs that stand at the same step are stacked into one
``SeedStack`` (their G's and D's weights and buffers and their Adam state), trained as one batch, and each
run's slice is written back into its own networks and optimizers before it evaluates, with the summed
statistics of its own slice. The results equal the runs trained alone within floating-point tolerance
(``tests/test_together.py`` measures it).

- **Time.** The batch's training time is shared equally: a run's ``train_seconds`` counts, for steps trained
  together, the batch's time divided by its number of seeds, and its evaluations' ``interval_ips`` (so the
  cost metric's ``train_ips``) are its images over that share, i.e. the batch's images per second. Its
  summary's ``trained_together`` lists the spans of steps trained together and with which seeds; its wall
  time is the group's session.
- **Resume.** A run resumes from its own checkpoint. Runs of a group that stand at different steps (a group
  interrupted between two of its runs' checkpoints) are not forced together: the runs behind train alone up
  to the others' step, then join them.
- **Divergence.** A seed whose statistics turn non-finite trains to the end of the interval with the others
  (its slice cannot touch theirs), is evaluated and recorded as diverged exactly as alone, and leaves the
  group; the others go on.
- **Fallback.** A variant whose networks vmap cannot run, or a protocol the batched step does not follow
  (``compile = true``), trains the group's runs one after another through the trainer, with one warning
  naming the variant and the reason (``batched.stack_problem``).
- **Data.** The group holds one copy of the training images per device (each trainer's setup makes its own,
  which is dropped at once for the first one's), not K.
- **Locks.** Every run's lock is held from before its trainer starts until the group ends; a run another
  process holds is left to it ("locked"), a run already done is skipped, as ``run_one`` does.
- **Failures.** A user's mistake raises; a crash while training is recorded as the failure of each run of the
  group not yet finished.
"""

from __future__ import annotations

import time
import warnings
from contextlib import ExitStack
from typing import Callable, Sequence

import torch

from ganbench.batched import SeedStack, fallback_warning
from ganbench.errors import GanbenchError
from ganbench.record import RunLocked, RunRecord, RunSpec
from ganbench.train import STEP_STATS, Progress, RunResult, Trainer


def group_runs(specs: Sequence[RunSpec], k: int) -> list[list[RunSpec]]:
    """The units of work of a suite: each run alone when ``k`` is 1; otherwise, per protocol and variant, the
    runs that are not yet results in groups of up to ``k`` (in plan order), and each done run alone."""
    if k <= 1:
        return [[spec] for spec in specs]
    groups: list[list[RunSpec]] = []
    pending: dict[tuple, list[RunSpec]] = {}
    for spec in specs:
        if RunRecord(spec.run_dir).is_done():
            groups.append([spec])
        else:
            pending.setdefault((spec.protocol, spec.variant, spec.results, spec.data_root), []).append(spec)
    for runs in pending.values():
        groups += [runs[i:i + k] for i in range(0, len(runs), k)]
    return groups


def run_together(specs: Sequence[RunSpec],
                 progress: Callable[[RunSpec], Progress | None] = lambda spec: None) -> list[RunResult]:
    """Train runs of one protocol and variant together; one result per spec, in order (see the module)."""
    outcomes: dict[RunSpec, RunResult] = {}
    with ExitStack() as locks:
        trainers = []
        for spec in specs:
            record = RunRecord(spec.run_dir)
            record.check_identity(spec.run_id)
            try:
                locks.enter_context(record.lock())
            except RunLocked as exc:
                outcomes[spec] = RunResult(spec, "locked", 0.0, str(exc))
                continue
            if record.is_done():
                outcomes[spec] = RunResult(spec, "skipped", 0.0)
            else:
                trainers.append(Trainer(spec, progress(spec)))   # resolves names: user mistakes raise here
        outcomes.update(_train(trainers))
    return [outcomes[spec] for spec in specs]


def _train(trainers: list[Trainer]) -> dict[RunSpec, RunResult]:
    """Train the trainers' runs to their ends, those at the same step as one batch; their results."""
    results: dict[RunSpec, RunResult] = {}
    t0 = time.perf_counter()
    try:
        on_device: dict = {}   # one copy of the training images per device for the whole group, not one per seed
        for trainer in trainers:
            trainer.start()
            key = (id(trainer.train_set.images), str(trainer.device))
            trainer.data = on_device.setdefault(key, trainer.data)   # the trainer's own copy is freed here
        active = list(trainers)
        while True:
            for trainer in [t for t in active if t.next_eval() is None]:
                results[trainer.spec] = trainer.finish()
                active.remove(trainer)
            if not active:
                return results
            step = min(t.step for t in active)
            batch = [t for t in active if t.step == step]
            if len(batch) == 1:
                batch[0].train_interval()
                continue
            problem = _train_interval_together(batch)
            if problem:
                warnings.warn(fallback_warning(active[0].variant.name, problem, len(active)), stacklevel=2)
                for trainer in active:
                    results[trainer.spec] = trainer.run_to_end()
                return results
    except GanbenchError:
        raise
    except Exception as exc:  # a crash inside training is a result of the group's unfinished runs
        error = f"{type(exc).__name__}: {exc}"
        for trainer in trainers:
            if trainer.spec not in results:
                trainer.record.write_failure(trainer.spec.run_id, error)
                results[trainer.spec] = RunResult(trainer.spec, "failed", time.perf_counter() - t0, error)
        return results


def _train_interval_together(batch: list[Trainer]) -> str | None:
    """Train these trainers, all at one step, up to their next evaluation as one stack, write each one's slice
    back and let it evaluate; or, training nothing, say why they cannot be stacked."""
    first = batch[0]
    stack = SeedStack(first.protocol, first.variant.name, [t.spec.seed for t in batch], first.spec.data_root)
    stack.load(first.data, [(t.G, t.D) for t in batch], [(t.opt_g, t.opt_d) for t in batch])
    if stack.problem:
        return stack.problem
    start_step, target = first.step, first.next_eval()
    acc = torch.zeros(len(batch), len(STEP_STATS), device=stack.device)
    t = time.perf_counter()
    for step in range(start_step, target):
        acc += stack.train_step(step)
        for trainer in batch:
            trainer.stepped(step + 1)
    if stack.device.type == "cuda":
        torch.cuda.synchronize()
    share = (time.perf_counter() - t) / len(batch)
    for k, trainer in enumerate(batch):
        stack.unload(k, trainer.G, trainer.D, trainer.opt_g, trainer.opt_d)
        trainer.end_interval(acc[k], start_step, share, together=stack.seeds)
    return None
