import json

import pytest
from click.testing import CliRunner

from ganbench.cli import main
from ganbench.variants import VARIANTS


def _json(*args):
    r = CliRunner().invoke(main, [*args, "--format", "json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_list_variants_json_has_every_builtin_with_its_plugin():
    rows = _json("list", "variants")
    by_name = {r["name"]: r for r in rows}
    for v in VARIANTS:
        assert by_name[v.name]["rule"] == v.rule
        assert by_name[v.name]["description"] == v.description
        assert by_name[v.name]["plugin"] == "ganbench.variants"


@pytest.mark.parametrize("what,name", [("datasets", "digits"), ("protocols", "smoke"), ("metrics", "quality")])
def test_list_other_registries(what, name):
    assert name in {r["name"] for r in _json("list", what)}


def test_list_plugins_shows_builtins_and_hooks():
    rows = {r["name"]: r for r in _json("list", "plugins")}
    assert rows["ganbench.variants"]["hooks"] == ["ganbench_rules", "ganbench_variants"]
    assert rows["ganbench.claims"]["hooks"] == ["ganbench_claims"]
    assert rows["ganbench.data"]["hooks"] == ["ganbench_datasets"]
    assert all(r["clashes"] == [] for r in rows.values())


def test_list_rules_and_claims():
    assert [r["id"] for r in _json("list", "rules")] == ["R1", "R2", "R3", "R4", "R5", "R6"]
    claims = {r["id"]: r for r in _json("list", "claims")}
    assert claims["R2.collapse"]["endpoint"] == "modes worse" and claims["R2.collapse"]["plugin"] == "ganbench.claims"
    assert _json("list", "extractors") == []          # ganbench's own are chosen by the protocol's extractor key


def test_list_table_renders():
    r = CliRunner().invoke(main, ["list"])
    assert r.exit_code == 0 and "no-bn-gen-output" in r.output


def test_show_json_matches_pytorch_example_shape_counts():
    info = _json("show", "g-conv-input", "--resolution", "64", "--width", "64", "--channels", "3")
    assert info["g_params"] == 3_576_704 - 0  # conv-transpose input, linear head: G equals the example's
    assert info["g_flops"] > 0 and info["d_flops"] > 0
    assert info["layers"]["G"][-1]["output"] == [3, 64, 64]
    assert {"g_params", "d_params", "g_flops", "d_flops", "layers"} <= set(info)


def test_show_table_lists_layers():
    r = CliRunner().invoke(main, ["show", "d-maxpool", "--resolution", "32", "--width", "16", "--channels", "1"])
    assert r.exit_code == 0, r.output
    assert "MaxPool2d" in r.output and "parameters" in r.output


def test_show_unknown_variant_exits_2_with_close_names():
    r = CliRunner().invoke(main, ["show", "no-bn-gen-outptu"])
    assert r.exit_code == 2
    assert r.output.strip().count("\n") == 0
    assert "no-bn-gen-output" in r.output and "Traceback" not in r.output


def test_show_no_such_variant():
    r = CliRunner().invoke(main, ["show", "no-such-variant"])
    assert r.exit_code == 2 and r.output.startswith("error: unknown variant 'no-such-variant'")


def test_bench_measures_each_variant_without_writing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rows = _json("bench", "--protocol", "smoke", "--variant", "dcgan", "--variant", "d-maxpool", "--steps", "3")
    assert [r["variant"] for r in rows] == ["dcgan", "d-maxpool"]
    assert all(r["train_ips"] > 0 and r["sample_ips"] > 0 and r["device"] == "cpu" for r in rows)
    assert list(tmp_path.iterdir()) == []
