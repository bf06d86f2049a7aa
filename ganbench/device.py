"""Where a run trains and at what precision, chosen so that a setting never makes a run slower.

- ``resolve_device``: "auto", "cpu", "cuda" (or "cuda:N") -> a torch device, or a ``GanbenchError`` that
  says what to use instead.
- ``native_bf16``: whether the device does bf16 arithmetic in hardware. A CUDA device of compute
  capability 8.0 or later (Ampere, Hopper ...); a CPU with AVX-512 BF16 or AMX-BF16 (x86) or the BF16
  extension (Arm). Elsewhere PyTorch emulates bf16, which costs more than fp32 saves.
- ``resolve_precision``: "cuda-bf16" (the default) -> bf16 on a CUDA device that has it natively, fp32
  elsewhere, every CPU included (so a CPU study's precision does not depend on which CPU it lands on);
  "auto" -> bf16 wherever it is native, CPUs included; "bf16" where it is not native still trains in bf16
  (the user asked for it), with a one-line warning of the measured cost.
- ``device_for_worker``: round-robin placement of concurrent runs over the GPUs of one machine.
- ``set_threads``: a run's CPU threads, for torch and for the BLAS and OpenMP pools numpy and scipy use.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ganbench.errors import GanbenchError

PRECISIONS = ("cuda-bf16", "fp32", "bf16", "auto")

# The cost of emulated bf16, measured by ``python benchmarks/batched_seeds.py --precision-cost --threads 1
# --steps 4 --reps 3`` on an AMD EPYC with AVX2 and no AVX-512 (the machine shared with other work, so one
# thread; medians of 3 alternating repetitions): the trainer's step, dcgan at 32 px, widths 32, batch 64.
EMULATED_BF16_MEASURED = {"fp32": 316.7, "bf16": 18.7}   # img/s
EMULATED_BF16_COST = "{slowdown:.0f}x slower than fp32 ({bf16:.1f} vs {fp32:.1f} img/s, dcgan at 32 px, widths 32, batch 64, 1 thread)"

# CPU feature names that mean native bf16 arithmetic, as torch.cpu.get_capabilities() and /proc/cpuinfo
# spell them (x86: avx512_bf16, amx_bf16; Arm: bf16 in the Features line).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def cpu_capability() -> str:
    """The SIMD level PyTorch's CPU kernels were dispatched for: "DEFAULT", "AVX2", "AVX512", "SVE256" ..."""
    return torch.backends.cpu.get_cpu_capability()


def cpu_flags() -> frozenset[str]:
    """CPU features, lower case: the ones ``torch.cpu.get_capabilities()`` reports true, and the flags of
    /proc/cpuinfo where it exists (either source may be missing, on another OS or an older torch)."""
    flags: set[str] = set()
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        try:
            flags |= {str(k).lower() for k, v in get().items() if v is True}
        except Exception:   # a private helper of torch: any failure means "no information"
            pass
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags |= set(value.lower().split())
    return frozenset(flags)


def _as_device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` computes in bf16 in hardware (so bf16 autocast can be faster than fp32)."""
    device = _as_device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    if device.type == "cpu":
        capability = cpu_capability().upper()
        if "BF16" in capability or "AMX" in capability:
            return True
        return bool(NATIVE_BF16_FLAGS & cpu_flags())
    return False


def _bf16_cost_warning(device: torch.device) -> str:
    if device.type == "cpu":
        m = EMULATED_BF16_MEASURED
        cost = EMULATED_BF16_COST.format(slowdown=m["fp32"] / m["bf16"], **m)
        return (f"precision=bf16: this CPU ({cpu_capability()}, no native bf16) emulates it; bf16 autocast trained "
                f"{cost} in ganbench's measurement on such a CPU; use precision=fp32 or auto")
    return (f"precision=bf16: {device} has no native bf16 (CUDA compute capability below 8.0) and emulates it, "
            "which is likely slower than fp32; use precision=fp32 or auto")


def resolve_precision(requested: str, device: str | torch.device) -> tuple[str, str | None]:
    """(the precision to train at, a one-line warning or None). "cuda-bf16": bf16 on a CUDA device with it in
    hardware, else fp32. "auto": bf16 where the device has it in hardware (a CPU too), else fp32. "bf16"
    without hardware support: bf16 as asked, with the measured cost."""
    device = _as_device(device)
    if requested not in PRECISIONS:
        raise GanbenchError(f"precision {requested!r} is not allowed; expected one of {', '.join(PRECISIONS)}")
    if requested == "fp32":
        return "fp32", None
    if requested == "cuda-bf16" and device.type != "cuda":
        return "fp32", None
    native = native_bf16(device)
    if requested in ("auto", "cuda-bf16"):
        return ("bf16" if native else "fp32"), None
    return "bf16", (None if native else _bf16_cost_warning(device))


def resolve_device(name: str) -> torch.device:
    """"auto" (cuda if available), "cpu", "cuda" or "cuda:N" -> a device; CUDA asked for where there is
    none is a ``GanbenchError`` (the trainer's ``resolve_device``, to be imported from here)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GanbenchError(f"--device {name}: no CUDA device is available here; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError:
        raise GanbenchError(f"--device {name!r} is not a device; expected auto, cpu, cuda or cuda:N") from None


def set_threads(n: int) -> None:
    """``n`` CPU threads for torch and for every BLAS/OpenMP pool loaded in the process (threadpoolctl).

    A run given one core of several must not let numpy's OpenBLAS start a thread per core: on a 2-core
    machine with both cores training, OpenBLAS's own two threads made a 3,584 x 800 QR take 22.7 s instead of
    0.49 s (one thread), and the probe's and FID's LAPACK calls slowed down alike."""
    import numpy  # noqa: F401  (load numpy's and scipy's BLAS now: threadpoolctl limits the pools that are loaded)
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n)


def device_for_worker(worker_index: int, n_devices: int | None = None, requested: str = "auto") -> str:
    """The device of the ``worker_index``-th of several concurrent runs: with ``requested`` "cuda" (or
    "auto" where there are GPUs) the workers go round-robin over the ``n_devices`` GPUs (default: all that
    torch sees), ``cuda:{worker_index % n_devices}``; "cpu", "auto" without GPUs and an explicit "cuda:N"
    are kept as they are."""
    if worker_index < 0:
        raise ValueError(f"worker_index must be >= 0, got {worker_index}")
    if n_devices is None:
        n_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested == "cpu" or requested.startswith("cuda:"):
        return requested
    if requested == "auto" and n_devices == 0:
        return "cpu"
    if requested not in ("cuda", "auto"):
        raise GanbenchError(f"--device {requested!r} is not a device; expected auto, cpu, cuda or cuda:N")
    if n_devices == 0:
        raise GanbenchError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return f"cuda:{worker_index % n_devices}"
