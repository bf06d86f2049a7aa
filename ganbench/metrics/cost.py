"""Cost: what a run needs, measured on its own device.

- ``train_ips``: training images per second in steady state: the median over evaluations of
  ``interval_ips`` (the trainer's rate between two evaluations, evaluation time excluded), leaving out the
  first interval when there are others (it holds warm-up).
- ``sample_ips``: generated images per second of G (batches of the protocol's size, no gradients).
- ``peak_mem_mb``: the process's peak resident memory on a CPU (``ru_maxrss``), or torch's peak CUDA
  allocation on a GPU, in MiB.
- ``g_params``, ``d_params``, ``g_flops``, ``d_flops``: parameters, and forward FLOPs per image by torch's
  FLOP counter.
"""

from __future__ import annotations

import copy
import resource
import statistics
import time

import torch

from ganbench.arch import count_params, flops_per_image


def steady_train_ips(history: list[dict]) -> float:
    rates = [r["interval_ips"] for r in history]
    return float(statistics.median(rates[1:] if len(rates) > 1 else rates))


def sample_ips(sample, n: int) -> float:
    t0 = time.perf_counter()
    sample(n)
    return n / (time.perf_counter() - t0)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def size(G: torch.nn.Module, D: torch.nn.Module, z_dim: int, channels: int, resolution: int) -> dict[str, float]:
    G, D = copy.deepcopy(G).cpu().float(), copy.deepcopy(D).cpu().float()
    z = torch.randn(2, z_dim)
    x = torch.randn(2, channels, resolution, resolution)
    return {"g_params": float(count_params(G)), "d_params": float(count_params(D)),
            "g_flops": float(flops_per_image(G, z)), "d_flops": float(flops_per_image(D, x))}
