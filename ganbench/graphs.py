"""The trainer's step as one CUDA graph (``cuda_graph = true``): a replay per step instead of the few hundred
kernel launches Python makes for a small DCGAN's D step, G step and two Adam updates.

On an H200 one 32 px run (widths 64, batch 128) trained 16-20k images/s, about 6 ms a step for a network of
0.07 GFLOP a forward pass: the GPU mostly waits for launches (``results/published/gpu.md``). A graph replays
the recorded kernels from one call.

What the graph holds: the step's arithmetic, from the batch's indices and noise (copied into static buffers
before each replay, through pinned memory, so nothing waits for the GPU) to both Adam updates and the step's
statistics. How it is made (PyTorch's whole-network capture): a few warm-up steps on a side stream (so that
cuDNN, autograd and Adam allocate what they need), then one step recorded; the warm-up steps changed the
networks, their BN statistics and Adam's moments, so those are put back exactly as they were (``Snapshot``):
the run's first replayed step starts where the run stood. Adam is built with ``capturable=True`` (its step
count on the device), the same update as the default implementation up to rounding; autocast's weight cache
is off inside graphs, as PyTorch requires.

A graph holds the addresses of every tensor it reads and writes. Loading a checkpoint or an optimizer state
replaces Adam's tensors, so before each replay the addresses are compared with those at capture
(``addresses``), and a changed one means a new capture (Adam made capturable again first: a checkpoint saved
without graphs brings its own settings). Not part of a run's identity (how, not what, like
``compile``); on a CPU, or with ``compile = true``, the trainer trains without graphs and says so once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:   # pragma: no cover
    from ganbench.train import Trainer

WARMUP_STEPS = 3


def graph_problem(device: torch.device, compile: bool) -> str | None:
    """Why ``cuda_graph = true`` cannot be followed here (the trainer then trains without graphs), or None."""
    if device.type != "cuda":
        return (f"cuda_graph=true: CUDA graphs need a CUDA device, this run trains on {device.type}; "
                "training without them")
    if compile:
        return "cuda_graph=true with compile=true: the compiled passes are not captured; training without graphs"
    return None


def _state_tensors(trainer: Trainer) -> list[torch.Tensor]:
    """Every tensor the step reads or writes in place: G's and D's parameters and buffers, Adam's moments
    and step counts."""
    tensors = [*trainer.G.parameters(), *trainer.G.buffers(), *trainer.D.parameters(), *trainer.D.buffers()]
    for opt in (trainer.opt_g, trainer.opt_d):
        for state in opt.state.values():
            tensors += [v for v in state.values() if torch.is_tensor(v)]
    return tensors


def addresses(trainer: Trainer) -> tuple[int, ...]:
    return tuple(t.data_ptr() for t in _state_tensors(trainer))


def make_capturable(opt: torch.optim.Optimizer, device: torch.device) -> None:
    """Adam as a graph needs it: ``capturable`` and its step counts on the device, also after loading a state
    saved without graphs (a checkpoint's param groups and CPU step counts replace the optimizer's own)."""
    for group in opt.param_groups:
        group["capturable"] = True
    for state in opt.state.values():
        step = state.get("step")
        if torch.is_tensor(step) and step.device != device:
            state["step"] = step.to(device=device, dtype=torch.float32)


class Snapshot:
    """The networks' weights and buffers and both optimizers' state, copied, so that steps taken after it
    can be undone in place (the tensors keep their addresses): Adam state that did not exist yet is reset to
    what a fresh state means (zero moments, step 0), which gives the same next update as creating it."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        self.nets = [{k: v.detach().clone() for k, v in net.state_dict(keep_vars=True).items()}
                     for net in (trainer.G, trainer.D)]
        self.opts = [{p: {k: v.detach().clone() if torch.is_tensor(v) else v for k, v in s.items()}
                      for p, s in opt.state.items()} for opt in (trainer.opt_g, trainer.opt_d)]

    @torch.no_grad()
    def restore(self) -> None:
        t = self.trainer
        for net, saved in zip((t.G, t.D), self.nets):
            for k, v in net.state_dict(keep_vars=True).items():
                v.copy_(saved[k])
        for opt, saved in zip((t.opt_g, t.opt_d), self.opts):
            for p, state in opt.state.items():
                before = saved.get(p, {})
                for k, v in state.items():
                    if torch.is_tensor(v) and k in before:
                        v.copy_(before[k])
                    elif torch.is_tensor(v):
                        v.zero_()


class StepGraph:
    """One trainer's step, captured on its first use (and again whenever the tensors it holds were replaced)."""

    def __init__(self, trainer: Trainer):
        self.trainer = trainer
        p = trainer.protocol
        self.idx = torch.zeros(p.batch_size, dtype=torch.long, device=trainer.device)
        self.z = torch.zeros(p.batch_size, p.z_dim, device=trainer.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.stats: torch.Tensor | None = None
        self.held: tuple[int, ...] = ()
        self.captures = 0

    def _body(self) -> torch.Tensor:
        return self.trainer.step_arithmetic(self.trainer.batch_images(self.idx), self.z, graph=True)

    def capture(self) -> None:
        t = self.trainer
        make_capturable(t.opt_g, t.device)
        make_capturable(t.opt_d, t.device)
        snapshot = Snapshot(t)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self._body()
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.stats = self._body()
        snapshot.restore()
        self.held = addresses(self.trainer)
        self.captures += 1

    def step(self, step: int, acc: torch.Tensor) -> None:
        t = self.trainer
        if self.graph is None or addresses(t) != self.held:
            self.capture()
        indices, noise = t.batch_inputs(step)
        self.idx.copy_(indices.pin_memory(), non_blocking=True)
        self.z.copy_(noise.pin_memory(), non_blocking=True)
        self.graph.replay()
        acc += self.stats
