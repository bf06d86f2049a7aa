"""Choosing an executor; these run whether or not Ray is installed."""

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from ganbench.cli import main
from ganbench.errors import GanbenchError
from ganbench.executors import make_executor
from ganbench.executors.local import InProcessExecutor, ProcessPoolExecutor
from ganbench.files import Locked, file_lock


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


def _held(lock) -> bool:
    try:
        with file_lock(lock, wait=False):
            return False
    except Locked:
        return True


def _wait_until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_killed_suite_leaves_no_worker_training(tmp_path):
    """`ganbench run --jobs 2` killed with SIGKILL, which reaches it alone (no chance to clean up, nor to tell its
    workers): its workers end too, so no orphan trains on unseen, and the runs' locks are free for the suite
    run again (it resumes them). The runs are long enough to still be training when the suite is killed."""
    locks = [tmp_path / "smoke" / "dcgan" / f"seed-{s}" / ".lock" for s in (0, 1)]
    suite = subprocess.Popen([sys.executable, "-m", "ganbench", "run", "--protocol", "smoke", "--variant", "dcgan",
                              "--seeds", "2", "--jobs", "2", "--set", "steps=1000000", "--set", "eval_every=100000",
                              "--set", "metrics=[]", "--results", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        assert _wait_until(lambda: all(lock.exists() and _held(lock) for lock in locks) or suite.poll() is not None,
                           120)
        assert suite.poll() is None, "the suite ended before both runs were training"
        suite.kill()                                   # the suite alone, not its process group
        suite.wait()
        assert _wait_until(lambda: not any(_held(lock) for lock in locks), 60), "a worker trains on without its suite"
    finally:
        try:
            os.killpg(suite.pid, signal.SIGKILL)       # whatever is left of the group, should the test fail
        except ProcessLookupError:
            pass
