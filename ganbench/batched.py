"""Seeds trained together: K seeds of one variant as one batched computation.

The K copies of G (and of D) have the same shapes, so their parameters and buffers are stacked along a
new leading dimension (``torch.func.stack_module_state``) and one forward pass of the copies is
``vmap(functional_call)`` over that dimension: convolutions become grouped convolutions over the K copies,
batchnorm normalises each copy's batch with its own statistics. The step is the trainer's step
(``Trainer.train_step``), seed by seed:

- data order: batch ``s`` of seed ``k`` is ``BatchStream(n, B, seed_k).indices(s)``;
- noise: ``torch.randn(B, z_dim, generator=_rng(seed_k, PURPOSE_NOISE, s))``;
- init: G and D built after ``seed_everything(seed_k)``, as ``Trainer.setup`` builds them;
- D step on (real, G(z).detach()) with BCE with logits, then the non-saturating G step through the updated
  D on the same fake batch (D's weights get no gradient there), Adam per the variant;
- BN in training mode: the running statistics are stacked buffers, and batchnorm's vmap rule updates each
  copy's slice in place, once per forward pass, as the trainer's three D passes and one G pass do.
  (``torch.func.replace_all_batch_norm_modules_`` is not used: it stops tracking running statistics, so
  the final running_mean/var would not be those of a run trained alone.)

Adam is elementwise, so one ``torch.optim.Adam`` over the stacked tensors (its default implementation for
the device, as the trainer's) is K independent Adams; the summed loss's gradient with respect to copy k
is copy k's own loss's gradient, as each copy's loss depends on its own slice only. What differs is the
floating-point order of reductions inside grouped convolutions and batchnorm, and the trainer's
channels-last layout: the results equal a seed trained alone to within a tolerance, not bit for bit
(``tests/test_batched.py`` measures it).

A variant whose networks vmap cannot run (a plugin builder whose forward calls ``.item()``, draws random
numbers or keeps Python state) is found by one trial forward and backward pass of the stacked copies; so is
a protocol the batched step does not follow (``compile = true``: the step is not compiled). Their seeds are
then trained one after another with the trainer itself, with a warning naming the variant and the reason.
The protocol's ``precision`` is followed (bf16 autocast of the forward passes), and the trial pass runs under
it. Batchnorm under vmap refuses autocast's bf16 activations with fp32 weights and running statistics (seen
with torch 2.11 on an H200: "Expected running_mean to have type BFloat16"), so under bf16 the stack's
batchnorm layers take their input in fp32 and give their output back in the input's dtype: what the
trainer's batchnorm computes under autocast (fp32 statistics, bf16 out), in the same place. On a CPU (torch
2.14) vmap still refuses autocast's transposed convolutions, so there bf16 seeds train alone. Its
``channels_last`` is not followed: the copies train in NCHW, which changes the result no more than the
trainer's own two layouts differ.

A stack starts from fresh networks (``setup``: each seed built as ``Trainer.setup`` builds it) or from given
ones and their optimizers' Adam state (``load``: the trainers of ``ganbench run --together``, wherever they
stand), and ``unload`` writes one copy's weights, buffers and Adam state back into its own networks and
optimizers.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ganbench.data import load_dataset, to_float
from ganbench.device import resolve_device, resolve_precision, set_threads
from ganbench.plugins import catalog
from ganbench.protocol import Protocol
from ganbench.record import RunSpec
from ganbench.train import PURPOSE_NOISE, STEP_STATS, BatchStream, Trainer, _rng, seed_everything


@dataclass
class SeedResult:
    seed: int
    stats: torch.Tensor                 # (steps, len(STEP_STATS)) on the CPU: g_loss, d_loss, d_real, d_fake, grad norms
    G: dict[str, torch.Tensor]          # G's final state_dict (BN running statistics included), on the CPU
    D: dict[str, torch.Tensor]          # D's final state_dict, on the CPU
    together: bool                      # trained in one batch with the other seeds (False: alone, after a fallback)

    def losses(self) -> dict[str, list[float]]:
        """Per-step series by name (``STEP_STATS``)."""
        return {name: self.stats[:, i].tolist() for i, name in enumerate(STEP_STATS)}


def build_seed(protocol: Protocol, variant_name: str, seed: int) -> tuple[nn.Module, nn.Module]:
    """G and D of one seed, initialised exactly as ``Trainer.setup`` initialises them."""
    seed_everything(seed)
    return catalog().variants.get(variant_name).build(protocol.arch())


def _state(params: dict, buffers: dict, skeleton: nn.Module, k: int) -> dict[str, torch.Tensor]:
    """Copy k's state_dict, in the skeleton's key order."""
    merged = {**params, **buffers}
    return {key: merged[key][k].detach().cpu().clone() for key in skeleton.state_dict()}


def _grad_norms(tensors: list[torch.Tensor]) -> torch.Tensor:
    """Per copy, the 2-norm of all its gradients (``torch.nn.utils.get_total_norm`` for each k)."""
    grads = [t.grad for t in tensors if t.grad is not None]
    per_tensor = torch.stack([torch.linalg.vector_norm(g.reshape(g.shape[0], -1), dim=1) for g in grads], dim=1)
    return torch.linalg.vector_norm(per_tensor, dim=1)


def batchnorm_in_fp32(net: nn.Module) -> nn.Module:
    """Make each batchnorm layer of ``net`` normalise in fp32 and return its input's dtype (bf16 under
    autocast), so vmap's batchnorm rule gets activations of its weights' and running statistics' dtype."""
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            forward = m.forward
            m.forward = lambda x, _forward=forward: _forward(x.float()).to(x.dtype)
    return net


