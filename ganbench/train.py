"""The trainer: one variant, one seed, one protocol -> one run record.

The paper's setting: the non-saturating GAN loss (BCE with logits), one D update then one G update per
step on the same fake batch, Adam per the variant, init per the variant. Everything random in training is
derived from the seed without hidden state: batch ``s`` reads positions ``s*B .. s*B+B-1`` of a stream of
per-epoch permutations seeded by (seed, epoch), and its noise comes from a generator seeded by (seed, s).
So the same seed gives the same losses bit for bit on a CPU, and a run resumed from a checkpoint continues
exactly as if it had never stopped.

Data stays one uint8 tensor (on the training device) and is converted per batch; losses and statistics
are accumulated on the device and read once per evaluation. With ``precision = "bf16"`` the training forward
passes run under bf16 autocast (convolutions and matrix products in bf16, on a CPU with AVX-512 BF16 or a
GPU); weights, Adam's state, the losses and every evaluation stay fp32.
"""

from __future__ import annotations

import math
import random
import time
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ganbench import metrics as metrics_mod
from ganbench.data import dataset_spec, load_dataset, to_float, to_uint8
from ganbench.device import resolve_device, resolve_precision, set_threads
from ganbench.errors import GanbenchError
from ganbench.generate import generate, sampler, save_grid, training_copy
from ganbench.graphs import StepGraph, graph_problem
from ganbench.plugins import catalog
from ganbench.record import RunRecord, RunSpec

N_FIXED = 64          # images in the fixed-z sample grid

# Statistics accumulated over the steps between two evaluations (summed on the device, averaged at read).
STEP_STATS = ("g_loss", "d_loss", "d_real", "d_fake", "g_grad_norm", "d_grad_norm")

Progress = Callable[[int, dict], None]   # (step, latest statistics) -> None


class PrecisionWarning(UserWarning):
    """bf16 asked for on a device that runs it without hardware support (slower than fp32)."""


@dataclass
class RunResult:
    spec: RunSpec
    status: str            # "complete", "diverged", "failed", or "skipped" when it was already done
    wall_s: float
    error: str = ""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng(*key: int) -> torch.Generator:
    """A CPU generator seeded by a tuple of integers (seed, purpose, step ...)."""
    g = torch.Generator()
    g.manual_seed(int.from_bytes(np.random.SeedSequence(list(key)).generate_state(2, np.uint32).tobytes(), "little"))
    return g


PURPOSE_DATA, PURPOSE_NOISE, PURPOSE_FIXED, PURPOSE_SAMPLE = 1, 2, 3, 4


