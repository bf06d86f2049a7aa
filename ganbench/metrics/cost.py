"""Cost: what a run needs, measured on its own device.

- ``train_ips``: training images per second in steady state: the median, over the evaluation records, of
  the trainer's per-interval rate (images trained since the previous evaluation over the training time,
  evaluation excluded; the record's ``interval_ips``, or ``train_ips`` from a trainer that names it so),
  leaving out the first interval (warm-up) when there are two or more.
- ``sample_ips``: generated images per second: ``SAMPLE_BATCHES`` batches of the protocol's batch size
  drawn through the evaluation's sampler (no gradients, images returned to the CPU), timed once.
- ``peak_mem_mb``: peak memory in MiB: on a CPU the process's peak resident set (``ru_maxrss``: the whole
  process, data and metric extraction included, since it started), on CUDA torch's peak allocation on the
  device (``torch.cuda.max_memory_allocated``).
- ``g_params``, ``d_params``: parameters of G and D. ``g_flops``, ``d_flops``: forward FLOPs for one image
  by torch's FLOP counter (a multiply-add counts 2).
"""

from __future__ import annotations

import copy
import math
import resource
import statistics
import sys
import time
from typing import Callable

import torch

from ganbench.layers import count_params, flops_per_image

SAMPLE_BATCHES = 4


def steady_train_ips(history: list[dict]) -> float:
    rates = [r.get("interval_ips", r.get("train_ips")) for r in history]
    rates = [float(x) for x in rates if x is not None and math.isfinite(x)]
    if not rates:
        return math.nan
    return float(statistics.median(rates[1:] if len(rates) > 1 else rates))


def sample_ips(sample: Callable[[int], torch.Tensor], n: int) -> float:
    t0 = time.perf_counter()
    sample(n)
    return n / (time.perf_counter() - t0)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 2**20 if sys.platform == "darwin" else kib / 1024   # bytes on macOS, KiB on Linux


def size(G: torch.nn.Module, D: torch.nn.Module, z_dim: int, channels: int, resolution: int) -> dict[str, float]:
    """Parameters and FLOPs per image, on float32 CPU copies (the networks in training are not touched)."""
    G, D = copy.deepcopy(G).cpu().float(), copy.deepcopy(D).cpu().float()
    z = torch.randn(2, z_dim, generator=torch.Generator().manual_seed(0))
    x = torch.zeros(2, channels, resolution, resolution)
    return {"g_params": float(count_params(G)), "d_params": float(count_params(D)),
            "g_flops": float(flops_per_image(G, z)), "d_flops": float(flops_per_image(D, x))}
