"""benchmarks/gpu_check.py's study plan: how the minutes left after the measurements become seeds, steps and
processes for the paper-64 suite. Runs without a GPU: the plan is arithmetic on the stages' measured rows."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_check)


def check(tmp_path, tests_rc: int, total_ips: float, cores: int, monkeypatch) -> "gpu_check.Check":
    args = argparse.Namespace(device="cuda", quick=False, out=str(tmp_path / "gpu"), summary=None, deadline_s=540.0)
    monkeypatch.setattr(gpu_check.os, "cpu_count", lambda: cores)
    c = gpu_check.Check(args)
    c.dry = False
    c.results = {"tests": {"exit_code": tests_rc},
                 "concurrent": {"rows": [{"resolution": 64, "runs_at_once": n, "img_s_total": total_ips * f}
                                         for n, f in ((1, 0.3), (4, 0.9), (8, 1.0))]}}
    return c


def test_seeds_of_an_arm_train_together_when_the_cuda_tests_passed(tmp_path, monkeypatch):
    c = check(tmp_path, 0, 60_000.0, 16, monkeypatch)
    plan = c.study_plan(1_000.0)
    assert (plan["seeds"], plan["together"]) == (3, 3)
    assert plan["processes"] == 26 and plan["jobs"] == 13 and plan["waves"] == 2
    # 60,000 img/s shared by 13 processes of 3 seeds; 500 s a wave less 40 s of overhead; batch 128
    assert plan["steps"] == int((500 - 40) * 60_000 / 39 / 128 // 10 * 10)
    assert "--together" not in plan["suite_args"]


def test_runs_go_one_per_process_when_the_cuda_tests_failed(tmp_path, monkeypatch):
    c = check(tmp_path, 1, 60_000.0, 16, monkeypatch)
    plan = c.study_plan(1_000.0)
    assert plan["together"] == 1 and plan["jobs"] == 8   # the concurrent stage's best
    assert plan["processes"] == plan["runs"] == 26 * plan["seeds"]


@pytest.mark.parametrize("total_ips", [2_000.0, 50.0])
def test_three_seeds_when_no_plan_reaches_the_wanted_steps(tmp_path, monkeypatch, total_ips):
    c = check(tmp_path, 0, total_ips, 16, monkeypatch)
    plan = c.study_plan(300.0)
    assert plan["steps"] < 1000 and plan["seeds"] == 3
