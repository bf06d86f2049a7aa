import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from ganbench.arch import ArchSpec, build
from ganbench.layers import OTHER, count_params
from ganbench.cli import main
from ganbench.describe import describe, describe_variant
from ganbench.variants import CONFOUNDS, VARIANTS, Variant

BUILTIN = {v.name: v for v in VARIANTS}
BASE = ArchSpec(resolution=32, channels=1, g_width=8, d_width=8)


def _biased(rows) -> set[str]:
    return {r["module"] for r in rows if r["bias"]}


def test_bias_column_shows_the_layers_that_lost_bn():
    info = describe(BUILTIN["no-bn"], BASE)
    assert _biased(info["layers"]["G"]) == {"project.0", "up1.0", "up2.0"}
    assert _biased(info["layers"]["D"]) == {"down1.0", "down2.0"}
    assert {r["module"]: r["bias"] for r in info["layers"]["G"]}["output.0"] is False
    assert {r["module"]: r["bias"] for r in info["layers"]["D"]}["down1.1"] is None   # an activation: no column
    paper = describe(BUILTIN["dcgan"], BASE)
    assert _biased(paper["layers"]["G"]) == _biased(paper["layers"]["D"]) == set()


@pytest.mark.parametrize("name", ["dcgan", "fc-hidden-matched", "g-maxout", "d-gap"])
def test_rows_sum_to_the_networks_parameters(name):
    info = describe(BUILTIN[name], BASE)
    for net in ("G", "D"):
        assert sum(r["params"] for r in info["layers"][net]) == info[f"{net.lower()}_params"]
        assert all(r["module"] != OTHER for r in info["layers"][net])   # every parameter sits in a listed layer


class SelfAttentionish(nn.Sequential):
    """D with a parameter registered on the container itself (as SAGAN's attention ``gamma`` is)."""

    def __init__(self, d: nn.Sequential):
        super().__init__(*d)
        self.gamma = nn.Parameter(torch.zeros(3))

    def forward(self, x):
        return super().forward(x) + self.gamma.sum()


def _gamma_builder(spec: ArchSpec):
    G, D = build(spec)
    return G, SelfAttentionish(D)


def test_parameters_in_no_leaf_layer_get_their_own_row():
    v = Variant("d-gamma", rule="extra", description="D with a gamma on its container", builder=_gamma_builder)
    info = describe(v, BASE)
    rows = info["layers"]["D"]
    assert rows[-1]["module"] == OTHER and rows[-1]["params"] == 3
    assert sum(r["params"] for r in rows) == info["d_params"] == count_params(build(BASE)[1]) + 3
    assert info["ratios"]["d_params"] > 1.0 and info["ratios"]["g_params"] == 1.0


def test_ratios_and_confounds_are_described():
    info = describe(BUILTIN["fc-hidden"], BASE)
    assert list(info["ratios"]) == list(CONFOUNDS) and info["confound_ratio"] == 1.25
    assert {"g_params", "d_params"} <= set(info["confounded"])
    assert describe(BUILTIN["d-relu"], BASE)["confounded"] == []
    assert info["primary"] == "fid" and info["arch"]["fc_hidden"] == 1


def test_what_the_claim_under_test_changes_is_not_called_a_confound():
    lr = describe_variant("adam-lr-1e-3", 16, 8, 1)     # R6.lr: the learning rate is the rule under test
    assert lr["ratios"]["g_lr"] == pytest.approx(5.0)
    assert lr["confounded"] == [] and lr["by_design"] == ["g_lr", "d_lr"]
    assert describe(BUILTIN["adam-lr-1e-3"], BASE)["confounded"] == ["g_lr", "d_lr"]   # told nothing: flagged
    r = CliRunner().invoke(main, ["show", "adam-lr-1e-3", "--resolution", "16", "--width", "8", "--channels", "1"])
    assert r.exit_code == 0, r.output
    assert "confounded" not in r.output and "changed by design (the claim it tests): g_lr, d_lr" in r.output


def test_describe_leaves_the_random_state_alone():
    torch.manual_seed(1)
    before = torch.random.get_rng_state()
    describe(BUILTIN["no-bn-he-init"], BASE)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_describe_variant_by_name_and_show_renders_bias_and_ratios():
    info = describe_variant("no-bn", 32, 8, 1)
    assert info["variant"] == "no-bn" and json.dumps(info, default=str)
    r = CliRunner().invoke(main, ["show", "no-bn", "--resolution", "32", "--width", "8", "--channels", "1"])
    assert r.exit_code == 0, r.output
    assert "bias" in r.output and "yes" in r.output and "vs dcgan: g_params" in r.output
    r = CliRunner().invoke(main, ["show", "fc-hidden", "--resolution", "32", "--width", "8", "--channels", "1"])
    assert "confounded" in r.output and "d_params" in r.output.split("confounded")[1]
