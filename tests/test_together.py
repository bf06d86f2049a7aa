"""``ganbench run --together K``: seeds trained together keep records equal to those of the seeds trained alone.

Tolerance. Measured on this project's AVX2 CPU (one torch thread, NCHW, the smoke protocol over 30 steps),
the largest relative differences between a seed's series trained together and alone, over seeds 0-6 of
dcgan (the variant tested here), were: the step statistics (losses, D's outputs, gradient norms) 2.3e-7,
FID 9.1e-7, KID 2.3e-6; the checkpoints' weights 6.4e-7 and Adam's moments 4.2e-7 absolute. The tests
allow 2e-5 relative (plus 1e-6 absolute) for the series and ``tests/test_batched.py``'s tolerance for the
checkpoints. What they must catch is far above it: over 30 steps, swapping the two seeds' slices differs by
7e-3 to 3e-1 and resetting Adam's state at each evaluation by 2e-3 to 7e-2 (3e-4 already at step 20, the
tests' last); leaving out the BN running statistics fails the checkpoint comparison (they do not enter the
series: samples are drawn in training mode).

Rounding grows as a GAN trains, so these figures hold for a few tens of steps, not for a whole study: seed 7
of dcgan turns it into 6e-5 by step 30 (the trajectory ``tests/test_batched.py`` describes), no-bn's tiny
G gradient norms (0.005) differ by 3.5e-4 relative (2e-6 absolute), and channels-last runs differ from
the stack's NCHW by as much as the trainer's two layouts differ from each other (up to 9e-4 by step 30).
"""

from __future__ import annotations

import json
import math
import re
import types
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from rich.progress import Progress

from ganbench import batched, plugins
from ganbench.arch import build
from ganbench.batched import SeedStack, stack_problem
from ganbench.cli import main
from ganbench.files import read_jsonl, write_json
from ganbench.hookspecs import hookimpl
from ganbench.progress import RichObserver
from ganbench.protocol import resolve
from ganbench.record import RunSpec
from ganbench.together import group_runs
from ganbench.train import STEP_STATS, RunResult, Trainer
from ganbench.variants import NO_RULE, Variant

from conftest import item_builder

PROTOCOL = ["--protocol", "smoke", "--set", "channels_last=false", "--set", "threads=1"]
COMPARED = (*STEP_STATS, "fid", "kid_mean")
RTOL, ATOL = 2e-5, 1e-6
WEIGHT_RTOL, WEIGHT_ATOL = 1e-5, 3e-6


def _run(results: Path, *args: str, variant: str = "dcgan"):
    """``ganbench run`` of a variant's seeds 0 and 1 under the tests' protocol."""
    return CliRunner().invoke(main, ["run", "--variant", variant, *PROTOCOL, "--seeds", "2", "--results", str(results),
                                     *args], catch_exceptions=False)


def _dir(results: Path, seed: int, variant: str = "dcgan") -> Path:
    return results / "smoke" / variant / f"seed-{seed}"


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def _close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= ATOL + RTOL * abs(b)


def series_mismatch(a_dir: Path, b_dir: Path, keys=COMPARED) -> str:
    """Where two records' series differ beyond the tolerance ("" where they do not)."""
    a, b = read_jsonl(a_dir / "metrics.jsonl"), read_jsonl(b_dir / "metrics.jsonl")
    if [r["step"] for r in a] != [r["step"] for r in b]:
        return f"evaluated at steps {[r['step'] for r in a]} and {[r['step'] for r in b]}"
    for ra, rb in zip(a, b):
        if set(ra) != set(rb):
            return f"step {ra['step']}: keys {sorted(set(ra) ^ set(rb))} in one series only"
        for key in keys:
            if not _close(ra[key], rb[key]):
                return f"step {ra['step']} {key}: {ra[key]!r} vs {rb[key]!r}"
    return ""


def assert_same_checkpoint(a_dir: Path, b_dir: Path) -> None:
    """G and D (BN running statistics included) and both optimizers' Adam state, within the weight tolerance."""
    a, b = (torch.load(d / "checkpoint.pt", weights_only=False) for d in (a_dir, b_dir))
    assert a["step"] == b["step"]
    for net in ("G", "D"):
        assert list(a[net]) == list(b[net])
        for key, ref in b[net].items():
            if ref.dtype.is_floating_point:
                torch.testing.assert_close(a[net][key], ref, rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL, msg=f"{net}.{key}")
            else:
                assert torch.equal(a[net][key], ref), f"{net}.{key}"
    for opt in ("opt_g", "opt_d"):
        assert a[opt]["param_groups"] == b[opt]["param_groups"]
        assert a[opt]["state"].keys() == b[opt]["state"].keys() and b[opt]["state"]
        for i, state in b[opt]["state"].items():
            assert torch.equal(a[opt]["state"][i]["step"], state["step"])
            for key in ("exp_avg", "exp_avg_sq"):
                torch.testing.assert_close(a[opt]["state"][i][key], state[key], rtol=WEIGHT_RTOL, atol=WEIGHT_ATOL,
                                           msg=f"{opt} {i} {key}")


