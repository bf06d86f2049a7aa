import pytest
import torch
from torch import nn

import math

from ganbench.arch import ArchSpec, Maxout, build, discriminator_plan, fan_in, generator_plan, maxout_gain
from ganbench.layers import count_params, flops_per_image, layer_table
from ganbench.errors import SpecError


def test_pytorch_example_parameter_counts():
    # the well-known PyTorch DCGAN example: ngf = ndf = 64, nz = 100, 64 px RGB, conv-transpose input, conv head
    spec = ArchSpec(resolution=64, channels=3, g_width=64, d_width=64, g_input="convt", d_head="conv")
    G, D = build(spec)
    assert count_params(G) == 3_576_704
    assert count_params(D) == 2_765_568


def test_paper_shapes_at_64px():
    G, D = build(ArchSpec())
    rows = layer_table(G, torch.randn(1, 100))
    shapes = [r["output"] for r in rows if r["type"] in ("Unflatten", "ConvTranspose2d")]
    assert shapes == [[1024, 4, 4], [512, 8, 8], [256, 16, 16], [128, 32, 32], [3, 64, 64]]
    d_shapes = [r["output"] for r in layer_table(D, torch.randn(1, 3, 64, 64)) if r["type"] == "Conv2d"]
    assert d_shapes == [[128, 32, 32], [256, 16, 16], [512, 8, 8], [1024, 4, 4]]  # mirrored


@pytest.mark.parametrize("resolution", [16, 32, 64, 128])
def test_smaller_resolutions_drop_stages(resolution):
    G, D = build(ArchSpec(resolution=resolution, g_width=8, d_width=8))
    n_up = sum(isinstance(m, nn.ConvTranspose2d) for m in G.modules())
    assert n_up == ArchSpec(resolution=resolution).stages
    x = G(torch.randn(2, 100))
    assert x.shape == (2, 3, resolution, resolution)
    assert D(x).shape == (2,)


def test_maxout_widens_the_layer_before_it():
    m = Maxout(3)
    x = torch.arange(12.0).reshape(1, 6, 1, 2)
    assert m(x).shape == (1, 2, 1, 2)
    assert m(x)[0, :, 0, 0].tolist() == [4.0, 10.0]  # max over channels {0,1,2} and {3,4,5}
    G, _ = build(ArchSpec(resolution=16, g_width=4, d_width=4, g_act="maxout", maxout_k=3))
    convs = [m for m in G.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert convs[0].out_channels == 4 * 3


def test_kernel_size_odd_and_even_keep_shapes():
    for k in (3, 4, 5, 6):
        G, D = build(ArchSpec(resolution=32, g_width=4, d_width=4, kernel=k))
        x = G(torch.randn(2, 100))
        assert x.shape == (2, 3, 32, 32)
        assert D(x).shape == (2,)


def test_bn_placement_layer_by_layer():
    spec = ArchSpec(resolution=16, g_width=4, d_width=4, g_bn=(True, False, True), d_bn=(False, True))
    G, D = build(spec)
    assert any(isinstance(m, nn.BatchNorm2d) for m in G.output)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in G.up1)
    assert any(isinstance(m, nn.BatchNorm2d) for m in G.project)
    with pytest.raises(SpecError, match="g_bn has 2 entries"):
        build(ArchSpec(resolution=16, g_bn=(True, False)))


def test_init_schemes():
    G, _ = build(ArchSpec(resolution=32, g_width=32, init="dcgan"))
    w = torch.cat([m.weight.flatten() for m in G.modules() if isinstance(m, nn.ConvTranspose2d)])
    assert abs(w.std().item() - 0.02) < 0.002
    bn = torch.cat([m.weight for m in G.modules() if isinstance(m, nn.BatchNorm2d)])
    assert abs(bn.mean().item() - 1.0) < 0.01 and bn.std().item() > 0.01
    torch.manual_seed(0)
    G2, _ = build(ArchSpec(resolution=32, g_width=32, init="default"))
    bn2 = torch.cat([m.weight for m in G2.modules() if isinstance(m, nn.BatchNorm2d)])
    assert torch.all(bn2 == 1.0)  # PyTorch's default BN weight


