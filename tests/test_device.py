"""Device and precision choices: native bf16 detection from capability strings and CPU flags (patched, so
the tests say the same on every machine), precision resolution and its warning, device names, and the
round-robin placement of concurrent runs."""

from __future__ import annotations

import pytest
import torch

from ganbench import device as dev
from ganbench.errors import GanbenchError
from ganbench.protocol import Protocol, ProtocolError

AVX2_FLAGS = frozenset({"avx", "avx2", "fma", "sse4_2"})


@pytest.fixture
def cpu_like(monkeypatch):
    """Make this CPU report a given capability string and flag set."""
    def set_cpu(capability: str, flags=AVX2_FLAGS):
        monkeypatch.setattr(dev, "cpu_capability", lambda: capability)
        monkeypatch.setattr(dev, "cpu_flags", lambda: frozenset(flags))
    return set_cpu


def test_cpu_capability_is_torchs():
    assert dev.cpu_capability() == torch.backends.cpu.get_cpu_capability()


def test_cpu_flags_are_lower_case_names():
    flags = dev.cpu_flags()
    assert all(f == f.lower() and " " not in f for f in flags)


@pytest.mark.parametrize("capability, flags, native", [
    ("AVX2", AVX2_FLAGS, False),
    ("AVX512", AVX2_FLAGS | {"avx512f", "avx512bw"}, False),          # AVX-512 without its BF16 extension
    ("AVX512", AVX2_FLAGS | {"avx512f", "avx512_bf16"}, True),          # Cooper Lake, Zen 4 ...
    ("AVX512", AVX2_FLAGS | {"amx_bf16", "amx_tile"}, True),            # Sapphire Rapids
    ("AVX512_BF16", AVX2_FLAGS, True),                                  # a capability string that says it
    ("AMX", AVX2_FLAGS, True),
    ("SVE256", {"fp", "asimd", "sve", "bf16"}, True),                   # Arm with FEAT_BF16 (Features line)
    ("DEFAULT", {"fp", "asimd"}, False),
])
def test_native_bf16_on_cpu(cpu_like, capability, flags, native):
    cpu_like(capability, flags)
    assert dev.native_bf16("cpu") is native
    assert dev.native_bf16(torch.device("cpu")) is native


def test_native_bf16_on_cuda_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.native_bf16("cuda") is False


def test_native_bf16_on_cuda_asks_for_hardware_support_only(monkeypatch):
    asked = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: asked.setdefault("emu", including_emulation) or True)
    dev.native_bf16("cuda")
    assert asked["emu"] is False


def test_auto_is_bf16_only_where_native(cpu_like):
    cpu_like("AVX2")
    assert dev.resolve_precision("auto", "cpu") == ("fp32", None)
    cpu_like("AVX512", AVX2_FLAGS | {"avx512_bf16"})
    assert dev.resolve_precision("auto", "cpu") == ("bf16", None)


def test_fp32_is_fp32_everywhere(cpu_like):
    cpu_like("AVX512", {"avx512_bf16"})
    assert dev.resolve_precision("fp32", "cpu") == ("fp32", None)


def test_bf16_without_native_support_warns_with_the_measured_cost(cpu_like):
    cpu_like("AVX2")
    precision, warning = dev.resolve_precision("bf16", "cpu")
    assert precision == "bf16"
    assert "\n" not in warning
    assert "AVX2" in warning and "no native bf16" in warning
    m = dev.EMULATED_BF16_MEASURED
    assert f"{m['bf16']:.1f} vs {m['fp32']:.1f} img/s" in warning and "32 px" in warning
    assert "use precision=fp32 or auto" in warning


def test_bf16_with_native_support_does_not_warn(cpu_like):
    cpu_like("AVX512", {"amx_bf16"})
    assert dev.resolve_precision("bf16", "cpu") == ("bf16", None)


def test_bf16_on_a_gpu_without_it_warns_without_cpu_figures(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation)
    precision, warning = dev.resolve_precision("bf16", "cuda")
    assert precision == "bf16" and "cuda" in warning and "img/s" not in warning


def test_an_unknown_precision_is_a_users_mistake():
    with pytest.raises(GanbenchError, match="fp16.*cuda-bf16, fp32, bf16, auto"):
        dev.resolve_precision("fp16", "cpu")


def test_the_protocol_accepts_auto():
    assert Protocol(precision="auto").precision == "auto"
    with pytest.raises(ProtocolError, match="precision"):
        Protocol(precision="fp16")


@pytest.fixture
def gpu_like(monkeypatch):
    """Make torch see a CUDA device with or without native bf16."""
    def set_gpu(native: bool):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: native or including_emulation)
    return set_gpu