@pytest.fixture(scope="module", autouse=True)
def threads_back():
    """The protocol's threads=1 sets this process's torch threads (in the module's fixtures too): the other
    modules' tests get theirs back (``conftest.restore_threads``, for a whole module)."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def alone(tmp_path_factory) -> Path:
    """Seeds 0 and 1, each trained on its own (the reference)."""
    results = tmp_path_factory.mktemp("alone")
    r = _run(results)
    assert r.exit_code == 0, r.output
    return results


@pytest.fixture(scope="module")
def together(tmp_path_factory) -> Path:
    """Seeds 0 and 1 trained together."""
    results = tmp_path_factory.mktemp("together")
    r = _run(results, "--together", "2")
    assert r.exit_code == 0, r.output
    return results


def test_seeds_together_keep_the_records_of_seeds_alone(alone, together):
    for seed in (0, 1):
        ours, ref = _dir(together, seed), _dir(alone, seed)
        assert series_mismatch(ours, ref) == ""
        assert_same_checkpoint(ours, ref)
        spec, ref_spec = (json.loads((d / "spec.json").read_text()) for d in (ours, ref))
        assert spec["run_id"] == ref_spec["run_id"] and spec["seed"] == seed
        summary = _summary(ours)
        assert summary["status"] == "complete" and summary["step"] == 20 and summary["train_seconds"] > 0
        assert summary["trained_together"] == [{"steps": [0, 20], "seeds": [0, 1]}]
        assert _summary(ref)["trained_together"] == []
        assert sorted(p.name for p in (ours / "samples").iterdir()) == ["step-0000010.png", "step-0000020.png"]
        # each seed's interval_ips is its images over its share of the batch's time: the batch's images per second
        row = read_jsonl(ours / "metrics.jsonl")[-1]
        assert row["interval_ips"] > 0 and row["train_ips"] > 0
    # the tolerance tells the seeds apart: the other seed's slice written into this record would fail
    assert series_mismatch(_dir(together, 0), _dir(alone, 1)) != ""
    assert series_mismatch(_dir(together, 1), _dir(alone, 0)) != ""


@pytest.mark.parametrize("interrupted_after", [1, 0], ids=["both-at-step-10", "seed-1-left-at-step-0"])
def test_an_interrupted_group_resumes_each_seed_from_its_checkpoint(tmp_path, monkeypatch, together, interrupted_after):
    """Stopped (as by Ctrl-C) once seed ``interrupted_after`` has recorded step 10: both seeds then stand at
    step 10, or seed 0 at 10 and seed 1 at its start (it trains alone up to step 10, then joins seed 0).
    Resumed, each ends as the uninterrupted group did: a resume that lost Adam's state would not."""
    end_interval = Trainer.end_interval

    def end_then_stop(self, *args, **kwargs):
        end_interval(self, *args, **kwargs)
        if (self.spec.seed, self.step) == (interrupted_after, 10):
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "end_interval", end_then_stop)
    r = _run(tmp_path, "--together", "2")
    assert r.exit_code == 1, r.output
    steps = {seed: read_jsonl(_dir(tmp_path, seed) / "metrics.jsonl")[-1]["step"]
             if (_dir(tmp_path, seed) / "metrics.jsonl").exists() else 0 for seed in (0, 1)}
    assert steps == {0: 10, 1: 10 if interrupted_after == 1 else 0}
    assert all(_summary(_dir(tmp_path, seed))["status"] == "running" for seed in (0, 1))
    monkeypatch.undo()

    r = _run(tmp_path, "--together", "2")
    assert r.exit_code == 0, r.output
    for seed in (0, 1):
        summary = _summary(_dir(tmp_path, seed))
        assert summary["status"] == "complete" and summary["resumed"] is (steps[seed] > 0)
        assert series_mismatch(_dir(tmp_path, seed), _dir(together, seed)) == ""
        assert_same_checkpoint(_dir(tmp_path, seed), _dir(together, seed))
    spans = {seed: _summary(_dir(tmp_path, seed))["trained_together"] for seed in (0, 1)}
    assert spans[0] == [{"steps": [0, 20], "seeds": [0, 1]}]
    assert spans[1] == ([{"steps": [0, 20], "seeds": [0, 1]}] if interrupted_after == 1 else
                        [{"steps": [10, 20], "seeds": [0, 1]}])


