"""The report: loading records (and naming the bad ones), aggregation, verdicts on records whose answer is
known, every output format on a real small suite, and the HTML page in a real headless browser."""

import io
import json
import math
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from ganbench import report as rep
from ganbench.report.load import _collapsed
from ganbench.cli import main
from ganbench.files import write_json, write_jsonl

# ---- hand-made run records ---------------------------------------------------------------------------


def write_run(root, variant, seed, final, *, protocol="unit", rule="R1", expects=None, status="complete",
              device="cpu", steps=(10, 20), precision=None, fids=None):
    """A run record as the trainer writes it: spec.json, summary.json, metrics.jsonl (the final values
    reached linearly from 1.5x at the first evaluation, or ``fids``, one per step)."""
    d = root / protocol / variant / f"seed-{seed}"
    rows = []
    for i, step in enumerate(steps):
        scale = 1.5 - 0.5 * i / max(len(steps) - 1, 1)
        row = {"step": step, "images_seen": step * 32, "g_loss": 1.0, "d_loss": 1.2}
        row.update({k: v * scale if k == "fid" else v for k, v in final.items()})
        if fids is not None:                         # a given FID curve instead
            row["fid"] = fids[i]
        rows.append(row)
    if status == "diverged":
        rows[-1] = {"step": steps[-1], "images_seen": steps[-1] * 32, "g_loss": math.nan, "d_loss": math.nan,
                    "diverged": 1.0}
    write_json(d / "spec.json", {
        "schema": 1, "run_id": f"{variant}-{seed}", "seed": seed,
        "protocol": {"name": protocol, "steps": steps[-1], "dataset": "digits"},
        "variant": {"name": variant, "rule": rule, "description": f"{variant} (test)", "claim": "",
                    "expects": expects or {}, "optim": {}},
        "arch": {}, "dataset": {"name": "digits", "family": "digits"},
        "environment": {"device": device, "torch": "x", "git_commit": "abc",
                        **({"precision": precision} if precision else {})},
    })
    write_jsonl(d / "metrics.jsonl", rows)
    write_json(d / "summary.json", {"schema": 1, "status": status, "step": steps[-1], "steps": steps[-1],
                                    "train_seconds": 1.0, "final": rows[-1]})
    return d


BASE_FID = [100.0, 102.0, 98.0, 101.0, 99.0, 100.5, 99.5, 100.0]     # 8 seeds: Welch's test


def _fids(values):
    return [{"fid": v, "modes": 10.0, "train_ips": 100.0} for v in values]


def _around(centre, spread=1.0):
    return [centre + spread * d for d in (0.0, 2.0, -2.0, 1.0, -1.0, 0.5, -0.5, 0.0)]


# variant -> (rule, expects, final rows, status); the expected verdict per claim is in KNOWN
CASES = {
    # a clear effect in the claimed direction
    "worse-fid": ("R1", {"fid": "worse"}, _fids(_around(130.0)), "complete"),
    # modes: higher is better, so fewer modes is "worse"
    "fewer-modes": ("R1", {"modes": "worse"},
                    [{"fid": 100.0, "modes": m, "train_ips": 100.0} for m in _around(3.0, 0.5)], "complete"),
    # the opposite effect
    "better-fid": ("R2", {"fid": "worse"}, _fids(_around(70.0)), "complete"),
    # no effect
    "null-fid": ("R3", {"fid": "worse"}, _fids([101.0, 99.0, 100.0, 98.0, 102.0, 100.0, 99.5, 100.5]), "complete"),
    # "same", and it is the same (equivalence within 15%, by TOST)
    "same-fid": ("R3", {"fid": "same"}, _fids(_around(100.5, 0.8)), "complete"),
    # "same", and it clearly differs
    "same-but-differs": ("R4", {"fid": "same"}, _fids(_around(130.0)), "complete"),
    # "same", not significant, but far too noisy to show sameness within 15%
    "same-but-noisy": ("R4", {"fid": "same"}, _fids([60.0, 180.0, 120.0, 90.0, 150.0, 70.0, 160.0, 100.0]), "complete"),
    # a prefix naming two recorded metrics, both worse (higher: oscillation is better low)
    "oscillates": ("R5", {"loss_oscillation": "worse"},
                   [{"fid": 100.0, "loss_oscillation_g": 1.0 + s / 10, "loss_oscillation_d": 2.0 + s / 10}
                    for s in range(8)], "complete"),
    # a claim about a metric that no run recorded
    "unrecorded": ("R5", {"sharpness": "worse"}, _fids(BASE_FID), "complete"),
    # every seed diverged: Fisher's exact test on the counts, 8/8 vs 0/8
    "diverges": ("R5", {"diverged": "worse"}, [{} for _ in range(8)], "diverged"),
    # a plugin's variant with a rule of its own: it gets a rule verdict too
    "plugin-v": ("my-rule", {"fid": "worse"}, _fids(_around(130.0)), "complete"),
}
KNOWN = {
    ("worse-fid", "fid"): "supported",
    ("fewer-modes", "modes"): "supported",
    ("better-fid", "fid"): "contradicted",
    ("null-fid", "fid"): "inconclusive",
    ("same-fid", "fid"): "supported",
    ("same-but-differs", "fid"): "contradicted",
    ("same-but-noisy", "fid"): "underpowered",
    ("oscillates", "loss_oscillation_g"): "supported",
    ("oscillates", "loss_oscillation_d"): "supported",
    ("unrecorded", "sharpness"): "untested",
    ("diverges", "diverged"): "supported",
    ("plugin-v", "fid"): "supported",
}


