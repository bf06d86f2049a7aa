"""The Ray executor, on one local Ray instance of 2 CPUs shared by the module's tests.

Ray workers use one torch thread per run, the driver's in-process runs use torch's default, so sums are
reduced in another order: series are compared to float tolerance, not bit for bit.
"""

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from click.testing import CliRunner  # noqa: E402

from ganbench.cli import main  # noqa: E402
from ganbench.errors import GanbenchError  # noqa: E402
from ganbench.executors.ray import RayExecutor, _check_reachable, scratch_spec, task_resources  # noqa: E402
from ganbench.protocol import resolve  # noqa: E402
from ganbench.files import read_jsonl  # noqa: E402
from ganbench.record import RunRecord, RunSpec  # noqa: E402
from ganbench.train import run_one  # noqa: E402

# values that measure the machine, not the run
TIMING = {"interval_ips", "train_ips", "sample_ips", "peak_mem_mb"}
RECORD = ["checkpoint.pt", "metrics.jsonl", "samples", "spec.json", "summary.json"]


@pytest.fixture(scope="module")
def ray_instance():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def _series(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_jsonl(run_dir / "metrics.jsonl")]


def _assert_same_series(a: Path, b: Path) -> None:
    assert _series(a) == _series(b)   # bit for bit: both sides train with one torch thread


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


class Recorder:
    def __init__(self):
        self.events = []

    def started(self, spec):
        self.events.append(("started", spec.seed))

    def step(self, spec, step, row):
        self.events.append(("step", spec.seed))

    def done(self, result):
        self.events.append(("done", result.spec.seed))


def test_a_suite_on_ray_gives_the_records_of_the_in_process_executor(tmp_path, ray_instance, restore_threads):
    # the cost metric runs on the workers; the smoke protocol's quality metrics would take minutes here.
    # A Ray task trains with one torch thread (its one CPU); so does the local run, so that the float
    # reductions happen in the same order and the series are equal bit for bit on any CPU
    args = ["run", "--variant", "dcgan", "--variant", "d-relu", "--protocol", "smoke", "--seeds", "2",
            "--set", 'metrics=["cost"]', "--set", "threads=1"]
    local = _invoke(*args, "--results", str(tmp_path / "local"))
    assert local.exit_code == 0, local.output
    r = _invoke(*args, "--executor", "ray", "--results", str(tmp_path / "ray"))
    assert r.exit_code == 0, r.output
    assert r.stdout.count("complete") == 4, r.output
    for variant in ("dcgan", "d-relu"):
        for seed in (0, 1):
            rel = Path("smoke") / variant / f"seed-{seed}"
            on_ray, here = tmp_path / "ray" / rel, tmp_path / "local" / rel
            assert sorted(p.name for p in on_ray.iterdir() if not p.name.startswith(".")) == RECORD
            assert sorted(os.listdir(on_ray / "samples")) == sorted(os.listdir(here / "samples"))
            assert _summary(on_ray)["status"] == "complete" and _summary(on_ray)["step"] == 20
            ray_spec, local_spec = (json.loads((d / "spec.json").read_text()) for d in (on_ray, here))
            assert ray_spec["run_id"] == local_spec["run_id"]
            assert ray_spec["environment"]["cpu_threads"] == 1   # the task's one CPU
            _assert_same_series(on_ray, here)
            assert _series(on_ray)[-1]["g_params"] > 0   # a metric computed on the worker came back
    # a suite run again on Ray: every run is a result already, nothing is submitted or rewritten
    summary = tmp_path / "ray" / "smoke" / "dcgan" / "seed-0" / "summary.json"
    mtime = summary.stat().st_mtime_ns
    again = _invoke(*args, "--executor", "ray", "--results", str(tmp_path / "ray"))
    assert again.exit_code == 0 and again.stdout.count("skipped") == 4, again.output
    assert summary.stat().st_mtime_ns == mtime


def _pid_holding(path: Path) -> int | None:
    """The process that has ``path`` open (Linux /proc)."""
    target = os.path.realpath(path)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid)
            except OSError:
                pass
    return None


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the worker's pid through /proc")
def test_a_killed_worker_is_retried_and_the_run_resumes_from_its_checkpoint(tmp_path, ray_instance, one_thread):
    proto = resolve("smoke", ["metrics=[]", "steps=200", "eval_every=10"])
    spec = RunSpec(proto, "dcgan", 1, tmp_path / "ray")
    scratch = tmp_path / "scratch"
    on_worker = scratch_spec(spec, str(scratch)).run_dir
    killed = []

    def kill_the_worker_after_its_first_checkpoint():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            if (on_worker / "checkpoint.pt").exists():
                pid = _pid_holding(on_worker / ".lock")
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    series = on_worker / "metrics.jsonl"   # written just after the checkpoint
                    killed.append((pid, len(read_jsonl(series)) if series.exists() else 0))
            time.sleep(0.01)

    killer = threading.Thread(target=kill_the_worker_after_its_first_checkpoint, daemon=True)
    killer.start()
    [result] = RayExecutor(scratch=str(scratch)).run([spec], Recorder())
    killer.join()
    assert killed, "the worker was never seen training"
    pid, evaluated = killed[0]
    assert pid != os.getpid()
    assert evaluated < 20, "the run finished before it could be killed; the test proves nothing"
    assert result.status == "complete", result
    summary = _summary(spec.run_dir)
    assert summary["status"] == "complete" and summary["resumed"] is True
    steps = [row["step"] for row in read_jsonl(spec.run_dir / "metrics.jsonl")]
    assert steps == proto.eval_steps()   # strictly increasing, none twice, none lost
    assert len(os.listdir(spec.run_dir / "samples")) == len(proto.eval_steps())
    ref = run_one(RunSpec(proto, "dcgan", 1, tmp_path / "ref"))
    assert _series(spec.run_dir) == _series(ref.spec.run_dir)   # as if it had never been killed
    assert not on_worker.exists()   # the scratch copy is gone once the driver has the record