def test_a_seed_that_diverges_leaves_the_group_and_the_other_goes_on(tmp_path, monkeypatch, alone):
    """Seed 0's weights turn NaN at step 12: it is recorded as diverged at its next evaluation, as the trainer
    records a divergence, and seed 1 trains on (alone, once it is the only one) to a record like its own."""
    step = SeedStack.train_step

    def poisoned(self, s):
        stats = step(self, s)
        if s == 12 and 0 in self.seeds:
            with torch.no_grad():
                next(iter(self.gp.values()))[self.seeds.index(0)].fill_(math.nan)
        return stats

    monkeypatch.setattr(SeedStack, "train_step", poisoned)
    r = _run(tmp_path, "--together", "2", "--set", "steps=30")
    assert r.exit_code == 0, r.output
    s0, s1 = _summary(_dir(tmp_path, 0)), _summary(_dir(tmp_path, 1))
    assert (s0["status"], s0["step"], s1["status"], s1["step"]) == ("diverged", 20, "complete", 30)
    rows = read_jsonl(_dir(tmp_path, 0) / "metrics.jsonl")
    assert [r["step"] for r in rows] == [10, 20] and rows[-1]["diverged"] == 1.0 and rows[0]["diverged"] == 0.0
    assert (_dir(tmp_path, 0) / "checkpoint.pt").exists()
    assert s1["trained_together"] == [{"steps": [0, 20], "seeds": [0, 1]}]   # then alone: the only one left
    # seed 1's first two evaluations are those of its run alone (20 steps), whose protocol differs only in steps
    ref = read_jsonl(_dir(alone, 1) / "metrics.jsonl")
    ours = read_jsonl(_dir(tmp_path, 1) / "metrics.jsonl")
    assert [r["step"] for r in ours] == [10, 20, 30]
    for a, b in zip(ours[:2], ref):
        assert all(_close(a[k], b[k]) for k in STEP_STATS), (a, b)


def test_a_crash_while_training_a_group_is_each_unfinished_runs_failure(tmp_path, monkeypatch):
    def crash(self, step):
        raise RuntimeError(f"boom at step {step}")

    monkeypatch.setattr(SeedStack, "train_step", crash)
    r = _run(tmp_path, "--together", "2", "--set", "metrics=[]")
    assert r.exit_code == 3, r.output
    for seed in (0, 1):
        summary = _summary(_dir(tmp_path, seed))
        assert (summary["status"], summary["error"]) == ("failed", "RuntimeError: boom at step 0")
    monkeypatch.undo()
    r = _run(tmp_path, "--together", "2", "--set", "metrics=[]")     # failed runs are trained again
    assert r.exit_code == 0, r.output
    assert all(_summary(_dir(tmp_path, seed))["status"] == "complete" for seed in (0, 1))


def test_a_group_keeps_one_copy_of_the_training_images(tmp_path, monkeypatch):
    """K seeds trained together read one tensor of images on the device, not K copies of it (on a GPU a
    CIFAR-10 copy at 64 px is 0.6 GB). On a CPU ``.to("cpu")`` copies nothing, so each trainer's setup here
    makes its own copy, as moving the images to a GPU does."""
    setup, finish, seen = Trainer.setup, Trainer.finish, []

    def copy_like_a_gpu(self):
        setup(self)
        self.data = self.data.clone()

    def record_data(self):
        seen.append(self.data)
        return finish(self)

    monkeypatch.setattr(Trainer, "setup", copy_like_a_gpu)
    monkeypatch.setattr(Trainer, "finish", record_data)
    r = _run(tmp_path, "--together", "2", "--set", "steps=10", "--set", "metrics=[]")
    assert r.exit_code == 0, r.output
    assert len(seen) == 2 and seen[0] is seen[1]
    assert seen[0].dtype == torch.uint8 and len(seen[0]) > 1000