@pytest.mark.parametrize("field,value", [("resolution", 48), ("channels", 2), ("g_act", "gelu"),
                                         ("d_head", "attention"), ("g_bn", "some"), ("bias", "some"),
                                         ("g_fc_width", 0), ("init", "xavier")])
def test_bad_spec_names_field_and_allowed(field, value):
    with pytest.raises(SpecError, match=f"ArchSpec.{field}"):
        ArchSpec(**{field: value})


def test_conv_head_refuses_fc_hidden():
    with pytest.raises(SpecError, match="fc_hidden"):
        ArchSpec(d_head="conv", fc_hidden=1)


def test_flops_counted_and_scale_with_width():
    small = flops_per_image(build(ArchSpec(resolution=32, g_width=8))[0], torch.randn(1, 100))
    large = flops_per_image(build(ArchSpec(resolution=32, g_width=16))[0], torch.randn(1, 100))
    assert small > 0
    assert 3.0 < large / small < 4.1  # conv FLOPs grow with the square of the width


# ---- the builder keeps the networks it built before (checkpoints and records stay loadable) -------------

TINY = dict(resolution=16, channels=1, z_dim=8, g_width=4, d_width=4)
_BN = lambda n: [(f"{n}.weight", (None,)), (f"{n}.bias", (None,)), (f"{n}.running_mean", (None,)),
                 (f"{n}.running_var", (None,)), (f"{n}.num_batches_tracked", ())]

# state_dict keys and shapes, and (sum, sum of |x|) over every tensor, as the builder made them before it was
# rewritten as a plan of stages (torch.manual_seed(0), then build); BN entries' shapes are checked by length
PINNED = {
    "dcgan": ({}, [("project.0.weight", (128, 8)), *_BN("project.2"), ("up1.0.weight", (8, 4, 4, 4)), *_BN("up1.1"),
                   ("output.0.weight", (4, 1, 4, 4))],
              [("down0.0.weight", (4, 1, 4, 4)), ("down1.0.weight", (8, 4, 4, 4)), *_BN("down1.1"),
               ("head.1.weight", (1, 128))],
              (22.492195592798453, 49.17877311582379), (16.578991208771185, 27.248791107958823)),
    "fc-hidden": ({"fc_hidden": 1},
                  [("fc0.0.weight", (1024, 8)), *_BN("fc0.1"), ("project.0.weight", (128, 1024)), *_BN("project.2"),
                   ("up1.0.weight", (8, 4, 4, 4)), *_BN("up1.1"), ("output.0.weight", (4, 1, 4, 4))],
                  [("down0.0.weight", (4, 1, 4, 4)), ("down1.0.weight", (8, 4, 4, 4)), *_BN("down1.1"),
                   ("head.fc0.0.weight", (1024, 128)), *_BN("head.fc0.1"), ("head.2.weight", (1, 1024))],
                  (2064.771666293306, 4301.027944794868), (2068.329830778247, 4183.197658997524)),
    "g-conv-input": ({"g_input": "convt"},
                     [("project.1.weight", (8, 8, 4, 4)), *_BN("project.2"), ("up1.0.weight", (8, 4, 4, 4)),
                      *_BN("up1.1"), ("output.0.weight", (4, 1, 4, 4))],
                     None, (22.492195592798453, 49.17877311582379), (16.578991208771185, 27.248791107958823)),
    "d-maxout": ({"d_act": "maxout"}, None,
                 [("down0.0.weight", (8, 1, 4, 4)), ("down1.0.weight", (16, 4, 4, 4)), *_BN("down1.1"),
                  ("head.1.weight", (1, 128))],
                 (22.492195592798453, 49.17877311582379), (30.88212502414808, 51.78239077818398)),
    # no BN and no bias anywhere: the old no-bn arm, kept as the control no-bn-bias-free
    "bias-free no-bn": ({"g_bn": "none", "d_bn": "none", "bias": False},
                        [("project.0.weight", (128, 8)), ("up1.0.weight", (8, 4, 4, 4)), ("output.0.weight", (4, 1, 4, 4))],
                        [("down0.0.weight", (4, 1, 4, 4)), ("down1.0.weight", (8, 4, 4, 4)), ("head.1.weight", (1, 128))],
                        (-1.6060007764044713, 24.96986486336209), (-0.8935371992010914, 10.726904017112247)),
}


