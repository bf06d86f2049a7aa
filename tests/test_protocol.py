"""Protocols: presets, TOML files (with ``base``), ``--set`` overrides, and the errors a user sees."""

import pytest
from click.testing import CliRunner

from ganbench.cli import main
from ganbench.errors import GanbenchError
from ganbench.protocol import Protocol, ProtocolError, parse_override, resolve


def test_a_preset_resolves_with_overrides_parsed_as_toml():
    p = resolve("smoke", ["steps=7", 'metrics=["quality"]', "lr_scale=2"])
    assert (p.name, p.steps, p.metrics, p.lr_scale) == ("smoke", 7, ("quality",), 2.0)
    assert parse_override("precision=\"bf16\"") == ("precision", "bf16")


def test_a_protocol_file_inherits_its_base_and_is_named_after_itself(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('base = "smoke"\nsteps = 30\n')
    p = resolve(str(path))
    assert p.steps == 30 and p.resolution == resolve("smoke").resolution and p.name == "smoke"
    path.write_text('steps = 30\n')
    assert resolve(str(path)).name == "mine"


def test_an_unknown_key_names_the_closest_and_a_bad_value_what_is_allowed():
    with pytest.raises(ProtocolError, match="unknown protocol key 'stepz'; did you mean: steps"):
        resolve("smoke", ["stepz=5"])
    with pytest.raises(ProtocolError, match="steps=-3 is not allowed; expected an integer >= 1"):
        resolve("smoke", ["steps=-3"])
    with pytest.raises(GanbenchError, match="did you mean: smoke"):
        resolve("smok")


def test_validation_happens_at_construction():
    with pytest.raises(ProtocolError, match="batch_size=1 is not allowed"):
        Protocol(batch_size=1)


def test_malformed_protocol_file_names_file_key_and_allowed(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('base = "smoke"\nbatch_size = "many"\n')
    r = CliRunner().invoke(main, ["run", "--variant", "dcgan", "--protocol", str(path), "--results", str(tmp_path)])
    assert r.exit_code == 2
    assert f"{path}: batch_size='many' has the wrong type; expected an integer" in r.output
    path.write_text('base = "smoke"\nresolution = 48\n')
    r = CliRunner().invoke(main, ["run", "--variant", "dcgan", "--protocol", str(path), "--results", str(tmp_path)])
    assert r.exit_code == 2 and "resolution=48 is not allowed; expected one of 16, 32, 64, 128" in r.output