class BatchStream:
    """Batch ``s`` = positions s*B .. s*B+B-1 of the concatenation of per-epoch permutations."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.b, self.seed = n, batch_size, seed
        self._perms: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._perms:
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            self._perms[epoch] = torch.randperm(self.n, generator=_rng(self.seed, PURPOSE_DATA, epoch))
        return self._perms[epoch]

    def indices(self, step: int) -> torch.Tensor:
        start = step * self.b
        parts, pos = [], start
        while pos < start + self.b:
            epoch, offset = divmod(pos, self.n)
            take = min(self.n - offset, start + self.b - pos)
            parts.append(self._perm(epoch)[offset:offset + take])
            pos += take
        return torch.cat(parts)


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _grad_like_input(module: torch.nn.Module, args: tuple) -> None:
    """Forward pre-hook: the gradient that flows back into this module's input gets that input's memory
    layout. Where a channels-last activation meets a contiguous gradient (D's flatten before its linear
    head, G's reshaped projection before its first convolution), PyTorch's CPU elementwise backward kernels
    (LeakyReLU, ReLU) take a slow strided path: 2.7 ms instead of 0.08 ms on a 128x32x16x16 tensor. One copy
    of the gradient avoids it; the values are unchanged."""
    x = args[0]
    if isinstance(x, torch.Tensor) and x.requires_grad and x.dim() == 4:
        layout = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
        x.register_hook(lambda g: g.contiguous(memory_format=layout))


def _keep_grad_layouts(net: torch.nn.Module) -> None:
    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Flatten)):
            m.register_forward_pre_hook(_grad_like_input)


def _grad_norm(net: torch.nn.Module) -> torch.Tensor:
    return torch.nn.utils.get_total_norm([p.grad for p in net.parameters() if p.grad is not None])


class Trainer:
    """Trains one run; ``run()`` returns its result and leaves its record in ``spec.run_dir``.

    ``run()`` is ``start()`` (set up, resume, write the spec), then ``train_interval()`` up to each evaluation
    (``end_interval``: evaluate, checkpoint, write the series), then ``finish()`` (the summary). Runs trained
    together (``ganbench.together``) go through the same parts, with their steps between two evaluations
    trained as one batch instead of ``train_interval``."""

    def __init__(self, spec: RunSpec, progress: Progress | None = None):
        self.t0 = time.perf_counter()   # this session's start (``start()`` sets it again)
        self.spec = spec
        self.protocol = p = spec.protocol
        self.progress = progress
        self.variant = catalog().variants.get(spec.variant)
        self.dataset = dataset_spec(p.dataset)
        # an unknown metric is a user's mistake: say so before training
        self.metric_specs = [catalog().metrics.get(name) for name in p.metrics]
        self.device = resolve_device(p.device)
        # "cuda-bf16" (default): bf16 on a GPU that has it in hardware; "auto": on a CPU that has it too; else
        # fp32; bf16 asked for without it: a warning
        self.precision, precision_warning = resolve_precision(p.precision, self.device)
        if precision_warning:
            warnings.warn(precision_warning, PrecisionWarning, stacklevel=2)
        self.record = RunRecord(spec.run_dir)
        self.graph_problem = graph_problem(self.device, p.compile) if p.cuda_graph else None
        if self.graph_problem:
            warnings.warn(self.graph_problem, stacklevel=2)
        if p.threads:
            set_threads(p.threads)

    # -- set-up ----------------------------------------------------------------------------------------

    def setup(self) -> None:
        p, spec = self.protocol, self.spec
        load = dict(resolution=p.resolution, channels=p.channels, root=spec.data_root, seed=p.data_seed)
        self.train_set = load_dataset(p.dataset, split="train", **load)
        self.reference = load_dataset(p.dataset, split=p.reference_split, **load)
        self.data = self.train_set.images.to(self.device)          # uint8 on the training device
        seed_everything(spec.seed)
        self.arch = self.variant.arch_spec(p.arch())
        self.memory_format = torch.channels_last if p.channels_last else torch.contiguous_format
        self.G, self.D = (net.to(self.device, memory_format=self.memory_format) for net in self.variant.build(p.arch()))
        if p.channels_last:
            _keep_grad_layouts(self.G)
            _keep_grad_layouts(self.D)
        # the training passes, compiled when the protocol asks (weights, checkpoints and evaluation use G and D)
        self.g_train, self.d_train = ((torch.compile(self.G), torch.compile(self.D)) if p.compile else (self.G, self.D))
        o, scale = self.variant.optim, p.lr_scale
        graphs = p.cuda_graph and self.graph_problem is None   # Adam's step count on the device, for the graph
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=o.g.lr * scale, betas=o.g.betas, capturable=graphs)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=o.d.lr * scale, betas=o.d.betas, capturable=graphs)
        self.graph = StepGraph(self) if graphs else None
        self.stream = BatchStream(len(self.data), p.batch_size, spec.seed)
        self.z_fixed = torch.randn(N_FIXED, p.z_dim, generator=_rng(spec.seed, PURPOSE_FIXED)).to(self.device)
        self.step = 0
        self.history: list[dict] = []
        self.fixed_history: list[torch.Tensor] = []
        self.train_time = 0.0
        self.wall_before: float | None = 0.0   # wall time of earlier sessions, to their last checkpoint (None: unknown)
        self.together: list[dict] = []     # spans of steps trained with other seeds (ganbench.together)

    def _save_checkpoint(self) -> None:
        self.record.save_checkpoint(self.spec.run_id, {
            "step": self.step, "G": self.G.state_dict(), "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "history": self.history, "fixed_history": self.fixed_history, "train_time": self.train_time,
            "together": self.together, "wall_time": self._wall_total(),
        })

    def _wall_total(self) -> float | None:
        """Wall time spent on the run so far: this session's, and earlier sessions' up to their last checkpoint
        (what a session did after it is trained again, and counted again); None where an earlier session's is
        unknown (a checkpoint written before checkpoints kept it)."""
        return None if self.wall_before is None else self.wall_before + time.perf_counter() - self.t0

    def _load_checkpoint(self) -> bool:
        state = self.record.load_checkpoint(self.spec.run_id, map_location=self.device)
        if state is None:
            return False
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self.step, self.history = state["step"], state["history"]
        self.fixed_history, self.train_time = state["fixed_history"], state["train_time"]
        self.together = state.get("together", [])   # absent from checkpoints written before --together
        self.wall_before = state.get("wall_time")      # absent (unknown) from checkpoints written before it was kept
        return True

    # -- the step --------------------------------------------------------------------------------------

    def _autocast(self, graph: bool = False) -> torch.autocast:
        """bf16 autocast of G's and D's forward passes when the protocol asks for it (weights, optimizer
        state, losses and evaluation stay fp32); a no-op context at fp32. Inside a CUDA graph without its
        weight cache, as PyTorch requires."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16",
                              cache_enabled=not graph)

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A CPU tensor (indices, noise) to the training device; on CUDA through pinned memory without
        waiting for the copy, so the step has no host sync."""
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t

    def batch_inputs(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step ``step``'s batch indices and noise, on the CPU (the same for every device)."""
        p = self.protocol
        return (self.stream.indices(step),
                torch.randn(p.batch_size, p.z_dim, generator=_rng(self.spec.seed, PURPOSE_NOISE, step)))

    def batch_images(self, indices: torch.Tensor) -> torch.Tensor:
        """The training images at these indices (on the device), as floats in the trainer's memory layout."""
        return to_float(self.data[indices]).contiguous(memory_format=self.memory_format)

    def train_step(self, step: int, acc: torch.Tensor) -> None:
        """One training step; its statistics (STEP_STATS) are added to ``acc``, on the device."""
        if self.graph is not None:
            self.graph.step(step, acc)
            return
        indices, noise = self.batch_inputs(step)
        acc += self.step_arithmetic(self.batch_images(self._to_device(indices)), self._to_device(noise))

    def step_arithmetic(self, x: torch.Tensor, z: torch.Tensor, graph: bool = False) -> torch.Tensor:
        """D's step on real ``x`` and G(z), then G's; returns the step's statistics (STEP_STATS)."""
        p = self.protocol
        ones = torch.ones(p.batch_size, device=self.device)
        zeros = torch.zeros(p.batch_size, device=self.device)

        # D: maximise log D(x) + log(1 - D(G(z)))
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast(graph):
            fake = self.g_train(z)
            d_real, d_fake = self.d_train(x).float(), self.d_train(fake.detach()).float()
        d_loss = F.binary_cross_entropy_with_logits(d_real, ones) + F.binary_cross_entropy_with_logits(d_fake, zeros)
        d_loss.backward()
        d_norm = _grad_norm(self.D)
        self.opt_d.step()

        # G: the non-saturating loss, maximise log D(G(z)), on the same fake batch; D's weight gradients
        # are not needed here (the next D step starts from zero), so they are not computed
        self.opt_g.zero_grad(set_to_none=True)
        self.D.requires_grad_(False)
        with self._autocast(graph):
            d_on_fake = self.d_train(fake).float()
        g_loss = F.binary_cross_entropy_with_logits(d_on_fake, ones)
        g_loss.backward()
        self.D.requires_grad_(True)
        g_norm = _grad_norm(self.G)
        self.opt_g.step()

        with torch.no_grad():
            return torch.stack([g_loss, d_loss, torch.sigmoid(d_real).mean(), torch.sigmoid(d_fake).mean(),
                                g_norm, d_norm]).detach()

    # -- evaluation ------------------------------------------------------------------------------------

    def sampler(self, step: int) -> Callable[[int], torch.Tensor]:
        """n -> n images drawn as the trainer draws them (``ganbench.generate``); the same step gives the
        same images."""
        p = self.protocol
        return sampler(self.G, p.z_dim, p.batch_size, lambda: _rng(self.spec.seed, PURPOSE_SAMPLE, step))

    def _evaluate(self, acc: torch.Tensor, n_steps: int, images: int, elapsed: float, final: bool,
                  diverged: bool) -> dict:
        means = (acc / max(n_steps, 1)).tolist()
        row = {"step": self.step, "images_seen": self.step * self.protocol.batch_size,
               **dict(zip(STEP_STATS, means)),
               "interval_ips": images / elapsed if elapsed > 0 else math.nan}
        fixed = generate(training_copy(self.G), [self.z_fixed])
        if diverged:  # G's weights are no longer finite: sample scores are NaN, stability says diverged
            row["diverged"] = 1.0
        if self.protocol.metrics:
            row.update(self._metrics(row, fixed, final, diverged))
        self.history.append(row)
        self.fixed_history.append(to_uint8(fixed))
        if torch.isfinite(fixed).all():
            save_grid(fixed, self.record.sample_grid(self.step), nrow=8)
        return row

    def _metrics(self, row: dict, fixed: torch.Tensor, final: bool, diverged: bool) -> dict:
        ctx = metrics_mod.EvalContext(
            protocol=self.protocol, dataset=self.dataset, sample=self.sampler(self.step),
            reference=self.reference, fixed=fixed, fixed_history=list(self.fixed_history),
            history=self.history + [row], step=self.step, final=final, device=self.device,
            generator=self.G, discriminator=self.D, arch=self.arch, diverged=diverged, data_root=self.spec.data_root,
            seed=self.spec.seed,
        )
        return metrics_mod.evaluate(ctx, self.protocol.metrics)

    # -- the run ---------------------------------------------------------------------------------------

    def _diverged(self) -> bool:
        return bool(self.history) and self.history[-1].get("diverged") == 1.0

    def start(self) -> None:
        """Set up, resume from the checkpoint where there is one, and write the spec and the running status."""
        self.t0 = time.perf_counter()
        self.setup()
        self.resumed = self._load_checkpoint()
        self.record.write_spec(self.spec, self.variant, self.arch, self.dataset, self.metric_specs, str(self.device),
                               self.precision)
        self.record.write_running(self.step, self.resumed)

    def next_eval(self) -> int | None:
        """The step of the next evaluation; None once the run is over (its last evaluation done, or diverged)."""
        if self._diverged():
            return None
        return next((s for s in self.protocol.eval_steps() if s > self.step), None)

    def stepped(self, step: int) -> None:
        """``step`` steps are trained: the run stands there, and its progress hears of it."""
        self.step = step
        if self.progress:
            self.progress(step, {})

    def train_interval(self) -> None:
        """Train alone up to the next evaluation, then evaluate (``end_interval``)."""
        acc = torch.zeros(len(STEP_STATS), device=self.device)
        start_step, t = self.step, time.perf_counter()
        for step in range(start_step, self.next_eval()):
            self.train_step(step, acc)
            self.stepped(step + 1)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        self.end_interval(acc, start_step, time.perf_counter() - t)

    def end_interval(self, acc: torch.Tensor, start_step: int, elapsed: float, together: Sequence[int] = ()) -> None:
        """After the steps from ``start_step`` to ``self.step`` (their statistics summed in ``acc``, trained in
        ``elapsed`` seconds, with the seeds ``together`` where they were trained as one batch): the evaluation,
        the checkpoint and the series. A run whose statistics are not finite is recorded as diverged."""
        p = self.protocol
        self.train_time += elapsed
        if together:
            self._trained_together(start_step, list(together))
        diverged = not bool(torch.isfinite(acc).all())
        n_steps = self.step - start_step
        final = diverged or not any(s > self.step for s in p.eval_steps())
        row = self._evaluate(acc, n_steps, n_steps * p.batch_size, elapsed, final=final, diverged=diverged)
        if self.progress:
            self.progress(self.step, row)
        self._save_checkpoint()
        self.record.write_series(self.history)

    def _trained_together(self, start_step: int, seeds: list[int]) -> None:
        """Add the span ``start_step .. self.step`` trained with ``seeds`` to the record, merged with the last
        span where it continues it with the same seeds."""
        last = self.together[-1] if self.together else None
        if last and last["seeds"] == seeds and last["steps"][1] == start_step:
            last["steps"][1] = self.step
        else:
            self.together.append({"steps": [start_step, self.step], "seeds": seeds})

    def finish(self) -> RunResult:
        """Write the series and the summary; the run's result."""
        spec, p = self.spec, self.protocol
        # also after a resume that found the last checkpoint already at the end
        self.record.write_series(self.history)
        status = "diverged" if self._diverged() else "complete"
        wall, wall_total = time.perf_counter() - self.t0, self._wall_total()
        final_row = self.history[-1] if self.history else {}
        self.record.write_summary(spec.run_id, status, self.step, p.steps, self.train_time, wall, self.resumed,
                                  final_row, self.together, wall_total)
        return RunResult(spec, status, wall)

    def run_to_end(self) -> RunResult:
        """Train alone from where the run stands to its last evaluation; its result."""
        while self.next_eval() is not None:
            self.train_interval()
        return self.finish()

    def run(self) -> RunResult:
        self.start()
        return self.run_to_end()


