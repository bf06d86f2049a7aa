"""Suites: a suite file runs its variants and seeds; and the committed suite files cannot rot: each loads,
names only registered variants, and a smoke version of it (its protocols, data set, metrics and variants,
with tiny networks and a few steps) trains and reports."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ganbench.cli import main
from ganbench.files import read_json
from ganbench.suite import load_suite

from conftest import needs_shared

SUITES = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.toml"))

# keep each suite's data set, metrics and variants; shrink everything that costs time
SMOKE = ["steps=4", "eval_every=2", "g_width=4", "d_width=4", "z_dim=8", "batch_size=8", "n_eval=64",
         "n_final=64", "n_real=64", "probe_labels_per_class=2", "probe_draws=1", "probe_test=50", "resolution=16"]


STUDIES = {"paper-rules", "stacked-mnist", "paper-64", "cifar10-32"}   # the paper's network and the rule breakers


def _smoke_key(path: Path) -> tuple:
    """What a suite's smoke version trains: suites that shrink to the same runs are trained once (the decisive
    study and the paper-rules study differ only in steps and sample sizes, which the smoke version replaces)."""
    suite = load_suite(path, SMOKE)
    labels = ("name", "description", "source")
    return suite.variants, repr([{k: v for k, v in p.to_dict().items() if k not in labels} for p in suite.protocols])


SMOKE_SUITES = [p for i, p in enumerate(SUITES) if _smoke_key(p) not in {_smoke_key(q) for q in SUITES[:i]}]


def test_there_are_the_four_studies_and_the_precision_check():
    assert {p.stem for p in SUITES} >= STUDIES | {"precision"}


@pytest.mark.parametrize("path", SUITES, ids=[p.stem for p in SUITES])
def test_suite_file_loads_with_its_protocols_and_variants(path):
    suite = load_suite(path)
    assert suite.variants[0] == "dcgan" and len(suite.seeds) >= 3
    if path.stem in STUDIES:
        assert len(suite.variants) >= 7
    for p in suite.protocols:
        assert p.source.startswith(str(path))


def test_precision_check_differs_from_the_paper_rules_study_only_in_precision():
    by_stem = {p.stem: p for p in SUITES}
    rules = load_suite(by_stem["paper-rules"]).protocols[0].to_dict()
    fp32, bf16 = load_suite(by_stem["precision"]).protocols
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    ignore = {"name", "description", "source", "precision"}
    for p in (fp32, bf16):
        assert {k: v for k, v in p.to_dict().items() if k not in ignore} == \
               {k: v for k, v in rules.items() if k not in ignore}


def test_the_instability_runs_are_the_pilots_runs_and_the_study_differs_from_the_pilot_only_in_steps():
    """Stage (f) counts the pilot's finished runs as its own (same run identity); the study is the pilot at S*."""
    from ganbench.record import RunSpec

    by_stem = {p.stem: p for p in SUITES}
    (pilot,), (instability,), (study,) = (load_suite(by_stem[s]).protocols for s in ("pilot", "instability", "study"))
    for variant in ("dcgan", "bn-all", "adam-lr-1e-3"):
        assert RunSpec(instability, variant, 0).run_id == RunSpec(pilot, variant, 0).run_id
    ignore = {"name", "description", "source", "steps", "seeds"}
    assert {k: v for k, v in study.to_dict().items() if k not in ignore} == \
           {k: v for k, v in pilot.to_dict().items() if k not in ignore}


def test_paper_rules_runs_every_built_in_variant_and_the_probe():
    from ganbench.variants import ganbench_variants

    suite = load_suite(SUITES[[p.stem for p in SUITES].index("paper-rules")])
    assert set(suite.variants) == {v.name for v in ganbench_variants()} and suite.seeds == (0, 1, 2)
    assert "probe" in suite.protocols[0].metrics and suite.protocols[0].dataset == "mnist"


def test_stacked_mnist_puts_d_at_a_quarter_and_a_half_of_g():
    suite = load_suite(SUITES[[p.stem for p in SUITES].index("stacked-mnist")])
    assert sorted(p.d_width / p.g_width for p in suite.protocols) == [0.25, 0.5]
    assert all(p.n_final == 25600 and p.dataset == "stacked-mnist" for p in suite.protocols)
    assert len(suite.seeds) == 5


def test_every_suite_is_smoke_trained_or_shrinks_to_one_that_is():
    assert {_smoke_key(p) for p in SUITES} == {_smoke_key(p) for p in SMOKE_SUITES}
    assert len(SMOKE_SUITES) < len(SUITES)   # study.toml shrinks to paper-rules' smoke runs


@pytest.mark.slow
@pytest.mark.parametrize("path", SMOKE_SUITES, ids=[p.stem for p in SMOKE_SUITES])
def test_smoke_version_of_the_suite_trains_and_reports(path, tmp_path):
    needs_shared()
    results = tmp_path / "results"
    sets = [a for s in SMOKE for a in ("--set", s)]
    r = CliRunner().invoke(main, ["run", "--suite", str(path), "--seed", "0", "--seed", "1", "--device", "cpu",
                                  "--results", str(results), *sets])
    assert r.exit_code == 0, r.output
    suite = load_suite(path, SMOKE)
    for p in suite.protocols:
        for v in suite.variants:
            for seed in (0, 1):
                summary = read_json(results / p.name / v / f"seed-{seed}" / "summary.json")
                assert summary["status"] in ("complete", "diverged"), (p.name, v, summary.get("error"))
                if summary["status"] == "complete" and "probe" in p.metrics:
                    assert 0 <= summary["final"]["probe_acc"] <= 1
    out = tmp_path / "report.md"
    r = CliRunner().invoke(main, ["report", "--results", str(results), "--format", "md", "--out", str(out)])
    assert r.exit_code == 0, r.output
    text = out.read_text()
    assert all(v in text for v in suite.variants)


@pytest.mark.parametrize("tables, message", [
    ('[[protocols]]\nd_width = 8\n', "each with its own name"),
    ('[[protocols]]\nname = "a"\n[[protocols]]\nname = "a"\n', "two [[protocols]] tables share a name"),
    ('[[protocols]]\nname = "a"\nd_wdth = 8\n', "unknown protocol key 'd_wdth'; did you mean: d_width"),
])
def test_malformed_protocols_tables_exit_2_with_one_line(tmp_path, tables, message):
    path = tmp_path / "bad.toml"
    path.write_text('variants = ["dcgan"]\n[protocol]\nbase = "smoke"\n' + tables)
    r = CliRunner().invoke(main, ["run", "--suite", str(path), "--results", str(tmp_path / "res")])
    assert r.exit_code == 2 and message in r.output and str(path) in r.output and "Traceback" not in r.output


def test_suite_file_runs_its_variants_and_seeds(tmp_path):
    suite = tmp_path / "tiny.toml"
    suite.write_text('variants = ["dcgan", "d-relu"]\nseeds = [5]\n[protocol]\nbase = "smoke"\nsteps = 10\nmetrics = []\n')
    r = CliRunner().invoke(main, ["run", "--suite", str(suite), "--results", str(tmp_path / "res")])
    assert r.exit_code == 0, r.output
    for v in ("dcgan", "d-relu"):
        s = json.loads((tmp_path / "res" / "tiny" / v / "seed-5" / "summary.json").read_text())
        assert s["status"] == "complete" and s["steps"] == 10