def _layout(net):
    """Keys with shapes; 1-d BN tensors (weight, bias, running stats) by length only, as ``_BN`` writes them."""
    bn_names = {n for n, m in net.named_modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))}
    return [(k, (None,) if k.rpartition(".")[0] in bn_names and v.dim() == 1 else tuple(v.shape))
            for k, v in net.state_dict().items()]


@pytest.mark.parametrize("name", sorted(PINNED))
def test_networks_unchanged_by_the_builder_rewrite(name):
    arch, g_layout, d_layout, g_sums, d_sums = PINNED[name]
    torch.manual_seed(0)
    G, D = build(ArchSpec(**TINY, **arch))
    for net, layout, sums in ((G, g_layout, g_sums), (D, d_layout, d_sums)):
        if layout is not None:
            assert _layout(net) == layout
        tensors = [v.double() for v in net.state_dict().values()]
        assert sum(t.sum() for t in tensors).item() == pytest.approx(sums[0], rel=1e-9)
        assert sum(t.abs().sum() for t in tensors).item() == pytest.approx(sums[1], rel=1e-9)


@pytest.mark.parametrize("arch", [{}, {"fc_hidden": 2, "g_act": "maxout"}, {"g_bn": "none", "d_bn": "none"}])
def test_same_seed_same_networks(arch):
    nets = []
    for _ in range(2):
        torch.manual_seed(3)
        nets.append(build(ArchSpec(**TINY, **arch)))
    for a, b in zip(*nets):
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---- biases: BN's beta is given back where BN is taken away ---------------------------------------------


def _biased(net) -> set[str]:
    """Names of the conv and linear layers that have a bias."""
    return {n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
            and m.bias is not None}


def test_paper_network_has_no_bias():
    G, D = build(ArchSpec(**TINY, fc_hidden=1))
    assert ArchSpec().bias == "lost-bn"
    assert _biased(G) == set() and _biased(D) == set()


def test_layers_that_lose_bn_get_a_bias_and_no_others():
    G, D = build(ArchSpec(**TINY, fc_hidden=1, g_bn="none", d_bn="none"))
    assert _biased(G) == {"fc0.0", "project.0", "up1.0"}           # not G's output: the paper gives it no BN
    assert _biased(D) == {"down1.0", "head.fc0.0"}                 # not D's input, not the logit
    G, D = build(ArchSpec(**TINY, g_bn=(True, False, False)))     # per-layer placement: up1 lost BN, output never had it
    assert _biased(G) == {"up1.0"} and _biased(D) == set()


def test_bias_policies_none_and_all():
    G, D = build(ArchSpec(**TINY, g_bn="none", d_bn="none", bias="none"))
    assert _biased(G) == set() and _biased(D) == set()
    G, D = build(ArchSpec(**TINY, bias="all"))                     # every layer no BN follows: the outputs and D's input
    assert _biased(G) == {"output.0"} and _biased(D) == {"down0.0", "head.1"}


def test_old_boolean_bias_is_read_as_a_policy():
    assert ArchSpec(bias=False).bias == "none" and ArchSpec(bias=True).bias == "all"
    with pytest.raises(SpecError, match=r"ArchSpec.bias='some'.*lost-bn, none, all"):
        ArchSpec(bias="some")