def test_the_default_is_bf16_on_a_gpu_that_has_it(gpu_like):
    assert Protocol().precision == "cuda-bf16"
    gpu_like(True)
    assert dev.resolve_precision(Protocol().precision, "cuda") == ("bf16", None)
    assert dev.resolve_precision("cuda-bf16", "cuda:1") == ("bf16", None)
    gpu_like(False)   # a GPU that would emulate it: fp32, without a warning (nobody asked for bf16)
    assert dev.resolve_precision("cuda-bf16", "cuda") == ("fp32", None)


@pytest.mark.parametrize("capability,flags", [("AVX2", AVX2_FLAGS), ("AVX512", AVX2_FLAGS | {"avx512_bf16"}),
                                              ("AMX", AVX2_FLAGS | {"amx_bf16"})])
def test_the_default_is_fp32_on_every_cpu(cpu_like, capability, flags):
    """A CPU study gets one precision whichever CPU it lands on; "auto" differs exactly on native-bf16 CPUs."""
    cpu_like(capability, flags)
    assert dev.resolve_precision(Protocol().precision, "cpu") == ("fp32", None)
    assert dev.resolve_precision("auto", "cpu")[0] == ("bf16" if dev.native_bf16("cpu") else "fp32")


def test_a_runs_identity_holds_the_precision_it_trains_at(cpu_like, gpu_like):
    """On a CPU the default is the same run as fp32 (records made before it was the default resume); on a GPU
    with bf16 it is the bf16 run; auto on a native-bf16 CPU is the bf16 run too."""
    from ganbench.record import RunSpec

    def run_id(precision, device="cpu"):
        return RunSpec(Protocol(name="p", precision=precision, device=device), "dcgan", 0).run_id

    cpu_like("AVX512", AVX2_FLAGS | {"avx512_bf16"})
    assert run_id("cuda-bf16") == run_id("fp32") != run_id("bf16") == run_id("auto")
    gpu_like(True)
    assert run_id("cuda-bf16", "cuda") == run_id("bf16", "cuda") != run_id("fp32", "cuda")
    assert run_id("fp32", "cuda") == run_id("fp32")   # the device is how, not what


# ---- devices --------------------------------------------------------------------------------------------


def test_resolve_device_matches_the_trainers(monkeypatch):
    from ganbench import train

    for available in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
        assert dev.resolve_device("auto") == train.resolve_device("auto")
        assert dev.resolve_device("cpu") == train.resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for fn in (dev.resolve_device, train.resolve_device):
        with pytest.raises(GanbenchError, match="no CUDA device"):
            fn("cuda")
    with pytest.raises(GanbenchError, match="no CUDA device"):
        dev.resolve_device("cuda:1")


def test_resolve_device_cuda_with_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.resolve_device("cuda") == torch.device("cuda")
    assert dev.resolve_device("cuda:1") == torch.device("cuda", 1)


def test_resolve_device_rejects_nonsense():
    with pytest.raises(GanbenchError, match="not a device"):
        dev.resolve_device("tpu0")


def test_workers_go_round_robin_over_the_gpus():
    assert [dev.device_for_worker(i, 4, "cuda") for i in range(6)] == ["cuda:0", "cuda:1", "cuda:2", "cuda:3",
                                                                       "cuda:0", "cuda:1"]
    assert [dev.device_for_worker(i, 2, "auto") for i in range(3)] == ["cuda:0", "cuda:1", "cuda:0"]
    assert dev.device_for_worker(5, 1, "cuda") == "cuda:0"


def test_workers_without_gpus():
    assert dev.device_for_worker(3, 0, "auto") == "cpu"
    assert dev.device_for_worker(3, 8, "cpu") == "cpu"
    assert dev.device_for_worker(3, 8, "cuda:2") == "cuda:2"
    with pytest.raises(GanbenchError, match="no CUDA device"):
        dev.device_for_worker(0, 0, "cuda")
    with pytest.raises(ValueError):
        dev.device_for_worker(-1, 2, "cuda")


def test_workers_count_the_gpus_torch_sees(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert dev.device_for_worker(4, requested="cuda") == "cuda:1"


def test_set_threads_limits_torch_and_every_blas_pool():
    """A run given one core keeps numpy's and scipy's OpenBLAS to one thread as well (in a fresh process: the
    limit is process-wide)."""
    import subprocess
    import sys

    code = ("from ganbench.device import set_threads; set_threads(1); import torch; "
            "from threadpoolctl import threadpool_info; info = threadpool_info(); "
            "print(torch.get_num_threads(), sorted({i['internal_api'] for i in info}), max(i['num_threads'] for i in info))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "1" and "'openblas'" in " ".join(out) and out[-1] == "1", out
