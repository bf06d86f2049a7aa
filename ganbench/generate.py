"""Drawing images from a generator: samples as the trainer draws them, frozen generators, latent walks,
and the library functions of ``ganbench sample`` and ``ganbench interpolate``.

**Samples** come from a copy of G in training mode (batch statistics, as G is trained), in batches of the
protocol's size; G's own batchnorm statistics are left untouched. Batchnorm needs two images in a batch: a
batch of one is padded with a copy of its own z, so every image depends only on the z values of its batch.

**A latent walk** needs each frame to depend on its own z only, so ``interpolate`` runs a copy of G whose
batchnorm statistics were measured once on a reference batch of generated images (training mode's
statistics, frozen): the first and last frames are then exactly that copy's G(z_a) and G(z_b).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ganbench.errors import GanbenchError, SpecError
from ganbench.files import atomic_path

Sampler = Callable[[int], torch.Tensor]   # n -> n images, float [-1, 1], (n, C, H, W), on the CPU


def latent(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """n latent vectors z ~ N(0, I) from a generator seeded by ``seed``."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


def noise_batches(n: int, z_dim: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """n latent vectors in batches of ``batch_size``, each batch drawn from ``generator`` as it is needed."""
    for start in range(0, n, batch_size):
        yield torch.randn(min(batch_size, n - start), z_dim, generator=generator)


def training_copy(G: nn.Module) -> nn.Module:
    """A copy of G in training mode: samples use batch statistics and leave G's own untouched."""
    return copy.deepcopy(G).train()


def generate(G: nn.Module, z_batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """G(z) for each batch of z, concatenated: float on the CPU. A batch of one is padded with its own z
    (batchnorm needs two) and the padding dropped."""
    device = next(G.parameters()).device
    out = []
    with torch.no_grad():
        for z in z_batches:
            m = len(z)
            if m == 1:
                z = z.repeat(2, 1)
            out.append(G(z.to(device))[:m].float().cpu())
    return torch.cat(out)


def sampler(G: nn.Module, z_dim: int, batch_size: int, new_generator: Callable[[], torch.Generator]) -> Sampler:
    """n -> n images from a training-mode copy of G, with the noise of ``new_generator()`` (a fresh one on
    every call: the same n gives the same images)."""
    G = training_copy(G)
    return lambda n: generate(G, noise_batches(n, z_dim, batch_size, new_generator()))


def sample(G: nn.Module, z: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    """G(z) as the trainer draws samples, for given z."""
    return generate(training_copy(G), z.split(batch_size))


def frozen_generator(G: nn.Module, reference_z: torch.Tensor) -> nn.Module:
    """A copy of G whose batchnorm layers use the statistics of one training-mode pass over
    ``reference_z`` (a batch like the trainer's), frozen: each image then depends on its own z only."""
    G = copy.deepcopy(G)
    for m in G.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None   # a cumulative average: exactly this batch's statistics
    G.train()
    with torch.no_grad():
        G(reference_z.to(next(G.parameters()).device))
    return G.eval()


def slerp(za: torch.Tensor, zb: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation between rows of za and zb at fractions t: (pairs, steps, z_dim); linear where
    the two are (nearly) parallel."""
    cos = F.cosine_similarity(za, zb, dim=1).clamp(-1, 1)
    omega = torch.arccos(cos)[:, None, None]
    so = torch.sin(omega)
    t = t[None, :, None]
    lerp = (1 - t) * za[:, None] + t * zb[:, None]
    sph = torch.sin((1 - t) * omega) / so * za[:, None] + torch.sin(t * omega) / so * zb[:, None]
    return torch.where(so.abs() > 1e-6, sph, lerp)


def walk(za: torch.Tensor, zb: torch.Tensor, steps: int, spherical: bool = False) -> torch.Tensor:
    """Latent points from za to zb, both included: (pairs, steps, z_dim); linear as in the paper, or slerp."""
    if steps < 2:
        raise SpecError(f"interpolation steps={steps} is not allowed; expected an integer >= 2")
    t = torch.linspace(0, 1, steps)
    if spherical:
        return slerp(za, zb, t)
    return (1 - t)[None, :, None] * za[:, None] + t[None, :, None] * zb[:, None]


def interpolate(G: nn.Module, za: torch.Tensor, zb: torch.Tensor, steps: int, spherical: bool = False) -> torch.Tensor:
    """Images along each walk, (pairs, steps, C, H, W), float [-1, 1] on the CPU; G should be a
    ``frozen_generator`` (or have no batchnorm) so that each frame depends on its own z only."""
    points = walk(za, zb, steps, spherical)
    device = next(G.parameters()).device
    with torch.no_grad():
        images = G(points.flatten(0, 1).to(device)).float().cpu()
    return images.unflatten(0, (len(za), steps))


def save_grid(images: torch.Tensor, path: str | Path, nrow: int) -> Path:
    """Images in [-1, 1] as one PNG grid (2-pixel padding), written atomically."""
    from torchvision.utils import save_image

    path = Path(path)
    with atomic_path(path) as tmp:
        save_image(images, tmp, nrow=nrow, normalize=True, value_range=(-1, 1))
    return path


# ---- the commands ------------------------------------------------------------------------------------


def trained(run_dir: str | Path, device: str):
    """A run's networks as its checkpoint holds them (``RunRecord.load_networks``) on ``device``; GanbenchError
    where G's weights are not finite."""
    from ganbench.device import resolve_device
    from ganbench.record import RunRecord

    run = RunRecord(run_dir).load_networks(resolve_device(device))
    if not all(torch.isfinite(p).all() for p in run.G.parameters()):
        raise GanbenchError(f"{run.run_dir}: G's weights are not finite (the run diverged); nothing to draw")
    return run


def sample_run(run_dir: str | Path, n: int = 64, seed: int = 0, out: str | Path | None = None,
               device: str = "auto") -> dict:
    """A grid of n samples from a run's checkpoint, drawn as the trainer draws them; returns what was written."""
    if n < 1:
        raise SpecError(f"--n {n} is not allowed; expected an integer >= 1")
    run = trained(run_dir, device)
    images = sample(run.G, latent(n, run.arch.z_dim, seed), run.protocol.batch_size)
    cols = math.ceil(math.sqrt(n))
    path = save_grid(images, out or run.run_dir / f"sample-seed-{seed}.png", nrow=cols)
    return {"path": str(path), "n": n, "cols": cols, "rows": math.ceil(n / cols), "seed": seed, "step": run.step,
            "variant": run.variant, "resolution": run.arch.resolution}


def interpolate_run(run_dir: str | Path, pairs: int = 8, steps: int = 10, seed: int = 0, spherical: bool = False,
                    out: str | Path | None = None, device: str = "auto") -> dict:
    """Latent walks between random pairs of z (rows: pairs, columns: steps) from a run's checkpoint."""
    if pairs < 1:
        raise SpecError(f"--pairs {pairs} is not allowed; expected an integer >= 1")
    run = trained(run_dir, device)
    z = latent(2 * pairs + run.protocol.batch_size, run.arch.z_dim, seed)
    za, zb, reference = z[:pairs], z[pairs:2 * pairs], z[2 * pairs:]
    frames = interpolate(frozen_generator(run.G, reference), za, zb, steps, spherical)
    name = f"interpolation-seed-{seed}{'-slerp' if spherical else ''}.png"
    path = save_grid(frames.flatten(0, 1), out or run.run_dir / name, nrow=steps)
    return {"path": str(path), "pairs": pairs, "steps": steps, "seed": seed, "slerp": spherical, "step": run.step,
            "variant": run.variant, "resolution": run.arch.resolution}