def vmap_problem(G: nn.Module, D: nn.Module, k: int, z_dim: int, device: torch.device) -> str | None:
    """Why vmap cannot train ``k`` stacked copies of these networks (one trial forward and backward pass on
    copies of their state, so nothing of theirs changes), or None when it can."""
    try:
        gp, gb = stack_module_state([G] * k)
        dp, db = stack_module_state([D] * k)
        gp = {n: t.to(device).detach().requires_grad_() for n, t in gp.items()}
        dp = {n: t.to(device).detach().requires_grad_() for n, t in dp.items()}
        gb = {n: t.to(device).clone() for n, t in gb.items()}
        db = {n: t.to(device).clone() for n, t in db.items()}
        z = torch.randn(k, 2, z_dim, generator=torch.Generator().manual_seed(0)).to(device)
        fake = vmap(lambda p, b, x: functional_call(G, (p, b), (x,)))(gp, gb, z)
        logits = vmap(lambda p, b, x: functional_call(D, (p, b), (x,)))(dp, db, fake)
        logits.float().sum().backward()
    except Exception as exc:   # any failure here means: train these seeds alone
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return None


def stack_problem(protocol: Protocol, G: nn.Module, D: nn.Module, k: int, device: torch.device) -> str | None:
    """Why ``k`` seeds of these networks cannot be trained as one stack under this protocol, or None. The
    trial pass runs at the protocol's precision: bf16 autocast changes what vmap is asked to run."""
    if protocol.compile:
        return "compile=true: the batched step is not compiled"
    bf16 = resolve_precision(protocol.precision, device)[0] == "bf16"
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        problem = vmap_problem(G, D, k, protocol.z_dim, device)
    return f"torch.func.vmap cannot run its networks{' under bf16 autocast' if bf16 else ''}: {problem}" if problem \
        else None


def fallback_warning(variant_name: str, problem: str, n_seeds: int) -> str:
    """The one line said when seeds meant to train together train one after another instead."""
    return (f"seeds together: variant {variant_name!r} cannot be batched ({problem}); "
            f"training its {n_seeds} seeds one after another")


def _stack(nets: Sequence[nn.Module], device: torch.device) -> tuple[dict, dict]:
    """The networks' parameters (leaves that take gradients) and buffers, each stacked along a new first
    dimension, on the device, in NCHW layout."""
    params, buffers = stack_module_state(list(nets))
    return ({n: t.detach().to(device).contiguous().requires_grad_() for n, t in params.items()},
            {n: t.detach().to(device).contiguous() for n, t in buffers.items()})


def _stack_adam(states: Sequence[dict], param_groups: list) -> dict:
    """One Adam state_dict over stacked parameters from K Adams' state_dicts over the copies' own (the same
    parameter order): moments stacked along a new first dimension, and the step count, which the K share
    (they stand at the same step), once. No state (a fresh optimizer) stacks to none."""
    stacked = {}
    for i, first in states[0]["state"].items():
        per = [s["state"][i] for s in states]
        if any(not torch.equal(p["step"], first["step"]) for p in per):
            raise ValueError(f"Adam's step counts differ between the copies: {[float(p['step']) for p in per]}")
        stacked[i] = {key: value.clone() if key == "step" else torch.stack([p[key] for p in per]).contiguous()
                      for key, value in first.items()}
    return {"state": stacked, "param_groups": param_groups}