def run_one(spec: RunSpec, progress: Progress | None = None) -> RunResult:
    """Train a run unless it is already a result; never raises for a run that fails while training
    (the failure is recorded), but does raise for a user's mistake (unknown names, missing data)."""
    t0 = time.perf_counter()
    record = RunRecord(spec.run_dir)
    record.check_identity(spec.run_id)
    with record.lock():
        if record.is_done():
            return RunResult(spec, "skipped", 0.0)
        trainer = Trainer(spec, progress)   # resolves names: user mistakes raise before training
        try:
            return trainer.run()
        except GanbenchError:
            raise
        except Exception as exc:  # a crash inside training is a result of that run, not of the suite
            error = f"{type(exc).__name__}: {exc}"
            record.write_failure(spec.run_id, error)
            return RunResult(spec, "failed", time.perf_counter() - t0, error)


def measure_throughput(spec: RunSpec, steps: int = 20, warmup: int = 3) -> dict:
    """Training images per second of the trainer's step (no evaluation, nothing written), and sampling
    images per second, for ``ganbench bench``."""
    trainer = Trainer(spec)
    trainer.setup()
    acc = torch.zeros(len(STEP_STATS), device=trainer.device)
    for s in range(warmup):
        trainer.train_step(s, acc)
    sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    for s in range(warmup, warmup + steps):
        trainer.train_step(s, acc)
    acc.tolist()
    train_s = time.perf_counter() - t0
    sample = trainer.sampler(0)
    n = 4 * trainer.protocol.batch_size
    sample(trainer.protocol.batch_size)
    t0 = time.perf_counter()
    sample(n)
    sample_s = time.perf_counter() - t0
    return {"variant": spec.variant, "device": str(trainer.device), "batch_size": trainer.protocol.batch_size,
            "train_ips": steps * trainer.protocol.batch_size / train_s, "sample_ips": n / sample_s}