@pytest.mark.parametrize("arch", [{}, {"g_bn": "none", "d_bn": "none", "fc_hidden": 2}, {"bias": "all", "g_act": "maxout"},
                                  {"d_head": "conv", "d_bn": "none"}])
def test_the_plan_is_what_gets_built(arch):
    spec = ArchSpec(**TINY, **arch)
    G, D = build(spec)
    weighted = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
    for net, plan in ((G, generator_plan(spec)), (D, discriminator_plan(spec))):
        layers = [m for m in net.modules() if isinstance(m, weighted)]      # one per stage, in order
        assert [m.bias is not None for m in layers] == [s.bias for s in plan]
        bns = [m.num_features for m in net.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
        assert bns == [s.width for s in plan if s.bn]


def test_fc_widths_per_network():
    spec = ArchSpec(**TINY, fc_hidden=1, fc_width=16, d_fc_width=3)
    G, D = build(spec)
    assert G.fc0[0].out_features == 16 and D.head.fc0[0].out_features == 3 and D.head[2].in_features == 3
    assert (spec.g_fc_units, spec.d_fc_units) == (16, 3)


# ---- init: the paper's N(0, 0.02) and a variance-preserving He init ----------------------------------


def test_maxout_gain_keeps_the_second_moment():
    assert maxout_gain(2) == pytest.approx(1.0, abs=1e-9)               # E[max(X1, X2)^2] = 1
    torch.manual_seed(0)
    m = torch.randn(400_000, 3).amax(dim=1)
    assert maxout_gain(3) == pytest.approx(1 / m.pow(2).mean().sqrt().item(), rel=5e-3)


def test_fan_in_counts_the_inputs_each_output_sums():
    assert fan_in(nn.Linear(7, 3)) == 7
    assert fan_in(nn.Conv2d(5, 2, 4, 2, 1)) == 5 * 16
    assert fan_in(nn.ConvTranspose2d(8, 2, 4, 2, 1)) == 8 * 4    # 2 taps per axis of a 4-kernel at stride 2


def test_he_init_uses_each_activations_gain():
    spec = ArchSpec(resolution=32, g_width=32, d_width=32, g_bn="none", d_bn="none", init="he", leaky_slope=0.3)
    torch.manual_seed(0)
    G, D = build(spec)
    relu, leaky = math.sqrt(2), math.sqrt(2 / (1 + 0.3 ** 2))
    assert G.up1[0].weight.std().item() == pytest.approx(relu / math.sqrt(128 * 4), rel=0.03)
    assert D.down1[0].weight.std().item() == pytest.approx(leaky / math.sqrt(32 * 16), rel=0.03)
    assert G.output[0].weight.std().item() == pytest.approx(0.02, rel=0.05)   # no hidden activation after it
    assert D.head[1].weight.std().item() == pytest.approx(0.02, rel=0.1)


def _g_std(seed: int, **arch) -> float:
    torch.manual_seed(seed)
    G, _ = build(ArchSpec(resolution=32, channels=1, g_width=32, d_width=32, **arch))
    with torch.no_grad():
        return G(torch.randn(256, 100)).std().item()


def test_he_init_gives_g_the_output_scale_bn_gives_it():
    # measured over seeds 0-4 (32 px, widths 32): dcgan 0.14-0.17; no BN + He 0.15-0.23 (at most 1.6x dcgan's);
    # no BN, N(0, 0.02): 0.0016-0.0025, about 80x too small
    for seed in range(3):
        paper = _g_std(seed)
        he = _g_std(seed, g_bn="none", d_bn="none", init="he")
        bias_free = _g_std(seed, g_bn="none", d_bn="none", bias="none")
        assert paper / 3 < he < paper * 3
        assert bias_free < paper / 20