@pytest.fixture(scope="module")
def report_known(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-known")
    for seed, fid in enumerate(BASE_FID):
        write_run(root, "dcgan", seed, {"fid": fid, "modes": 10.0, "train_ips": 100.0,
                                        "loss_oscillation_g": 0.5, "loss_oscillation_d": 0.6 + seed / 100},
                  rule="-")
    for name, (rule, expects, finals, status) in CASES.items():
        for seed, final in enumerate(finals):
            write_run(root, name, seed, final, rule=rule, expects=expects, status=status)
    return root


def test_verdicts_on_records_with_a_known_answer(report_known):
    r = rep.build_report(report_known)
    mine = r.claims[r.claims["variant"].isin(list(CASES))]
    got = {(c.variant, c.metric): c.verdict for c in mine.itertuples()}
    assert got == KNOWN
    claims = mine.set_index(["variant", "metric"])
    assert claims.loc[("unrecorded", "sharpness"), "reason"] == "sharpness not recorded"
    div = claims.loc[("diverges", "diverged")]
    assert div["test"] == "fisher (exact)" and div["p_value"] == pytest.approx(stats.fisher_exact([[8, 0], [0, 8]]).pvalue)
    assert (div["center_variant"], div["center_baseline"]) == (1.0, 0.0)
    worse = claims.loc[("worse-fid", "fid")]
    logs = np.log(_around(130.0)), np.log(BASE_FID)
    assert worse["test"] == "welch" and worse["scale"] == "log-ratio"
    assert worse["p_value"] == pytest.approx(stats.ttest_ind(*logs, equal_var=False).pvalue)
    assert math.exp(worse["estimate"]) == pytest.approx(math.exp(logs[0].mean() - logs[1].mean()))
    assert worse["effect"].startswith("1.3") and "x [" in worse["effect"]
    # every built-in claim is accounted for: none of its variants ran here, so it is untested, saying so
    builtin = r.claims[r.claims["claim"] == "R6.lr"].iloc[0]
    assert builtin["verdict"] == "untested" and "not run in this study" in builtin["reason"]
    assert r.claims[r.claims["claim"] == "R4.colour"].iloc[0]["verdict"] == "untested"


def test_the_correction_covers_every_primary_comparison(report_known):
    from ganbench.statistics import adjust_pvalues

    r = rep.build_report(report_known)
    tested = r.claims[r.claims["verdict"] != "untested"]
    assert list(tested["p_adjusted"]) == pytest.approx(adjust_pvalues(list(tested["p_value"]), "holm"), nan_ok=True)
    assert (tested["p_adjusted"] >= tested["p_value"]).all()
    none = rep.build_report(report_known, correction="none").claims
    tested_none = none[none["verdict"] != "untested"]
    assert list(tested_none["p_adjusted"]) == pytest.approx(list(tested_none["p_value"]), nan_ok=True)
    with pytest.raises(rep.ReportError, match="use one of holm, bh, none"):
        rep.build_report(report_known, correction="bonferroni")


def test_a_study_designed_with_more_comparisons_is_corrected_across_all_of_them(report_known):
    """``--comparisons M``: an interim report of a study whose design fixed M primary comparisons corrects
    across M, the ones not yet run counting as never significant: its adjusted p-values are those of the
    tested ones padded with p = 1, its MDEs are at alpha / M, and a family smaller than what it tests is a
    user's mistake (one line, exit 2)."""
    from ganbench.statistics import adjust_pvalues

    alone = rep.build_report(report_known)
    tested = alone.claims[alone.claims["verdict"] != "untested"]
    n = int(np.isfinite(tested["p_value"]).sum())
    r = rep.build_report(report_known, family=n + 10)
    part = r.claims[r.claims["verdict"] != "untested"]
    pvalues = list(part["p_value"])
    padded = adjust_pvalues([p for p in pvalues if math.isfinite(p)] + [1.0] * 10, "holm")[:n]
    assert [p for p in part["p_adjusted"] if math.isfinite(p)] == pytest.approx(padded)
    assert (part["p_adjusted"].fillna(0) >= tested["p_adjusted"].fillna(0)).all()
    assert (part["p_adjusted"] > tested["p_adjusted"]).any()
    assert any(f"alpha/{n + 10}" in reason for reason in part["reason"])
    assert f"a family of {n + 10} fixed by the study's design" in rep.definitions(r.settings)["correction"]
    same = rep.build_report(report_known, family=n).claims
    assert list(same["p_adjusted"]) == pytest.approx(list(alone.claims["p_adjusted"]), nan_ok=True)
    with pytest.raises(rep.ReportError, match=f"--comparisons {n - 1}: the report holds {n} primary comparisons"):
        rep.build_report(report_known, family=n - 1)
    out = CliRunner().invoke(main, ["report", "--results", str(report_known), "--comparisons", str(n - 1)])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert f"the report holds {n} primary comparisons" in out.output
    shown = CliRunner().invoke(main, ["report", "--results", str(report_known), "--comparisons", str(n + 10),
                                      "--format", "md"])
    assert shown.exit_code == 0 and f"correction across the design's {n + 10} comparisons" in shown.output


def test_claim_and_rule_verdicts_combine_their_parts(report_known):
    r = rep.build_report(report_known)
    rules = r.rules.set_index("rule")
    assert set(rules.index) == {"R1", "R2", "R3", "R4", "R5", "R6", "my-rule"}   # a plugin's rule gets a verdict
    assert rules.loc["R1", "verdict"] == "supported"
    assert rules.loc["R2", "verdict"] == "contradicted"
    assert rules.loc["R3", "verdict"] == "supported"        # one supported, one inconclusive, none contradicted
    assert rules.loc["R4", "verdict"] == "contradicted"     # one contradicted, one underpowered
    assert rules.loc["R5", "verdict"] == "supported"        # the untested claim is set aside
    assert rules.loc["R6", "verdict"] == "untested" and rules.loc["my-rule", "verdict"] == "supported"
    per_claim = r.claim_verdicts.set_index("claim")
    assert per_claim.loc["R5.oscillates", "verdict"] == "supported"     # both parts of the prefix support it
    assert r.variants.set_index("variant").loc["dcgan", "verdict"] == "baseline"


def test_three_seeds_cannot_be_significant_and_say_so(tmp_path):
    for seed, (b, v) in enumerate(zip((100.0, 101.0, 99.0), (150.0, 151.0, 149.0))):
        write_run(tmp_path, "dcgan", seed, {"fid": b, "diverged": 0.0}, rule="-")
        write_run(tmp_path, "worse", seed, {"fid": v}, rule="R1", expects={"fid": "worse"})
        write_run(tmp_path, "dies", seed, {}, rule="R1", expects={"diverged": "worse"}, status="diverged")
    r = rep.build_report(tmp_path, correction="none")
    claims = r.claims.set_index("variant")
    worse = claims.loc["worse"]
    assert worse["test"].startswith("permutation") and worse["p_value"] == pytest.approx(0.1)   # 2 / C(6, 3)
    assert worse["p_value"] >= 0.1 and worse["verdict"] == "underpowered"
    dies = claims.loc["dies"]                                   # 3/3 against 0/3: Fisher p = 0.1
    assert dies["p_value"] == pytest.approx(0.1) and dies["verdict"] == "underpowered"
    assert "cannot reach p < 0.05" in dies["reason"]


def test_verdicts_that_no_outcome_could_make_significant_after_the_correction_say_underpowered(tmp_path):
    # two variants at 4 seeds each against the baseline, perfectly separated: alone each would pass
    # (p = 2/C(8, 4) = 0.029), but Holm's first step over 2 comparisons needs p < 0.025, which 4 vs 4 cannot give
    base = (100.0, 101.0, 99.0, 102.0)
    for seed, b in enumerate(base):
        write_run(tmp_path, "dcgan", seed, {"fid": b}, rule="-")
        for k, name in enumerate(("worse-a", "worse-b")):
            write_run(tmp_path, name, seed, {"fid": b * (1.5 + k / 10)}, rule="R1", expects={"fid": "worse"})
    alone = rep.build_report(tmp_path, correction="none").claims.set_index("variant")
    assert (alone.loc[["worse-a", "worse-b"], "verdict"] == "supported").all()
    held = rep.build_report(tmp_path).claims.set_index("variant")
    for name in ("worse-a", "worse-b"):
        row = held.loc[name]
        assert row["p_adjusted"] == pytest.approx(2 * 2 / 70) and row["verdict"] == "underpowered"
        assert "after the correction across 2 comparisons" in row["reason"]


def test_the_instability_table_counts_failed_runs_and_tests_them_as_one_family(tmp_path):
    steps = (1000, 2000, 3000, 4000)
    for seed in range(8):
        write_run(tmp_path, "dcgan", seed, {"fid": 60.0, "precision": 0.5, "modes": 10.0}, rule="-", steps=steps)
        # 6 of 8 break down (a best FID of 60, then 1,000), none diverge; the other two drift 1.5x
        fids = (90.0, 60.0, 70.0, 1000.0 if seed < 6 else 90.0)
        write_run(tmp_path, "fragile", seed, {"fid": fids[-1], "precision": 0.5, "modes": 10.0}, steps=steps,
                  fids=fids)
        # 2 of 8 diverge, 1 collapses to one mode, the rest are fine
        status = "diverged" if seed < 2 else "complete"
        write_run(tmp_path, "mixed", seed, {"fid": 60.0, "precision": 0.5, "modes": 1.0 if seed == 2 else 10.0},
                  status=status, steps=steps)
    r = rep.build_report(tmp_path)
    table = r.instability.set_index("variant")
    fragile, mixed = table.loc["fragile"], table.loc["mixed"]
    assert fragile["broke_down"] == "6/8 vs 0/8" and fragile["unstable"] == "6/8 vs 0/8"
    assert fragile["diverged"] == "0/8 vs 0/8"
    assert mixed["diverged"] == "2/8 vs 0/8" and mixed["collapsed"] == "1/8 vs 0/8"
    assert mixed["unstable"] == "3/8 vs 0/8"
    p_fragile = stats.fisher_exact([[6, 2], [0, 8]]).pvalue
    p_mixed = stats.fisher_exact([[3, 5], [0, 8]]).pvalue
    assert fragile["p_value"] == pytest.approx(p_fragile) and mixed["p_value"] == pytest.approx(p_mixed)
    from ganbench.statistics import adjust_pvalues
    assert [fragile["p_adjusted"], mixed["p_adjusted"]] == pytest.approx(adjust_pvalues([p_fragile, p_mixed]))
    assert fragile["changed"] == "more" and mixed["changed"] == "no difference shown"
    assert fragile["effect"].startswith("+0.75")
    md = rep.render(r, "md")
    assert "### Instability" in md and "6/8 vs 0/8" in md


def test_aggregates_are_the_textbook_numbers(report_known):
    r = rep.build_report(report_known)
    agg = r.aggregates.set_index(["variant", "metric"])
    fid = agg.loc[("dcgan", "fid")]
    half = stats.t.ppf(0.975, 7) * np.std(BASE_FID, ddof=1) / math.sqrt(8)
    assert (fid["n"], fid["runs"], fid["better"]) == (8, 8, "lower")
    assert fid["mean"] == pytest.approx(np.mean(BASE_FID)) and fid["median"] == pytest.approx(np.median(BASE_FID))
    assert fid["ci_low"] == pytest.approx(np.mean(BASE_FID) - half) and fid["ci_high"] == pytest.approx(np.mean(BASE_FID) + half)
    assert (fid["worst"], fid["best"]) == (102.0, 98.0)              # lower is better
    modes = agg.loc[("fewer-modes", "modes")]
    assert (modes["worst"], modes["best"]) == (2.0, 4.0)            # higher is better
    assert agg.loc[("diverges", "diverged"), "mean"] == 1.0          # the share of seeds that diverged
    assert ("diverges", "fid") not in agg.index                      # a diverged run has no FID
    # the final FID and the best FID (from the curve) side by side in the summary table
    summary = rep.display_tables(r)[2]
    assert "fid (final)" in summary.columns


def test_collapse_is_defined_by_modes_or_d_winning():
    assert _collapsed({"modes": 1.0, "d_wins": 0.0}) == 1.0
    assert _collapsed({"modes": 7.0, "d_wins": 1.0}) == 1.0
    assert _collapsed({"modes": 7.0, "d_wins": 0.0}) == 0.0
    assert math.isnan(_collapsed({}))
    assert _collapsed({"modes": 1.0, "diverged": 1.0}) == 0.0    # counted as diverged instead


def test_a_truncated_file_an_empty_folder_and_a_running_run_are_named_and_skipped(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "dcgan", seed, {"fid": 100.0 + seed}, rule="-")
        write_run(tmp_path, "no-bn", seed, {"fid": 120.0 + seed}, rule="R2", expects={"fid": "worse"})
    truncated = write_run(tmp_path, "no-bn", 3, {"fid": 500.0}, rule="R2")
    text = (truncated / "summary.json").read_text()
    (truncated / "summary.json").write_text(text[: len(text) // 2])
    empty = tmp_path / "unit" / "no-bn" / "seed-4"
    empty.mkdir()
    running = write_run(tmp_path, "dcgan", 5, {"fid": 1.0}, rule="-")
    write_json(running / "summary.json", {"status": "running", "step": 10})
    bad_series = write_run(tmp_path, "dcgan", 6, {"fid": 101.0}, rule="-")
    with open(bad_series / "metrics.jsonl", "a") as f:
        f.write('{"step": 30, "fid"')

    r = rep.build_report(tmp_path)
    assert sorted(set(zip(r.runs["variant"], r.runs["seed"]))) == sorted(
        [("dcgan", s) for s in (0, 1, 2, 6)] + [("no-bn", s) for s in range(3)])
    text = "\n".join(r.warnings)
    assert f"skipped {truncated}: summary.json is not valid JSON" in text
    assert f"skipped {empty}: empty run folder" in text
    assert f"skipped {running}: still running" in text
    assert f"{bad_series}: metrics.jsonl line 3 is not valid JSON" in text
    assert 500.0 not in set(r.runs["fid"])

    out = CliRunner().invoke(main, ["report", "--results", str(tmp_path), "--format", "md"])
    assert out.exit_code == 0, out.output
    assert str(truncated) in out.stderr and str(empty) in out.stderr
    assert "no-bn" in out.stdout and "### Warnings" in out.stdout


def test_mixed_devices_give_throughput_from_one_device_and_a_warning(tmp_path):
    for seed in range(3):
        write_run(tmp_path, "dcgan", seed, {"fid": 100.0, "train_ips": 100.0}, rule="-")
        write_run(tmp_path, "no-bn", seed, {"fid": 100.0, "train_ips": 200.0}, rule="R2")
    write_run(tmp_path, "no-bn", 3, {"fid": 100.0, "train_ips": 9000.0}, rule="R2", device="cuda:0")
    r = rep.build_report(tmp_path)
    tp = r.throughput.set_index("variant")
    assert set(tp["device"]) == {"cpu"} and tp.loc["no-bn", "train_ips"] == 200.0
    assert any("different devices" in w and "cuda:0 (1 runs)" in w for w in r.warnings)


def test_runs_trained_at_two_precisions_in_one_protocol_are_named(tmp_path):
    """The default precision is bf16 on a GPU and fp32 on a CPU: a study moved between them mixes, and the
    report says which arms trained at which; a protocol at one precision (or records without it) says nothing."""
    for seed in range(3):
        write_run(tmp_path, "dcgan", seed, {"fid": 100.0, "precision": 0.5}, rule="-", precision="fp32")
        write_run(tmp_path, "no-bn", seed, {"fid": 100.0, "precision": 0.5}, rule="R2", precision="bf16", device="cuda:0")
        write_run(tmp_path, "dcgan", seed, {"fid": 100.0}, rule="-", precision="fp32", protocol="one")
        write_run(tmp_path, "dcgan", seed, {"fid": 100.0}, rule="-", protocol="old")
    loaded = rep.load_results(tmp_path)
    assert set(loaded.runs["train_dtype"]) == {"fp32", "bf16", ""}
    assert set(loaded.runs.loc[loaded.runs["protocol"] == "unit", "precision"]) == {0.5}   # quality's score keeps its name
    mixed = [w for w in loaded.warnings if "different precisions" in w]
    assert len(mixed) == 1 and "'unit'" in mixed[0]
    assert "bf16: 3 runs (no-bn)" in mixed[0] and "fp32: 3 runs (dcgan)" in mixed[0]


def test_runs_are_judged_as_they_stood_at_one_of_their_evaluations(tmp_path):
    """--at-step S: each run's row at S is its final (a run still training counts once it has evaluated at S,
    a run that diverged after S was fine at S); a final row scored on more images gives its FID at the other
    evaluations' sample size; a run without an evaluation at S is skipped, named."""
    steps = (10, 20, 30)
    for seed in range(3):
        d = write_run(tmp_path, "dcgan", seed, {"fid": 100.0 + seed}, rule="-", steps=steps)
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
        for row in rows:   # as the trainer writes it: the final on more images, fid_n_eval on as many as before
            row["fid_n_eval"] = row["fid"] if row is not rows[-1] else 110.0 + seed
        write_jsonl(d / "metrics.jsonl", rows)
    write_run(tmp_path, "adam-lr-1e-3", 0, {"fid": 200.0}, rule="R6", steps=steps, status="diverged")
    write_run(tmp_path, "adam-lr-1e-3", 1, {"fid": 200.0}, rule="R6", steps=(10, 20), status="running")
    write_run(tmp_path, "adam-lr-1e-3", 2, {"fid": 200.0}, rule="R6", steps=(10, 25))
    at_20 = rep.load_results(tmp_path, at_step=20)
    runs = at_20.runs.set_index(["variant", "seed"])
    assert sorted(runs.index) == [("adam-lr-1e-3", 0), ("adam-lr-1e-3", 1), ("dcgan", 0), ("dcgan", 1), ("dcgan", 2)]
    assert runs.loc[("dcgan", 1), "fid"] == pytest.approx(101.0 * 1.25)   # the row at 20 of 1.5x -> 1x
    assert list(runs.loc[("adam-lr-1e-3", 0), ["status", "diverged", "step"]]) == ["complete", 0.0, 20]
    assert runs.loc[("adam-lr-1e-3", 1), "fid"] == pytest.approx(200.0)           # still training, evaluated at 20
    assert set(at_20.series["step"]) == {10, 20}
    assert any("adam-lr-1e-3/seed-2" in w and "no evaluation at step 20" in w for w in at_20.warnings)
    at_30 = rep.load_results(tmp_path, at_step=30).runs.set_index(["variant", "seed"])
    assert at_30.loc[("dcgan", 2), "fid"] == pytest.approx(112.0)           # fid_n_eval, not the final's fid
    assert at_30.loc[("adam-lr-1e-3", 0), "status"] == "diverged" and ("adam-lr-1e-3", 1) not in at_30.index
    r = CliRunner().invoke(main, ["report", "--results", str(tmp_path), "--at-step", "15", "--format", "md"])
    assert r.exit_code == 2 and "no run under" in r.output and "evaluation at step 15" in r.output
    for fmt in ("md", "table"):
        r = CliRunner().invoke(main, ["report", "--results", str(tmp_path), "--at-step", "20", "--format", fmt])
        assert r.exit_code == 0 and "as it stood after its evaluation at step 20" in " ".join(r.output.split())
    r = CliRunner().invoke(main, ["plan", str(tmp_path), "--at-step", "20", "--format", "json"])
    assert r.exit_code == 0, r.output
    (row,) = [x for x in json.loads(r.output) if x["claim"] == "R6.lr"]
    from ganbench import statistics as st
    expected_sd = st.pooled_sd(np.log([250.0, 200.0]), np.log([125.0, 126.25, 127.5]))   # the FIDs at step 20
    assert row["n"] == "2 vs 3" and row["log_fid_sd"] == pytest.approx(expected_sd)


def test_user_mistakes_exit_2_with_one_line(report_known, tmp_path):
    def run(*args):
        return CliRunner().invoke(main, ["report", *args])

    r = run("--results", str(report_known), "--baseline", "dcgn")
    assert r.exit_code == 2 and "did you mean: dcgan" in r.stderr and "Traceback" not in r.output
    r = run("--results", str(report_known), "--protocol", "unt")
    assert r.exit_code == 2 and "protocols there: unit" in r.stderr
    r = run("--results", str(tmp_path / "none"))
    assert r.exit_code == 2 and "no such results folder" in r.stderr
    r = run("--results", str(tmp_path))
    assert r.exit_code == 2 and "no finished runs" in r.stderr
    r = run("--results", str(report_known), "--out", str(tmp_path / "r.txt"))
    assert r.exit_code == 2 and "cannot tell the format" in r.stderr


def _csv_matches(text, aggregates):
    back = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])
    assert list(back.columns) == list(aggregates.columns)
    for col in aggregates.columns:
        if pd.api.types.is_numeric_dtype(aggregates[col]):
            np.testing.assert_array_equal(back[col].to_numpy(float), aggregates[col].to_numpy(float))
        else:
            assert list(back[col].fillna("").astype(str)) == list(aggregates[col].astype(str)), col


def test_csv_parses_back_to_the_same_numbers(report_known):
    r = rep.build_report(report_known)
    _csv_matches(rep.render(r, "csv"), r.aggregates)


# ---- a real small suite ------------------------------------------------------------------------------

SMOKE_VARIANTS = ("dcgan", "no-bn", "bn-all")


@pytest.mark.parametrize("fmt", ["md", "csv", "html", "json", "table"])
def test_every_format_from_real_runs_names_every_variant(report_smoke_results, tmp_path, fmt):
    args = ["report", "--results", str(report_smoke_results)]
    if fmt == "table":
        r = CliRunner().invoke(main, args, catch_exceptions=False)
        assert r.exit_code == 0, r.output
        text = r.stdout
    else:
        out = tmp_path / f"report.{fmt}"
        r = CliRunner().invoke(main, [*args, "--out", str(out)], catch_exceptions=False)   # format from the suffix
        assert r.exit_code == 0, r.output
        text = out.read_text()
    assert r.stderr == ""                               # every record was readable: no warnings
    for v in SMOKE_VARIANTS:
        assert v in text
    if fmt == "json":
        doc = json.loads(text)
        assert {v["variant"] for v in doc["variants"]} == set(SMOKE_VARIANTS)
        assert [x["rule"] for x in doc["rules"]] == ["R1", "R2", "R3", "R4", "R5", "R6"]
        r2 = next(x for x in doc["rules"] if x["rule"] == "R2")
        assert r2["verdict"] in rep.VERDICTS and "R2.collapse" in r2["claims"]
        tested = {(c["claim"], c["variant"]) for c in doc["claims"] if c["verdict"] != "untested"}
        assert ("R2.collapse", "no-bn") in tested and ("R2.bn-all-oscillation", "bn-all") in tested
    if fmt == "md":
        assert "### Verdicts per rule" in text and "| R2 |" in text


def test_csv_from_real_runs_parses_back_to_the_same_numbers(report_smoke_results):
    r = CliRunner().invoke(main, ["report", "--results", str(report_smoke_results), "--format", "csv"])
    assert r.exit_code == 0, r.output
    report = rep.build_report(report_smoke_results)
    _csv_matches(r.stdout, report.aggregates)
    back = pd.read_csv(io.StringIO(r.stdout))
    assert set(back["variant"]) == set(SMOKE_VARIANTS)
    assert {"fid", "fid_best", "modes", "sample_oscillation", "train_ips", "diverged", "collapsed"} <= set(back["metric"])
    # and the numbers are those of the run records
    fid = back[(back["variant"] == "no-bn") & (back["metric"] == "fid")].iloc[0]
    finals = [json.loads((report_smoke_results / "smoke" / "no-bn" / f"seed-{s}" / "summary.json").read_text())["final"]["fid"]
              for s in range(3)]
    assert fid["mean"] == pytest.approx(np.mean(finals), rel=1e-12) and fid["n"] == 3


def _distinct_colours(png) -> int:
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB"))
    return len(np.unique(img.reshape(-1, 3), axis=0))


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_html_page_renders_tables_and_plots_in_a_headless_browser(report_smoke_results, tmp_path):
    page = tmp_path / "report.html"
    r = CliRunner().invoke(main, ["report", "--results", str(report_smoke_results), "--format", "html", "--out", str(page)])
    assert r.exit_code == 0, r.output
    text = page.read_text()
    # one self-contained file: every image is a data URI, nothing is fetched
    srcs = [s.split("'")[0] for s in text.split("src='")[1:]]
    assert len(srcs) >= 4 + len(SMOKE_VARIANTS) and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "http://" not in text and "https://" not in text
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1400,3000",
                    page.as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image

    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (3000, 1400)
    assert _distinct_colours(shot) > 200               # plots (anti-aliased lines, bands) and text, not one colour
    ink = (img.sum(axis=2) < 600).mean(axis=1)          # the share of non-white pixels per row
    assert (ink[:300] > 0.01).sum() > 50                # the tables at the top of the page
    assert (ink[300:2500] > 0.05).sum() > 300           # the plots further down


def test_protocols_are_judged_apart_and_can_be_picked(tmp_path):
    for proto, shift in (("a", 30.0), ("b", 0.0)):
        for seed, fid in enumerate(BASE_FID):
            write_run(tmp_path, "dcgan", seed, {"fid": fid}, protocol=proto, rule="-")
            write_run(tmp_path, "d-maxpool", seed, {"fid": fid + shift + seed / 10}, protocol=proto, rule="R1",
                      expects={"fid": "worse"})
    r = rep.build_report(tmp_path)
    assert len(r.rules) == 12
    r1 = r.rules[r.rules["rule"] == "R1"].set_index("protocol")["verdict"]
    assert (r1["a"], r1["b"]) == ("supported", "inconclusive")
    only_b = rep.build_report(tmp_path, protocol="b")
    assert set(only_b.runs["protocol"]) == {"b"} and len(only_b.rules) == 6
    assert "protocol" in rep.display_tables(r)[0].columns and "protocol" not in rep.display_tables(only_b)[0].columns
    write_run(tmp_path, "dcgan", 0, {"fid": 100.0}, protocol="c", rule="-")
    r = CliRunner().invoke(main, ["report", "--results", str(tmp_path), "--protocol", "a", "--protocol", "b",
                                  "--format", "json"])
    assert r.exit_code == 0, r.output
    assert {run["protocol"] for run in json.loads(r.stdout)["runs"]} == {"a", "b"}     # c left out
    r = CliRunner().invoke(main, ["report", "--results", str(tmp_path), "--protocol", "a", "--protocol", "bb"])
    assert r.exit_code == 2 and "no runs of protocol 'bb'" in r.stderr and "did you mean b" in r.stderr


def test_best_fid_comes_from_the_curve_when_not_recorded(tmp_path):
    for seed in range(2):
        write_run(tmp_path, "dcgan", seed, {"fid": 100.0}, rule="-", steps=(10, 20, 30))
    loaded = rep.load_results(tmp_path)
    runs, series, warnings = loaded.runs, loaded.series, loaded.warnings
    assert list(runs["fid_best"]) == [100.0, 100.0] and warnings == []
    fid = series[series["metric"] == "fid"]
    assert list(fid["value"][:3]) == [150.0, 125.0, 100.0] and list(fid["images_seen"][:3]) == [320, 640, 960]


@pytest.mark.parametrize("fmt", rep.FORMATS)
def test_every_format_renders_diverged_runs_and_plugin_variants(report_known, fmt):
    text = rep.render(rep.build_report(report_known), fmt)
    for name in CASES:
        assert name in text
    if fmt == "json":
        json.loads(text)        # strict JSON: NaN became null
        assert "NaN" not in text


def test_representation_compares_what_training_added_to_the_untrained_network(tmp_path):
    base = [0.90, 0.91, 0.89, 0.90]
    for seed, acc in enumerate(base):
        write_run(tmp_path, "dcgan", seed, {"fid": 100.0, "probe_acc": acc, "probe_random_acc": 0.70}, rule="-")
    cases = {"hurts": ("R1", [0.80, 0.81, 0.79, 0.80], 0.70),   # trained lower, same untrained: lower gain
             "free": ("R2", [0.95, 0.96, 0.94, 0.95], 0.75),    # higher, but the architecture gives it for free
             "null": ("R3", [0.90, 0.89, 0.91, 0.90], 0.70)}
    for name, (rule, accs, untrained) in cases.items():
        for seed, acc in enumerate(accs):
            write_run(tmp_path, name, seed, {"fid": 100.0, "probe_acc": acc, "probe_random_acc": untrained + seed / 1000},
                      rule=rule)
    write_run(tmp_path, "unprobed", 0, {"fid": 100.0}, rule="R4")
    r = rep.build_report(tmp_path, correction="none")
    rows = r.representation.set_index("variant")
    assert rows.loc["hurts", "effect"].startswith("-0.1") and rows.loc["hurts", "test"].startswith("permutation")
    assert rows.loc["hurts", "changed"] == "lower"          # 4 vs 4 perfectly separated: exact p = 2/70
    assert rows.loc["free", "changed"] == "no change shown"  # 0.95 - 0.75 against 0.90 - 0.70: no gain
    assert abs(float(rows.loc["free", "effect"].split()[0])) < 0.01
    assert rows.loc["unprobed", "changed"] == "no test"
    md = rep.render(r, "md")
    assert "Representation" in md and "probe gain" in md


def test_representation_table_is_left_out_without_the_probe(report_known):
    r = rep.build_report(report_known)
    assert r.representation.empty and "Representation" not in rep.render(r, "md")


def test_plan_sizes_a_study_from_a_pilot_given_its_protocol_folder(tmp_path):
    from ganbench import statistics as st
    from ganbench.report.plan import plan

    fids = {"dcgan": [100.0, 108.0, 95.0], "worse": [120.0, 131.0, 112.0]}
    for variant, values in fids.items():
        for seed, fid in enumerate(values):
            write_run(tmp_path, variant, seed, {"fid": fid}, rule="-" if variant == "dcgan" else "R1",
                      expects=None if variant == "dcgan" else {"fid": "worse"})
    rows = plan(tmp_path / "unit")            # one protocol's folder works as well as the results folder
    row = rows[rows["variant"] == "worse"].iloc[0]
    sd = st.pooled_sd(np.log(fids["worse"]), np.log(fids["dcgan"]))
    assert row["log_fid_sd"] == pytest.approx(sd)
    assert row["seeds_one_test"] == st.seeds_needed_for_ratio(sd, 1.2)
    assert row["seeds_corrected"] >= row["seeds_one_test"] and row["n"] == "3 vs 3" and row["mde"].endswith("x")
    # the effect it observed (1.20x, on its own endpoint's logs) would pass at these seeds with 80% power
    observed = np.mean(np.log(fids["worse"])) - np.mean(np.log(fids["dcgan"]))
    assert row["seeds_for_effect"] == st.seeds_needed(observed, sd, 0.05) and row["seeds_for_effect"] > 3
    r = CliRunner().invoke(main, ["plan", str(tmp_path / "unit"), "--format", "json"])
    assert r.exit_code == 0 and json.loads(r.stdout)[0]["claim"] == "R1.worse"
    # a first stage of a study that will correct across 31 comparisons: its seeds at alpha / 31
    staged = plan(tmp_path / "unit", comparisons=31)
    strict = st.seeds_needed_for_ratio(sd, 1.2, 0.05 / 31)
    assert strict > row["seeds_corrected"] and staged[staged["variant"] == "worse"].iloc[0]["seeds_corrected"] == strict
    assert staged[staged["variant"] == "worse"].iloc[0]["seeds_for_effect"] == st.seeds_needed(observed, sd, 0.05 / 31)
    r = CliRunner().invoke(main, ["plan", str(tmp_path / "unit"), "--comparisons", "31", "--format", "json"])
    assert json.loads(r.stdout)[0]["seeds_corrected"] == strict
    r = CliRunner().invoke(main, ["plan", str(tmp_path / "unit"), "--comparisons", "0"])
    assert r.exit_code == 2 and "Traceback" not in r.output


def test_claims_and_rule_texts_come_from_the_records(tmp_path):
    """Records that carry their claims and rules are judged by them, whatever is installed; a claim the
    records disagree on is judged as the first record states it, with a warning."""
    from ganbench.claims import Claim

    mine = Claim("Q1.worse", "Q1", "the records' own claim", variants=("q-variant",), metric="fid", direction="worse")
    changed = Claim("R1.learn-downsampling", "R1", "the records' wording", variants=("q-variant",), metric="fid",
                    direction="worse")
    for seed, fid in enumerate(BASE_FID[:4]):
        write_run(tmp_path, "dcgan", seed, {"fid": fid}, rule="-")
        d = write_run(tmp_path, "q-variant", seed, {"fid": fid * 1.3}, rule="Q1", expects={"modes": "worse"})
        spec = json.loads((d / "spec.json").read_text())
        text = "a rule no plugin installed here knows" if seed < 3 else "a later wording"
        spec["rule"] = {"id": "Q1", "text": text, "claim": "its author's claim"}
        spec["rules"] = [spec["rule"], {"id": "R1", "text": "R1 as the records state it", "claim": ""}]
        spec["claims"] = [mine.to_dict(), changed.to_dict()] if seed < 3 else [
            {**mine.to_dict(), "direction": "better"}, {"id": "broken"}]
        (d / "spec.json").write_text(json.dumps(spec))
    r = rep.build_report(tmp_path)
    claims = r.claims.set_index("claim")
    assert claims.loc["Q1.worse", "text"] == "the records' own claim" and claims.loc["Q1.worse", "expected"] == "worse"
    assert claims.loc["Q1.worse", "verdict"] != "untested"
    assert claims.loc["R1.learn-downsampling", "text"] == "the records' wording"          # the record's version
    assert claims.loc["R1.learn-downsampling", "variant"] == "q-variant"
    assert claims.loc["R6.lr", "verdict"] == "untested"                                   # the package's, untested
    assert "Q1.q-variant" not in claims.index        # a claim names it: no claim formed from its expects
    rules = r.rules.set_index("rule")
    assert rules.loc["Q1", "paper_rule"] == "a rule no plugin installed here knows"
    assert rules.loc["Q1", "rule_claim"] == "its author's claim"
    assert rules.loc["R1", "paper_rule"] == "R1 as the records state it"
    notes = [w for w in r.warnings if "q-variant" in w and "seed-3" in w]
    assert any("claim 'Q1.worse' differs from an earlier record's" in w for w in notes)
    assert any("a claim it carries cannot be read" in w for w in notes)


def test_what_a_claim_changes_by_design_is_not_a_confound(tmp_path):
    """`adam-lr-1e-3` differs from dcgan in its learning rate, which is what R6.lr tests: not a confound; the
    same difference in an arm whose claim does not say it changes it is. Records written before claims had
    `changes` (this R6.lr) take it from the package's claim of the same id."""
    from ganbench.claims import BY_ID, Claim

    other = Claim("Q1.faster", "Q1", "a plugin's claim", variants=("q-fast",), metric="fid", direction="worse")
    old_r6 = {k: v for k, v in BY_ID["R6.lr"].to_dict().items() if k != "changes"}
    for seed, fid in enumerate(BASE_FID[:4]):
        runs = [("dcgan", "-", 2e-4, [old_r6, other.to_dict()]), ("adam-lr-1e-3", "R6", 1e-3, [old_r6]),
                ("q-fast", "Q1", 1e-3, [other.to_dict()])]
        for variant, rule, lr, claims in runs:
            d = write_run(tmp_path, variant, seed, {"fid": fid * (1.0 if variant == "dcgan" else 1.2)}, rule=rule)
            spec = json.loads((d / "spec.json").read_text())
            spec["variant"]["optim"] = {"g": {"lr": lr}, "d": {"lr": lr}}
            spec["claims"] = claims
            (d / "spec.json").write_text(json.dumps(spec))
    r = rep.build_report(tmp_path)
    assert not [w for w in r.warnings if "differs from an earlier record" in w]
    claims = r.claims.set_index("variant")
    assert claims.loc["adam-lr-1e-3", "claim"] == "R6.lr" and claims.loc["adam-lr-1e-3", "confounded"] == ""
    assert "confounded" not in claims.loc["adam-lr-1e-3", "reason"]
    assert claims.loc["q-fast", "confounded"] == "g_lr 5x, d_lr 5x"
    assert "confounded: the arms differ in g_lr 5x, d_lr 5x" in claims.loc["q-fast", "reason"]
    variants = r.variants.set_index("variant")
    assert variants.loc["adam-lr-1e-3", "confounded"] == "" and variants.loc["q-fast", "confounded"] == "g_lr 5x, d_lr 5x"


def test_runs_scored_through_different_classifier_weights_in_one_protocol_are_named(tmp_path):
    """A domain classifier trained again elsewhere has other weights, and every FID moves with them: runs of one
    protocol whose recorded digests (or, in records from before digests, classifier accuracies) differ are
    named; a digest missing from older records is no difference."""
    clf = {"quality_extractor": "ganbench-domain-mnist-32px-c1-v2", "modes_classifier_accuracy": 0.992}
    for seed in range(3):
        write_run(tmp_path, "dcgan", seed, {"fid": 100.0, **clf}, rule="-")                          # no digest
        write_run(tmp_path, "no-bn", seed, {"fid": 100.0, **clf, "quality_extractor_digest": "e36c97130b5f"}, rule="R2")
        write_run(tmp_path, "no-bn-gen", seed, {"fid": 100.0, **clf, "quality_extractor_digest": "1f864d73282a"},
                  rule="R2")
        write_run(tmp_path, "dcgan", seed, {"fid": 100.0, **clf, "modes_classifier_accuracy": 0.9912 + seed / 1e4},
                  rule="-", protocol="old")
        write_run(tmp_path, "dcgan", seed, {"fid": 100.0, **clf, "quality_extractor_digest": "e36c97130b5f"}, rule="-",
                  protocol="same")
        write_run(tmp_path, "no-bn", seed, {"fid": 100.0, **clf}, rule="R2", protocol="same")
    warnings = [w for w in rep.load_results(tmp_path).warnings if "different feature extractors" in w]
    assert len(warnings) == 2, warnings
    unit, old = sorted(warnings, key=lambda w: "'old'" in w)
    assert "'unit'" in unit and "quality_extractor_digest" in unit
    assert "1f864d73282a: 3 runs (no-bn-gen)" in unit and "e36c97130b5f: 3 runs (no-bn)" in unit and "dcgan" not in unit
    assert "'old'" in old and "modes_classifier_accuracy" in old and "0.9912: 1 runs (dcgan)" in old