@pytest.fixture
def one_thread():
    """This process trains with one torch thread, as a Ray task of one CPU does: then a run trained
    here and one trained (or resumed) on a worker are equal bit for bit."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class Interrupted(BaseException):
    pass


def test_a_partial_run_in_the_driver_folder_travels_with_its_task_and_resumes(tmp_path, ray_instance, one_thread):
    proto = resolve("smoke", ["metrics=[]", "steps=40"])
    spec = RunSpec(proto, "dcgan", 0, tmp_path / "ray")

    def interrupt(step, row):
        if step == 15:   # after the checkpoint of step 10
            raise Interrupted

    with pytest.raises(Interrupted):
        run_one(spec, interrupt)
    assert _summary(spec.run_dir)["status"] == "running"
    [result] = RayExecutor(scratch=str(tmp_path / "scratch")).run([spec], Recorder())
    assert result.status == "complete", result
    assert _summary(spec.run_dir)["resumed"] is True
    assert [row["step"] for row in read_jsonl(spec.run_dir / "metrics.jsonl")] == [10, 20, 30, 40]
    ref = run_one(RunSpec(proto, "dcgan", 0, tmp_path / "ref"))
    assert _series(spec.run_dir) == _series(ref.spec.run_dir)


def test_shared_results_train_in_place_and_report_each_run_once(tmp_path, ray_instance):
    proto = resolve("smoke", ["metrics=[]"])
    specs = [RunSpec(proto, "no-bn", seed, tmp_path / "shared") for seed in (0, 1)]
    assert run_one(specs[0]).status == "complete"
    rec = Recorder()
    results = RayExecutor(shared_results=True, scratch=str(tmp_path / "scratch")).run(specs, rec)
    assert [r.status for r in results] == ["skipped", "complete"]
    assert [r.spec for r in results] == specs
    assert _summary(specs[1].run_dir)["status"] == "complete"
    assert not (tmp_path / "scratch").exists()   # nothing went through a worker's scratch folder
    for seed in (0, 1):
        mine = [e for e, s in rec.events if s == seed]
        assert mine == ["started", "done"], rec.events


def test_a_run_locked_by_another_process_is_not_submitted(tmp_path, ray_instance):
    spec = RunSpec(resolve("smoke", ["metrics=[]"]), "dcgan", 0, tmp_path / "ray")
    with RunRecord(spec.run_dir).lock():
        [result] = RayExecutor(scratch=str(tmp_path / "scratch")).run([spec], Recorder())
    assert result.status == "locked" and "another process" in result.error
    assert not (spec.run_dir / "summary.json").exists() and not (tmp_path / "scratch").exists()


def test_a_users_mistake_on_a_worker_exits_2_with_one_line(tmp_path, ray_instance):
    r = CliRunner().invoke(main, ["run", "--executor", "ray", "--variant", "dcgan", "--protocol", "smoke",
                                  "--seed", "0", "--set", 'dataset="celeba"', "--data-root", "/nonexistent",
                                  "--results", str(tmp_path)])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip().startswith("error")]
    assert len(lines) == 1 and "celeba" in lines[0], r.output
    assert "Traceback" not in r.output and "RayTaskError" not in r.output


def test_task_resources_follow_the_protocols_device_and_threads():
    smoke = resolve("smoke")
    assert task_resources(resolve("smoke", ['device="cpu"']), cluster_gpus=4) == {"num_cpus": 1, "num_gpus": 0}
    assert task_resources(smoke, cluster_gpus=0) == {"num_cpus": 1, "num_gpus": 0}       # auto, no GPU
    assert task_resources(smoke, cluster_gpus=2) == {"num_cpus": 1, "num_gpus": 1}       # auto, GPUs
    assert task_resources(resolve("smoke", ['device="cuda"', "threads=4"]), cluster_gpus=1) == {"num_cpus": 4, "num_gpus": 1}
    with pytest.raises(GanbenchError, match="no GPU"):
        task_resources(resolve("smoke", ['device="cuda"']), cluster_gpus=0)


def test_an_address_where_no_head_node_answers_is_refused_at_once():
    t0 = time.perf_counter()
    with pytest.raises(GanbenchError, match="no Ray head node answers there"):
        _check_reachable("127.0.0.1:1")
    assert time.perf_counter() - t0 < 10   # ray.init itself would retry for minutes