def test_an_absurd_learning_rate_diverges_every_seed_of_a_group(tmp_path):
    args = ["--set", "lr_scale=1e35", "--set", "metrics=[]"]
    assert _run(tmp_path / "alone", *args).exit_code == 0
    r = _run(tmp_path / "together", *args, "--together", "2")
    assert r.exit_code == 0, r.output
    for seed in (0, 1):
        ours, ref = _dir(tmp_path / "together", seed), _dir(tmp_path / "alone", seed)
        assert _summary(ours)["status"] == _summary(ref)["status"] == "diverged"
        steps = [[r["step"] for r in read_jsonl(d / "metrics.jsonl")] for d in (ours, ref)]
        assert steps[0] == steps[1]


# ---- a variant vmap cannot run, and protocols the batched step does not follow --------------------------------


@pytest.fixture
def item_variant(monkeypatch):
    """A plugin variant ``item-plugin`` whose G vmap cannot run, registered as a plugin registers it."""
    plugin = types.ModuleType("item_plugin")
    item = Variant("item-plugin", NO_RULE, "G ends in a module that calls .item()", builder=item_builder)
    plugin.ganbench_variants = hookimpl(lambda: [item])
    make = plugins.get_plugin_manager

    def with_item(autoload=None):
        pm = make(autoload)
        pm.register(plugin, name="item_plugin")
        return pm

    monkeypatch.setattr(plugins, "get_plugin_manager", with_item)
    plugins.catalog.cache_clear()
    yield "item-plugin"
    plugins.catalog.cache_clear()


def test_a_variant_vmap_cannot_run_trains_alone_with_one_warning(tmp_path, item_variant):
    with pytest.warns(UserWarning) as warned:
        r = _run(tmp_path / "together", "--set", "metrics=[]", "--together", "2", variant=item_variant)
    assert r.exit_code == 0, r.output
    said = [str(w.message) for w in warned if str(w.message).startswith("seeds together")]
    assert len(said) == 1 and re.fullmatch(r"seeds together: variant 'item-plugin' cannot be batched \(torch.func.vmap "
                                           r"cannot run its networks: .*item.*\); training its 2 seeds one after another",
                                           said[0]), said
    r = _run(tmp_path / "alone", "--set", "metrics=[]", variant=item_variant)
    assert r.exit_code == 0, r.output
    for seed in (0, 1):
        ours, ref = _dir(tmp_path / "together", seed, item_variant), _dir(tmp_path / "alone", seed, item_variant)
        assert _summary(ours)["status"] == "complete" and _summary(ours)["trained_together"] == []
        timing = {"interval_ips"}
        strip = lambda rows: [{k: v for k, v in row.items() if k not in timing} for row in rows]   # noqa: E731
        assert strip(read_jsonl(ours / "metrics.jsonl")) == strip(read_jsonl(ref / "metrics.jsonl"))   # bit for bit


def test_compile_is_a_reason_to_train_alone():
    p = resolve("smoke", ["compile=true"])
    G, D = build(p.arch())
    assert stack_problem(p, G, D, 2, torch.device("cpu")) == "compile=true: the batched step is not compiled"
    assert stack_problem(resolve("smoke"), G, D, 2, torch.device("cpu")) is None


def test_the_trial_pass_runs_at_the_protocols_precision(monkeypatch):
    """Under bf16 the trial pass says what the step would do: no problem and a step that runs, or the reason
    and a step that fails (on a CPU, torch 2.14: vmap refuses autocast's transposed convolutions)."""
    p = resolve("smoke", ['precision="bf16"', 'device="cpu"', "metrics=[]"])
    G, D = build(p.arch())
    problem = stack_problem(p, G, D, 2, torch.device("cpu"))
    monkeypatch.setattr(batched, "stack_problem", lambda *args: None)   # stacked whatever the trial said
    stack = SeedStack(p, "dcgan", [0, 1])
    stack.setup()
    if problem:
        assert "under bf16 autocast" in problem
        with pytest.raises(RuntimeError):
            stack.train_step(0)
    else:
        assert torch.isfinite(stack.train_step(0)).all()


# ---- the units of work ------------------------------------------------------------------------------------


def test_groups_are_a_variants_pending_seeds_k_at_a_time(tmp_path):
    p = resolve("smoke")
    specs = [RunSpec(p, v, s, tmp_path) for v in ("dcgan", "no-bn") for s in range(5)]
    write_json(specs[1].run_dir / "summary.json", {"status": "complete"})      # dcgan seed 1 is a result
    write_json(specs[2].run_dir / "summary.json", {"status": "running"})       # dcgan seed 2 is not
    names = lambda groups: [[(s.variant, s.seed) for s in g] for g in groups]  # noqa: E731
    assert names(group_runs(specs, 2)) == [
        [("dcgan", 1)],
        [("dcgan", 0), ("dcgan", 2)], [("dcgan", 3), ("dcgan", 4)],
        [("no-bn", 0), ("no-bn", 1)], [("no-bn", 2), ("no-bn", 3)], [("no-bn", 4)]]
    assert names(group_runs(specs, 1)) == [[(s.variant, s.seed)] for s in specs]
    assert sorted(map(len, group_runs(specs, 9))) == [1, 4, 5]


