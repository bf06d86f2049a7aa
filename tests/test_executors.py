"""Choosing an executor; these run whether or not Ray is installed."""

import sys

import pytest
from click.testing import CliRunner

from ganbench.cli import main
from ganbench.errors import GanbenchError
from ganbench.executors import make_executor
from ganbench.executors.local import InProcessExecutor, ProcessPoolExecutor


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip().startswith("error")]


def test_without_ray_the_ray_executor_exits_2_saying_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)   # `import ray` now fails as if it were not installed
    r = CliRunner().invoke(main, ["run", "--executor", "ray", "--variant", "dcgan", "--protocol", "smoke",
                                  "--set", "metrics=[]", "--results", str(tmp_path)])
    assert r.exit_code == 2, r.output
    lines = _error_lines(r.output)
    assert len(lines) == 1 and "pip install 'ganbench[ray]'" in lines[0], r.output
    assert "Traceback" not in r.output
    assert not (tmp_path / "smoke").exists()   # nothing was trained


@pytest.mark.parametrize("args,expect", [
    (["--executor", "dask"], "unknown executor 'dask'; known: local, ray"),
    (["--address", "head:6379"], "--address and --shared-results are options of --executor ray"),
    (["--shared-results"], "--address and --shared-results are options of --executor ray"),
    (["--executor", "ray", "--together", "2"], "--together is an option of --executor local"),
])
def test_executor_mistakes_exit_2_with_one_line(tmp_path, args, expect):
    r = CliRunner().invoke(main, ["run", "--variant", "dcgan", "--protocol", "smoke", "--results", str(tmp_path), *args])
    assert r.exit_code == 2, r.output
    lines = _error_lines(r.output)
    assert len(lines) == 1 and expect in lines[0], r.output


def test_local_executor_is_in_process_or_a_pool():
    assert isinstance(make_executor("local"), InProcessExecutor)
    pool = make_executor("local", jobs=3)
    assert isinstance(pool, ProcessPoolExecutor) and pool.jobs == 3 and pool.together == 1
    assert make_executor("local", together=4).together == 4
    with pytest.raises(GanbenchError, match="known: local, ray"):
        make_executor("slurm")


def test_pool_workers_get_their_index_and_a_gpu_each_round_robin(monkeypatch, restore_threads):
    """The device logic of concurrent runs, exercised on a CPU: 3 workers on a machine that claims 2 GPUs
    get cuda:0, cuda:1, cuda:0; on the CPU they stay there."""
    import multiprocessing

    import torch

    from ganbench.executors import local

    set_devices = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", set_devices.append)
    counter = multiprocessing.get_context("spawn").Value("i", 0)
    seen = []
    for _ in range(3):
        local._worker_init(1, counter, "cuda")
        seen.append(local.worker_info())
    assert [w["index"] for w in seen] == [0, 1, 2]
    assert [w["device"] for w in seen] == ["cuda:0", "cuda:1", "cuda:0"] and set_devices == [0, 1, 0]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    local._worker_init(1, counter, "auto")
    assert local.worker_info() == {"index": 3, "device": "cpu"} and set_devices == [0, 1, 0]