def _adam_slice(state: dict, k: int, param_groups: list) -> dict:
    """Copy k's Adam state_dict, from the stacked optimizer's (``_stack_adam``'s inverse)."""
    return {"state": {i: {key: value.clone() if key == "step" else value[k].clone() for key, value in s.items()}
                      for i, s in state["state"].items()},
            "param_groups": param_groups}


class SeedStack:
    """K seeds of one variant under one protocol, trained as one batched computation on one device.

    ``setup()`` loads the data and builds the K copies (or ``load`` stacks given networks and optimizers);
    ``problem`` then says why they cannot be trained as a stack (None when they can); ``train_step(step)``
    takes every copy one step and returns its statistics, shape (K, len(STEP_STATS)), on the device;
    ``state(k)`` is copy k's G and D, ``unload(k, ...)`` writes copy k back.
    """

    def __init__(self, protocol: Protocol, variant_name: str, seeds: Sequence[int], data_root: str | None = None):
        if len(set(seeds)) != len(seeds) or not seeds:
            raise ValueError(f"seeds must be distinct and at least one: {list(seeds)}")
        self.protocol, self.seeds, self.data_root = protocol, list(seeds), data_root
        self.variant = catalog().variants.get(variant_name)
        self.device = resolve_device(protocol.device)
        self.precision, self.precision_warning = resolve_precision(protocol.precision, self.device)
        if protocol.threads:
            set_threads(protocol.threads)

    def setup(self) -> None:
        """The data and the K copies, each initialised as ``Trainer.setup`` initialises its seed."""
        p = self.protocol
        data = load_dataset(p.dataset, split="train", resolution=p.resolution, channels=p.channels,
                            root=self.data_root, seed=p.data_seed).images.to(self.device)
        self.load(data, [build_seed(p, self.variant.name, s) for s in self.seeds])

    def load(self, data: torch.Tensor, nets: Sequence[tuple[nn.Module, nn.Module]],
             optimizers: Sequence[tuple[torch.optim.Optimizer, torch.optim.Optimizer]] = ()) -> None:
        """Stack these networks, one (G, D) per seed in the seeds' order, and, where given, their optimizers'
        Adam state, one (opt_g, opt_d) per seed, all at the same step; ``data`` is the training set's uint8
        images on the device. Nothing of theirs is changed. Sets ``problem`` (and stacks nothing) when the
        stack cannot train them."""
        p, o = self.protocol, self.variant.optim
        self.data = data
        # the copies' forward passes run through networks of the variant built here, without the hooks or
        # memory layout of the given ones, and without moving the global random state
        with torch.random.fork_rng(devices=[]):
            self.G_skeleton, self.D_skeleton = (net.to(self.device) for net in self.variant.build(p.arch()))
        if self.precision == "bf16":
            batchnorm_in_fp32(self.G_skeleton), batchnorm_in_fp32(self.D_skeleton)
        self.problem = stack_problem(p, self.G_skeleton, self.D_skeleton, len(self.seeds), self.device)
        if self.problem:
            return
        self.gp, self.gb = _stack([g for g, _ in nets], self.device)
        self.dp, self.db = _stack([d for _, d in nets], self.device)
        self.opt_g = torch.optim.Adam(list(self.gp.values()), lr=o.g.lr * p.lr_scale, betas=o.g.betas)
        self.opt_d = torch.optim.Adam(list(self.dp.values()), lr=o.d.lr * p.lr_scale, betas=o.d.betas)
        if optimizers:
            for i, stacked in enumerate((self.opt_g, self.opt_d)):
                stacked.load_state_dict(_stack_adam([opts[i].state_dict() for opts in optimizers],
                                                    stacked.state_dict()["param_groups"]))
        self.streams = [BatchStream(len(self.data), p.batch_size, s) for s in self.seeds]
        self._G = vmap(lambda params, buffers, z: functional_call(self.G_skeleton, (params, buffers), (z,)))
        self._D = vmap(lambda params, buffers, x: functional_call(self.D_skeleton, (params, buffers), (x,)))

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A CPU tensor onto the training device; to a GPU from pinned memory, so the host does not wait."""
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def train_step(self, step: int) -> torch.Tensor:
        p = self.protocol
        idx = self._to_device(torch.stack([s.indices(step) for s in self.streams]))
        x = to_float(self.data[idx])                                              # (K, B, C, H, W)
        z = self._to_device(torch.stack([torch.randn(p.batch_size, p.z_dim, generator=_rng(s, PURPOSE_NOISE, step))
                                         for s in self.seeds]))                   # (K, B, z_dim)

        # D: maximise log D(x) + log(1 - D(G(z))), each copy on its own batch
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            fake = self._G(self.gp, self.gb, z)
            d_real = self._D(self.dp, self.db, x).float()
            d_fake = self._D(self.dp, self.db, fake.detach()).float()
        d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real), reduction="none").mean(1)
                  + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake), reduction="none").mean(1))
        d_loss.sum().backward()
        d_norm = _grad_norms(list(self.dp.values()))
        self.opt_d.step()

        # G: the non-saturating loss through the updated D (its weights detached: no gradient for them)
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            d_on_fake = self._D({n: t.detach() for n, t in self.dp.items()}, self.db, fake).float()
        g_loss = F.binary_cross_entropy_with_logits(d_on_fake, torch.ones_like(d_on_fake), reduction="none").mean(1)
        g_loss.sum().backward()
        g_norm = _grad_norms(list(self.gp.values()))
        self.opt_g.step()

        with torch.no_grad():
            return torch.stack([g_loss, d_loss, torch.sigmoid(d_real).mean(1), torch.sigmoid(d_fake).mean(1),
                                g_norm, d_norm], dim=1).detach()

    def state(self, k: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Copy k's G and D state_dicts, on the CPU."""
        return _state(self.gp, self.gb, self.G_skeleton, k), _state(self.dp, self.db, self.D_skeleton, k)

    def unload(self, k: int, G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer,
               opt_d: torch.optim.Optimizer) -> None:
        """Write copy k's weights, buffers and Adam state into these networks and optimizers (seed k's, as
        ``load`` took them), keeping their devices and memory layouts."""
        with torch.no_grad():
            for net, params, buffers in ((G, self.gp, self.gb), (D, self.dp, self.db)):
                stacked = {**params, **buffers}
                for name, t in itertools.chain(net.named_parameters(), net.named_buffers()):
                    t.copy_(stacked[name][k])
        for opt, stacked_opt in ((opt_g, self.opt_g), (opt_d, self.opt_d)):
            opt.load_state_dict(_adam_slice(stacked_opt.state_dict(), k, opt.state_dict()["param_groups"]))