def test_the_pool_trains_groups_as_its_units_of_work(tmp_path, together):
    """--jobs 2 --together 2 over two variants: one group per worker, each record as the in-process group's
    (without metrics, whose series then has the step statistics only)."""
    r = CliRunner().invoke(main, ["run", "--variant", "dcgan", "--variant", "no-bn", *PROTOCOL, "--set", "metrics=[]",
                                  "--seeds", "2", "--together", "2", "--jobs", "2", "--results", str(tmp_path)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    for seed in (0, 1):
        ours, ref = (read_jsonl(_dir(res, seed) / "metrics.jsonl") for res in (tmp_path, together))
        assert [r["step"] for r in ours] == [r["step"] for r in ref]
        for a, b in zip(ours, ref):
            assert all(_close(a[k], b[k]) for k in STEP_STATS), (a, b)
        for variant in ("dcgan", "no-bn"):
            assert _summary(_dir(tmp_path, seed, variant))["trained_together"] == [{"steps": [0, 20], "seeds": [0, 1]}]


def test_progress_shows_a_bar_per_run_of_a_group_until_it_is_done(tmp_path):
    specs = [RunSpec(resolve("smoke"), "dcgan", s, tmp_path) for s in (0, 1)]
    progress = Progress(disable=True)
    observer = RichObserver(progress, 2)
    for spec in specs:
        observer.started(spec)
    for step in (1, 2):
        for spec in specs:
            observer.step(spec, step, {})
    assert [t.description for t in progress.tasks] == ["suite", "dcgan seed 0", "dcgan seed 1"]
    assert [t.completed for t in progress.tasks[1:]] == [2, 2]
    observer.done(RunResult(specs[0], "complete", 1.0))
    assert [t.description for t in progress.tasks] == ["suite", "dcgan seed 1"]


def test_a_seed_stack_loads_and_unloads_trainers_exactly(tmp_path):
    """Stacking two trainers' networks and Adam state and writing the slices straight back changes nothing."""
    p = resolve("smoke", ["metrics=[]", "channels_last=true"])
    trainers = [Trainer(RunSpec(p, "dcgan", s, tmp_path)) for s in (0, 1)]
    for t in trainers:
        t.setup()
        acc = torch.zeros(len(STEP_STATS))
        for step in range(2):
            t.train_step(step, acc)      # Adam state to carry
    before = [({k: v.clone() for k, v in t.G.state_dict().items()}, t.opt_d.state_dict()) for t in trainers]
    before = [(g, {i: {k: v.clone() for k, v in s.items()} for i, s in od["state"].items()}) for g, od in before]
    stack = SeedStack(p, "dcgan", [0, 1])
    stack.load(trainers[0].data, [(t.G, t.D) for t in trainers], [(t.opt_g, t.opt_d) for t in trainers])
    assert stack.problem is None and float(stack.opt_d.state_dict()["state"][0]["step"]) == 2
    for k, t in enumerate(trainers):
        stack.unload(k, t.G, t.D, t.opt_g, t.opt_d)
        g, od = before[k]
        assert all(torch.equal(v, g[key]) for key, v in t.G.state_dict().items())
        assert all(torch.equal(v, od[i][key]) for i, s in t.opt_d.state_dict()["state"].items() for key, v in s.items())
        conv = next(m for m in t.G.modules() if isinstance(m, torch.nn.ConvTranspose2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)    # the trainer's layout is kept


def test_steps_apart_cannot_stack(tmp_path):
    p = resolve("smoke", ["metrics=[]"])
    trainers = [Trainer(RunSpec(p, "dcgan", s, tmp_path)) for s in (0, 1)]
    for t in trainers:
        t.setup()
    acc = torch.zeros(len(STEP_STATS))
    trainers[0].train_step(0, acc)
    trainers[1].train_step(0, acc)
    trainers[1].train_step(1, acc)
    with pytest.raises(ValueError, match="step counts differ"):
        SeedStack(p, "dcgan", [0, 1]).load(trainers[0].data, [(t.G, t.D) for t in trainers],
                                            [(t.opt_g, t.opt_d) for t in trainers])
