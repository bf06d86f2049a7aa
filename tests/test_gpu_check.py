"""benchmarks/gpu_check.py's study plan: how the minutes left after the measurements become seeds, steps and
processes for the paper-64 suite. Runs without a GPU: the plan is arithmetic on the stages' measured rows."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from ganbench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)

# the arms of the suite the plan is for, read from it (the study grows when controls join it)
ARMS = len(load_suite(ROOT / "benchmarks" / "paper-64.toml", []).variants)
STACK_TEST = "tests/test_cuda.py::test_seeds_together_equal_seeds_alone_on_cuda[{}-dcgan]"


def stack_row(seeds: int, img_s: float, vs_trainer: float) -> dict:
    return {"resolution": 64, "precision": "fp32", "how": "together", "seeds": seeds, "img_s": img_s,
            "vs_trainer": vs_trainer}


def check(tmp_path, monkeypatch, failed=(), total_ips=60_000.0, cores=16, study_precision="fp32", plan_from=None,
          concurrent=True, stack_gain=2.0) -> "gpu_check.Check":
    args = argparse.Namespace(device="cuda", quick=False, out=str(tmp_path / "gpu"), summary=None, deadline_s=540.0,
                              study_precision=study_precision, plan_from=plan_from, skip=set())
    monkeypatch.setattr(gpu_check.os, "cpu_count", lambda: cores)
    c = gpu_check.Check(args)
    c.dry = False
    rows = [{"resolution": 64, "runs_at_once": n, "img_s_total": total_ips * f}
            for n, f in ((1, 0.3), (4, 0.9), (8, 1.0))]
    c.results = {"tests": {"exit_code": 1 if failed else 0, "failed": list(failed)},
                 "batched": {"rows": [stack_row(4, 4 * total_ips / 8 * stack_gain, stack_gain)]}}
    if concurrent:
        c.results["concurrent"] = {"rows": rows}
    return c


def test_seeds_of_an_arm_train_together_when_the_stack_tests_passed(tmp_path, monkeypatch):
    plan = check(tmp_path, monkeypatch).study_plan(1_000.0)
    assert (plan["seeds"], plan["together"], plan["precision"]) == (3, 3, "fp32")
    assert plan["processes"] == ARMS and plan["jobs"] == 16 and plan["waves"] == -(-ARMS // 16)   # one process per core
    # 60,000 img/s (no more than one stack of 4 seeds: 30,000 x 2) shared by 16 processes of 3 seeds; each wave's
    # share of the 1,000 s less 25 s of overhead; batch 128
    assert plan["steps"] == int((1_000 / plan["waves"] - 25) * 60_000 / 48 / 128 // 10 * 10)
    assert "--together" not in plan["suite_args"]


def test_a_stack_failure_at_another_precision_does_not_stop_the_studys(tmp_path, monkeypatch):
    assert check(tmp_path, monkeypatch, failed=[STACK_TEST.format("bf16")]).study_plan(1_000.0)["together"] == 3


@pytest.mark.parametrize("failed", [[STACK_TEST.format("fp32")],
                                    ["tests/test_cuda.py::test_seed_stack_step_is_sync_free[fp32]"]])
def test_runs_go_one_per_process_when_the_stack_failed_at_the_studys_precision(tmp_path, monkeypatch, failed):
    plan = check(tmp_path, monkeypatch, failed=failed).study_plan(1_000.0)
    assert plan["together"] == 1 and plan["jobs"] == 16   # one process per core
    assert plan["processes"] == plan["runs"] == ARMS * plan["seeds"]


@pytest.mark.parametrize("total_ips, seeds", [(20_000.0, 3), (2_000.0, 1), (50.0, 3)])
def test_three_seeds_wherever_they_train_100_steps(tmp_path, monkeypatch, total_ips, seeds):
    """3 seeds short of 1,000 steps rather than fewer seeds longer; fewer only where 3 would not reach 100
    steps; where nothing does, the 3-seed plan, which the stage then skips."""
    plan = check(tmp_path, monkeypatch, total_ips=total_ips).study_plan(300.0)
    assert plan["seeds"] == seeds
    assert (100 <= plan["steps"] < 1000) if total_ips > 50 else plan["steps"] < 100


def test_a_check_that_skips_the_measurements_plans_from_an_earlier_ones(tmp_path, monkeypatch):
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    rows = [{"resolution": 64, "runs_at_once": 4, "img_s_total": 20_000.0}]
    (earlier / "concurrent.json").write_text(json.dumps({"stage": "concurrent", "result": {"rows": rows}}))
    plan = check(tmp_path, monkeypatch, plan_from=str(earlier), concurrent=False).study_plan(1_000.0)
    assert plan["img_s_total"] == 20_000.0
    without = check(tmp_path, monkeypatch, concurrent=False).study_plan(1_000.0)
    assert without["img_s_total"] != 20_000.0


def test_the_plan_is_no_faster_than_a_stack_ran_alone(tmp_path, monkeypatch):
    c = check(tmp_path, monkeypatch)
    c.results["batched"] = {"rows": [stack_row(4, 800.0, 1.5)]}
    plan = c.study_plan(10_000.0)
    assert plan["together"] == 3
    assert plan["img_s_per_seed"] == round(800.0 / 48, 1)   # one stack's 800 img/s over 16 processes of 3 seeds


@pytest.mark.parametrize("rows", [[stack_row(4, 7_700.0, 0.54)], []], ids=["slower than the trainer", "not measured"])
def test_no_stack_where_it_was_not_measured_faster_than_the_trainer(tmp_path, monkeypatch, rows):
    c = check(tmp_path, monkeypatch)
    c.results["batched"] = {"rows": rows}
    plan = c.study_plan(1_000.0)
    assert plan["together"] == 1 and plan["processes"] == ARMS * plan["seeds"]


def test_fewer_cores_than_the_best_concurrency_still_run_that_many(tmp_path, monkeypatch):
    assert check(tmp_path, monkeypatch, cores=2, failed=[STACK_TEST.format("fp32")]).study_plan(1_000.0)["jobs"] == 8


GRAPH_TEST = "tests/test_cuda.py::test_the_step_as_a_cuda_graph_trains_as_the_step_without"


@pytest.mark.parametrize("graph_ips, failed, expected", [(30_000.0, [], True), (10_000.0, [], False),
                                                         (30_000.0, [GRAPH_TEST], False)])
def test_the_study_steps_as_a_graph_where_it_was_measured_faster(tmp_path, monkeypatch, graph_ips, failed, expected):
    c = check(tmp_path, monkeypatch, failed=failed, stack_gain=0.5)
    c.results["graphs"] = {"rows": [{"resolution": 64, "loop": "ganbench fp32", "img_s": 14_000.0},
                                    {"resolution": 64, "loop": "ganbench fp32 graph", "img_s": graph_ips}]}
    assert c.study_plan(1_000.0)["cuda_graph"] is expected