def train_alone(protocol: Protocol, variant_name: str, seed: int, steps: int, data_root: str | None = None) -> SeedResult:
    """The reference: one seed through the trainer's own ``setup`` and ``train_step`` (nothing written)."""
    trainer = Trainer(RunSpec(protocol, variant_name, seed, data_root=data_root))
    trainer.setup()
    rows = []
    for step in range(steps):
        acc = torch.zeros(len(STEP_STATS), device=trainer.device)
        trainer.train_step(step, acc)
        rows.append(acc)
    stats = torch.stack(rows).cpu() if rows else torch.zeros(0, len(STEP_STATS))
    sd = lambda net: {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}   # noqa: E731
    return SeedResult(seed, stats, sd(trainer.G), sd(trainer.D), together=False)


def train_seeds_together(protocol: Protocol, variant_name: str, seeds: Sequence[int], steps: int,
                         data_root: str | None = None) -> dict[int, SeedResult]:
    """Train ``seeds`` of one variant for ``steps`` steps as one batched computation; per seed, the same
    statistics and final G and D as ``train_alone`` within floating-point tolerance. A variant vmap cannot
    run is trained seed by seed instead, with a warning that names it and the reason."""
    stack = SeedStack(protocol, variant_name, seeds, data_root)
    if stack.precision_warning:
        warnings.warn(stack.precision_warning, stacklevel=2)
    stack.setup()
    if stack.problem:
        warnings.warn(fallback_warning(variant_name, stack.problem, len(stack.seeds)), stacklevel=2)
        return {s: train_alone(protocol, variant_name, s, steps, data_root) for s in stack.seeds}
    rows = [stack.train_step(step) for step in range(steps)]
    stats = torch.stack(rows, dim=1).cpu() if rows else torch.zeros(len(stack.seeds), 0, len(STEP_STATS))
    out = {}
    for k, s in enumerate(stack.seeds):
        g, d = stack.state(k)
        out[s] = SeedResult(s, stats[k], g, d, together=True)
    return out
