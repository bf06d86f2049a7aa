"""The run record: its files, written by the trainer and read back by the report, the executors and the
commands that load a trained run."""

import json

import pytest
from click.testing import CliRunner

from ganbench.cli import main
from ganbench.files import read_jsonl
from ganbench.protocol import resolve
from ganbench.record import (CheckpointError, RunLocked, RunRecord, RunSpec, Unusable, resumable_step)
from ganbench.train import run_one

TIMING = {"interval_ips", "train_ips", "sample_ips", "peak_mem_mb"}


def _series(run_dir):
    return [{k: v for k, v in row.items() if k not in TIMING} for row in read_jsonl(run_dir / "metrics.jsonl")]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One complete smoke run with the cost and stability metrics (no classifier needed)."""
    spec = RunSpec(resolve("smoke", ['metrics=["stability", "cost"]']), "dcgan", 0, tmp_path_factory.mktemp("rec"))
    assert run_one(spec).status == "complete"
    return spec


def test_the_record_carries_what_the_report_needs(smoke_run):
    data = RunRecord(smoke_run.run_dir).read()
    spec = data.spec
    assert spec["run_id"] == smoke_run.run_id and data.status == "complete" and data.notes == []
    # each metric's declaration and the plugin (and distribution, version) behind the variant, data set, metric
    assert spec["metrics"]["cost"]["outputs"]["train_ips"] is True
    assert spec["metrics"]["stability"]["outputs"]["sample_oscillation"] is False
    assert spec["variant"]["plugin"] == "ganbench.variants" and spec["variant"]["distribution"] == "ganbench"
    assert spec["dataset"]["plugin"] == "ganbench.data" and spec["metrics"]["cost"]["plugin"] == "ganbench.metrics"
    assert data.directions["train_ips"] is True and data.directions["g_loss"] is None
    # the claims the run takes part in (dcgan: every claim it is the baseline of) and the rules they are about
    assert spec["rule"] == {"id": "-", "text": "", "claim": ""} and spec["variant"]["primary"] == ""
    claims = {c["id"]: c for c in spec["claims"]}
    assert claims["R2.collapse"]["variants"] == ["no-bn-gen", "no-bn", "no-bn-bias-free", "no-bn-he-init"]
    assert claims["R2.collapse"]["plugin"] == "ganbench.claims" and "R2.poor-init" not in claims   # vs no-bn-he-init
    assert [r["id"] for r in spec["rules"]] == ["R1", "R2", "R3", "R4", "R5", "R6"]
    assert spec["rules"][1]["text"] == "batchnorm in G and D, except G's output and D's input"
    assert spec["environment"]["cpu_capability"]
    assert [r["step"] for r in data.series] == [10, 20]


def test_directions_come_from_the_record_not_from_installed_plugins(smoke_run, tmp_path, monkeypatch):
    import shutil

    from ganbench import report as rep

    for seed in (0, 1):
        dst = tmp_path / "smoke" / "dcgan" / f"seed-{seed}"
        shutil.copytree(smoke_run.run_dir, dst)
        spec = json.loads((dst / "spec.json").read_text())
        spec["seed"] = seed
        spec["metrics"]["mine"] = {"outputs": {"sharpness": True}}   # a plugin metric no longer installed
        (dst / "spec.json").write_text(json.dumps(spec))
        summary = json.loads((dst / "summary.json").read_text())
        summary["final"]["sharpness"] = 1.0 + seed
        (dst / "summary.json").write_text(json.dumps(summary))
    loaded = rep.load_results(tmp_path)
    assert loaded.directions["sharpness"] is True and loaded.directions["train_ips"] is True
    agg = rep.build_report(tmp_path).aggregates
    assert agg[agg["metric"] == "sharpness"]["better"].tolist() == ["higher"]


@pytest.mark.parametrize("damage,reason", [
    # killed after its last checkpoint (step 20): it names the step it resumes from, not where the session began
    (lambda d: (d / "summary.json").write_text('{"status": "running", "step": 0}'), "resumes it from step 20 "),
    (lambda d: (d / "summary.json").write_text('{"status": "failed", "error": "boom"}'), "the run failed: boom"),
    (lambda d: (d / "summary.json").write_text('{"status": "compl'), "not valid JSON"),
    (lambda d: (d / "spec.json").unlink(), "no spec.json"),
])
def test_an_unusable_record_says_why(smoke_run, tmp_path, damage, reason):
    import shutil

    d = tmp_path / "run"
    shutil.copytree(smoke_run.run_dir, d)
    damage(d)
    with pytest.raises(Unusable, match=reason):
        RunRecord(d).read()


def test_the_networks_load_from_the_checkpoint_and_garbage_gets_one_line(smoke_run, tmp_path):
    import shutil

    run = RunRecord(smoke_run.run_dir).load_networks()
    assert run.step == 20 and run.variant == "dcgan" and run.arch.resolution == 16
    d = tmp_path / "run"
    shutil.copytree(smoke_run.run_dir, d)
    (d / "checkpoint.pt").write_bytes(b"\x80\x04random bytes, not a pickle")
    with pytest.raises(CheckpointError, match=r"checkpoint.pt: not a readable checkpoint"):
        RunRecord(d).load_networks()


def test_files_travel_as_bytes_and_say_where_they_resume(smoke_run, tmp_path):
    files = RunRecord(smoke_run.run_dir).read_files()
    assert {"spec.json", "summary.json", "metrics.jsonl", "checkpoint.pt"} <= set(files)
    assert not any(name.startswith(".") for name in files)          # no lock, no temporary files
    assert resumable_step(files) == 20 and resumable_step({}) == -1
    RunRecord(tmp_path / "copy").write_files(files)
    assert RunRecord(tmp_path / "copy").read().summary == RunRecord(smoke_run.run_dir).read().summary


def test_a_probe_result_replaces_one_with_the_same_settings_and_step(tmp_path):
    rec = RunRecord(tmp_path)
    rec.add_probe({"settings": {"draws": 1}, "step": 5, "acc": 0.1})
    rec.add_probe({"settings": {"draws": 2}, "step": 5, "acc": 0.2})
    rec.add_probe({"settings": {"draws": 1}, "step": 5, "acc": 0.3})
    probes = json.loads((tmp_path / "probe.json").read_text())["probes"]
    assert [(p["settings"]["draws"], p["acc"]) for p in probes] == [(2, 0.2), (1, 0.3)]


def test_a_locked_run_is_not_trained_twice(tmp_path):
    spec = RunSpec(resolve("smoke"), "dcgan", 0, tmp_path)
    with RunRecord(spec.run_dir).lock():
        with pytest.raises(RunLocked):
            run_one(spec)


def test_changed_protocol_under_the_same_name_is_refused(tmp_path):
    base = ["run", "--variant", "dcgan", "--protocol", "smoke", "--seed", "0", "--set", "metrics=[]",
            "--results", str(tmp_path)]
    assert CliRunner().invoke(main, base).exit_code == 0
    r = CliRunner().invoke(main, [*base, "--set", "steps=12"])
    assert r.exit_code == 2 and "holds a run with other inputs" in r.output


def test_killed_after_the_last_checkpoint_finishes_without_training(tmp_path):
    spec = RunSpec(resolve("smoke", ["metrics=[]"]), "dcgan", 0, tmp_path)
    assert run_one(spec).status == "complete"
    series = _series(spec.run_dir)
    # the state a SIGKILL between the final checkpoint and the summary leaves behind
    (spec.run_dir / "metrics.jsonl").unlink()
    (spec.run_dir / "summary.json").write_text('{"status": "running"}')
    again = run_one(spec)
    assert again.status == "complete"
    assert json.loads((spec.run_dir / "summary.json").read_text())["resumed"] is True
    assert _series(spec.run_dir) == series


def test_a_suite_with_a_run_held_by_another_process_exits_3_naming_it(tmp_path):
    spec = RunSpec(resolve("smoke", ["metrics=[]"]), "dcgan", 1, tmp_path)
    args = ["run", "--variant", "dcgan", "--protocol", "smoke", "--set", "metrics=[]", "--seeds", "2",
            "--results", str(tmp_path)]
    with RunRecord(spec.run_dir).lock():
        r = CliRunner().invoke(main, args)
    assert r.exit_code == 3, r.output
    assert "dcgan seed 1 locked" in r.stderr and "1 of 2 runs are not results" in r.stderr
    assert RunRecord(tmp_path / "smoke" / "dcgan" / "seed-0").is_done()      # the other run went on
    again = CliRunner().invoke(main, args)                                    # free now: it trains, exit 0
    assert again.exit_code == 0, again.output
