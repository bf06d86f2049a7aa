import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from ganbench.cli import main
from ganbench.protocol import resolve
from ganbench.files import read_jsonl
from ganbench.record import RunSpec
from ganbench.train import BatchStream, run_one

# values that measure the machine, not the run: they differ between two identical runs
TIMING = {"interval_ips", "train_ips", "sample_ips", "peak_mem_mb"}


def _series(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_jsonl(run_dir / "metrics.jsonl")]


def _invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_smoke_run_leaves_a_complete_record_and_is_skipped_next_time(tmp_path):
    r = _invoke("run", "--variant", "dcgan", "--protocol", "smoke", "--seed", "0", "--results", str(tmp_path))
    assert r.exit_code == 0, r.output
    run_dir = tmp_path / "smoke" / "dcgan" / "seed-0"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["step"] == 20
    spec = json.loads((run_dir / "spec.json").read_text())
    assert spec["protocol"]["name"] == "smoke" and spec["variant"]["name"] == "dcgan"
    assert spec["environment"]["torch"] and "device" in spec["environment"]
    rows = read_jsonl(run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [10, 20]
    for key in ("g_loss", "d_loss", "d_real", "d_fake", "g_grad_norm", "d_grad_norm", "interval_ips", "images_seen"):
        assert key in rows[-1]
    assert rows[-1]["images_seen"] == 20 * 32
    assert sorted(p.name for p in (run_dir / "samples").iterdir()) == ["step-0000010.png", "step-0000020.png"]
    assert (run_dir / "checkpoint.pt").exists()
    mtime = (run_dir / "summary.json").stat().st_mtime_ns
    r = _invoke("run", "--variant", "dcgan", "--protocol", "smoke", "--seed", "0", "--results", str(tmp_path))
    assert r.exit_code == 0 and "skipped" in r.output
    assert (run_dir / "summary.json").stat().st_mtime_ns == mtime


def test_same_seed_same_losses_bit_for_bit(tmp_path):
    proto = resolve("smoke", ["metrics=[]"])
    a = run_one(RunSpec(proto, "dcgan", 3, tmp_path / "a"))
    b = run_one(RunSpec(proto, "dcgan", 3, tmp_path / "b"))
    c = run_one(RunSpec(proto, "dcgan", 4, tmp_path / "c"))
    assert a.status == b.status == c.status == "complete"
    sa, sb, sc = (_series(r.spec.run_dir) for r in (a, b, c))
    assert sa == sb
    assert [r["g_loss"] for r in sa] != [r["g_loss"] for r in sc]


def test_batch_stream_crosses_epochs_without_repeats():
    s = BatchStream(10, 4, seed=1)
    first_epoch = [i for step in range(2) for i in s.indices(step).tolist()] + s.indices(2).tolist()[:2]
    assert sorted(first_epoch) == list(range(10))
    assert s.indices(7).tolist() == BatchStream(10, 4, seed=1).indices(7).tolist()  # stateless


def test_sigkill_then_resume_equals_uninterrupted(tmp_path):
    args = ["run", "--variant", "dcgan", "--protocol", "smoke", "--seed", "1",
            "--set", "steps=60", "--set", "eval_every=10", "--set", "metrics=[]"]
    ref = _invoke(*args, "--results", str(tmp_path / "ref"))
    assert ref.exit_code == 0, ref.output
    killed = tmp_path / "killed"
    run_dir = killed / "smoke" / "dcgan" / "seed-1"
    proc = subprocess.Popen([sys.executable, "-m", "ganbench.cli", *args, "--results", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    # killed once an evaluation is on disk (the checkpoint, then the series: a kill between the two is
    # test_record's case)
    while not ((run_dir / "checkpoint.pt").exists() and (run_dir / "metrics.jsonl").exists()) \
            and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "running"
    done_before = len(read_jsonl(run_dir / "metrics.jsonl"))
    assert done_before < 6, "the run finished before it could be killed; the test proves nothing"
    r = _invoke(*args, "--results", str(killed))
    assert r.exit_code == 0, r.output
    assert json.loads((run_dir / "summary.json").read_text())["resumed"] is True
    assert _series(run_dir) == _series(tmp_path / "ref" / "smoke" / "dcgan" / "seed-1")


def test_the_wall_time_of_a_resumed_run_counts_every_session(tmp_path, monkeypatch):
    """Interrupted after its first evaluation, then resumed: the summary's ``wall_seconds`` adds the first
    session's wall time (to its checkpoint) to the last one's, and training time stays within it; a run resumed
    from a checkpoint written before checkpoints kept their wall time says it is unknown (None)."""
    import torch

    from ganbench.train import Trainer

    args = ["run", "--variant", "dcgan", "--protocol", "smoke", "--seed", "0", "--set", "steps=30",
            "--set", "eval_every=10", "--set", "metrics=[]"]
    end_interval = Trainer.end_interval

    def end_then_stop(self, *a, **kw):
        end_interval(self, *a, **kw)
        time.sleep(0.5)                       # the first session lasts at least this long before its stop
        raise KeyboardInterrupt

    for name, forget in (("kept", False), ("older", True)):
        results = tmp_path / name
        run_dir = results / "smoke" / "dcgan" / "seed-0"
        monkeypatch.setattr(Trainer, "end_interval", end_then_stop)
        assert _invoke(*args, "--results", str(results)).exit_code == 1
        monkeypatch.undo()
        state = torch.load(run_dir / "checkpoint.pt", weights_only=False)
        assert state["step"] == 10 and state["wall_time"] >= state["train_time"] > 0
        if forget:
            del state["wall_time"]
            torch.save(state, run_dir / "checkpoint.pt")
        assert _invoke(*args, "--results", str(results)).exit_code == 0
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["resumed"] is True and summary["step"] == 30
        if forget:
            assert summary["wall_seconds"] is None
        else:
            assert summary["wall_seconds"] == pytest.approx(state["wall_time"] + summary["wall_seconds_last_session"],
                                                            abs=0.05)
            assert summary["train_seconds"] <= summary["wall_seconds"]
    fresh = tmp_path / "fresh"
    assert _invoke(*args, "--results", str(fresh)).exit_code == 0
    summary = json.loads((fresh / "smoke" / "dcgan" / "seed-0" / "summary.json").read_text())
    assert summary["resumed"] is False
    assert summary["wall_seconds"] == pytest.approx(summary["wall_seconds_last_session"], abs=0.01)


def test_absurd_learning_rate_diverges_and_the_suite_goes_on(tmp_path):
    r = _invoke("run", "--variant", "dcgan", "--variant", "no-bn", "--protocol", "smoke", "--seed", "0",
                "--set", "lr_scale=1e35", "--results", str(tmp_path))
    assert r.exit_code == 0, r.output
    for variant in ("dcgan", "no-bn"):
        run_dir = tmp_path / "smoke" / variant / "seed-0"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "diverged", (variant, summary)
        rows = read_jsonl(run_dir / "metrics.jsonl")
        assert rows[-1]["diverged"] == 1.0
        assert (run_dir / "spec.json").exists() and (run_dir / "checkpoint.pt").exists()


def test_process_pool_gives_the_same_series(tmp_path, restore_threads):
    # one torch thread on both sides: what is tested is the executor, not the order of float reductions
    args = ["run", "--variant", "dcgan", "--protocol", "smoke", "--seeds", "2", "--set", "metrics=[]",
            "--set", "threads=1"]
    assert _invoke(*args, "--results", str(tmp_path / "seq")).exit_code == 0
    r = _invoke(*args, "--jobs", "2", "--results", str(tmp_path / "pool"))
    assert r.exit_code == 0, r.output
    for seed in (0, 1):
        rel = Path("smoke") / "dcgan" / f"seed-{seed}"
        pool, seq = _series(tmp_path / "pool" / rel), _series(tmp_path / "seq" / rel)
        assert pool == seq   # bit for bit


@pytest.mark.parametrize("args,expect", [
    (["--variant", "dcgam"], "did you mean: dcgan"),
    (["--variant", "dcgan", "--set", "stepz=5"], "unknown protocol key 'stepz'; did you mean: steps"),
    (["--variant", "dcgan", "--set", "steps=-3"], "steps=-3 is not allowed; expected an integer >= 1"),
    (["--variant", "dcgan", "--protocol", "smok"], "did you mean: smoke"),
    (["--variant", "dcgan", "--set", "dataset=\"celeba\"", "--data-root", "/nonexistent"], "celeba"),
])
def test_user_mistakes_exit_2_with_one_line(tmp_path, args, expect):
    r = CliRunner().invoke(main, ["run", "--results", str(tmp_path), *args])
    assert r.exit_code == 2, r.output
    lines = [line for line in r.output.splitlines() if line.strip().startswith("error")]
    assert len(lines) == 1 and expect in lines[0], r.output
    assert "Traceback" not in r.output


def _layouts_met_by_backward_kernels(trainer) -> list[tuple[str, bool, bool]]:
    """(op, gradient channels-last, saved tensor channels-last) of each elementwise backward in one step."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    from ganbench.train import _is_channels_last

    seen = []

    class Watch(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.__name__.split(".")[0]
            if name in ("leaky_relu_backward", "threshold_backward") and args[0].size(1) > 1:
                seen.append((name, _is_channels_last(args[0]), _is_channels_last(args[1])))
            return func(*args, **(kwargs or {}))

    with Watch():
        trainer.train_step(0, torch.zeros(6))
    return seen


def test_channels_last_backward_sees_one_layout_and_the_same_numbers():
    """The mixed-layout slow path of CPU elementwise backward kernels is avoided, with unchanged values."""
    import torch

    from ganbench.train import Trainer

    stats = {}
    for cl in (True, False):
        t = Trainer(RunSpec(resolve("smoke", ["metrics=[]", f"channels_last={str(cl).lower()}"]), "dcgan", 0))
        t.setup()
        seen = _layouts_met_by_backward_kernels(t)
        assert {"leaky_relu_backward", "threshold_backward"} <= {op for op, _, _ in seen}
        assert all(g == s for _, g, s in seen), seen
        if cl:
            assert any(g for _, g, _ in seen)       # channels-last really is in use
        acc = torch.zeros(6)
        t.train_step(1, acc)
        stats[cl] = acc
    assert torch.allclose(stats[True], stats[False], rtol=1e-4), stats


def test_bf16_precision_trains_in_bf16_and_stays_near_fp32():
    import torch

    from ganbench.train import Trainer

    out, dtypes = {}, {}
    for precision in ("fp32", "bf16"):
        t = Trainer(RunSpec(resolve("smoke", ["metrics=[]", f'precision="{precision}"']), "dcgan", 0))
        t.setup()
        seen = set()
        hooks = [m.register_forward_hook(lambda m, i, o: seen.add(o.dtype)) for net in (t.G, t.D)
                 for m in net.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        acc = torch.zeros(6)
        t.train_step(0, acc)
        for h in hooks:
            h.remove()
        out[precision], dtypes[precision] = acc, seen
        assert all(p.dtype == torch.float32 for p in t.G.parameters())   # fp32 master weights
        assert all(s["exp_avg"].dtype == torch.float32 for s in t.opt_g.state.values())
    assert dtypes == {"fp32": {torch.float32}, "bf16": {torch.bfloat16}}
    assert not torch.equal(out["fp32"], out["bf16"])
    # the first step's losses and D outputs agree to bf16's precision (8 bits of mantissa, a few layers deep)
    assert torch.allclose(out["fp32"][:4], out["bf16"][:4], rtol=0.05, atol=0.01), out


@pytest.mark.slow
def test_compile_trains_the_same_numbers_as_eager(restore_threads):
    """``compile = true`` runs G's and D's training passes through torch.compile (inductor, C++ on a CPU): four
    steps give the eager steps' losses and weights to float rounding (measured: 2.4e-7 relative on the step
    statistics, 1.1e-8 on G's weights; about a minute of compiling on a 2-core CPU)."""
    import torch

    from ganbench.train import STEP_STATS, Trainer

    out = {}
    for compiled in (False, True):
        t = Trainer(RunSpec(resolve("smoke", ["metrics=[]", "threads=1", f"compile={str(compiled).lower()}"]), "dcgan", 0))
        t.setup()
        assert (t.g_train is not t.G) == compiled
        rows = []
        for step in range(4):
            acc = torch.zeros(len(STEP_STATS))
            t.train_step(step, acc)
            rows.append(acc)
        out[compiled] = torch.stack(rows), {k: v.clone() for k, v in t.G.state_dict().items()}
    (eager, g_eager), (comp, g_comp) = out[False], out[True]
    assert torch.allclose(comp, eager, rtol=1e-5, atol=1e-7), (comp, eager)
    assert all(torch.allclose(g_comp[k].float(), g_eager[k].float(), rtol=1e-5, atol=1e-6) for k in g_eager)
    assert not torch.equal(eager[0], eager[-1])   # the steps moved: the comparison is not of four idle steps
