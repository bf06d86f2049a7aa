import pytest
import torch
from torch import nn

from ganbench.arch import ArchSpec, LearnedPool, LearnedUpsample, ScaledSigmoid
from ganbench.errors import SpecError
from ganbench.plugins import catalog
from ganbench.variants import (CONFOUND_RATIO, CONFOUNDS, MATCH_TOLERANCE, RULES, VARIANTS, Variant, adam_both,
                               confound_ratios, confounded, network_size)

BUILTIN = {v.name: v for v in VARIANTS}
REGISTRY = {v.name: v for v in catalog().variants}   # the built-ins and whatever plugins are loaded
REQUIRED = """dcgan d-maxpool d-avgpool g-upsample-nearest g-upsample-bilinear no-bn no-bn-gen no-bn-disc bn-all
no-bn-gen-output no-bn-disc-input fc-hidden d-gap g-conv-input g-leakyrelu g-maxout g-out-linear g-out-sigmoid
d-relu d-maxout adam-beta1-0.9 adam-lr-1e-3 default-init no-bn-bias-free no-bn-he-init fc-hidden-matched
d-pool-learned g-upsample-learned d-maxout-matched""".split()


def test_every_required_variant_is_there():
    assert set(REQUIRED) <= set(BUILTIN)


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_variant_has_rule_claim_and_expectation(name):
    v = BUILTIN[name]
    if name == "dcgan":
        assert not v.arch and not v.expects
        return
    assert v.rule in RULES
    assert v.claim and v.description and v.expects


@pytest.mark.parametrize("name", sorted(REGISTRY))
@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_variant_builds_and_runs(name, resolution, channels):
    G, D = REGISTRY[name].build(ArchSpec(resolution=resolution, channels=channels, g_width=4, d_width=4, z_dim=8))
    x = G(torch.randn(3, 8))
    assert x.shape == (3, channels, resolution, resolution)
    y = D(x)
    assert y.shape == (3,)
    (y.sum() + x.sum()).backward()


def _build(name, **kw):
    return BUILTIN[name].build(ArchSpec(resolution=32, channels=3, g_width=4, d_width=4, **kw))


def _bn_after(block: nn.Sequential, layer_type) -> bool:
    mods = list(block)
    i = max(j for j, m in enumerate(mods) if isinstance(m, layer_type))
    return i + 1 < len(mods) and isinstance(mods[i + 1], (nn.BatchNorm2d, nn.BatchNorm1d))


def test_paper_bn_placement():
    G, D = _build("dcgan")
    assert not _bn_after(G.output, nn.ConvTranspose2d)       # none at G's output
    assert not _bn_after(D.down0, nn.Conv2d)                  # none at D's input
    assert _bn_after(G.project, nn.Linear) or any(isinstance(m, nn.BatchNorm2d) for m in G.project)
    assert _bn_after(D.down1, nn.Conv2d)


def test_bn_variants_are_visible():
    G, D = _build("bn-all")
    assert _bn_after(G.output, nn.ConvTranspose2d) and _bn_after(D.down0, nn.Conv2d)
    G, D = _build("no-bn-gen-output")
    assert not _bn_after(G.output, nn.ConvTranspose2d) and _bn_after(D.down0, nn.Conv2d)
    G, D = _build("no-bn-disc-input")
    assert _bn_after(G.output, nn.ConvTranspose2d) and not _bn_after(D.down0, nn.Conv2d)
    for name, g_has, d_has in [("no-bn", False, False), ("no-bn-gen", False, True), ("no-bn-disc", True, False)]:
        G, D = _build(name)
        assert any(isinstance(m, nn.BatchNorm2d) for m in G.modules()) == g_has, name
        assert any(isinstance(m, nn.BatchNorm2d) for m in D.modules()) == d_has, name


def test_r1_variants_are_visible():
    _, D = _build("d-maxpool")
    assert any(isinstance(m, nn.MaxPool2d) for m in D.modules())
    assert not any(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in D.modules())
    _, D = _build("d-avgpool")
    assert any(isinstance(m, nn.AvgPool2d) for m in D.modules())
    assert not any(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in D.modules())
    for mode in ("nearest", "bilinear"):
        G, _ = _build(f"g-upsample-{mode}")
        ups = [m for m in G.modules() if isinstance(m, nn.Upsample)]
        assert ups and all(m.mode == mode for m in ups)
        assert not any(isinstance(m, nn.ConvTranspose2d) for m in G.modules())


def test_r3_variants_are_visible():
    G, D = _build("fc-hidden")
    assert isinstance(G.fc0[0], nn.Linear) and G.fc0[0].out_features == 1024
    assert sum(isinstance(m, nn.Linear) for m in D.head.modules()) == 2
    _, D = _build("d-gap")
    assert any(isinstance(m, nn.AdaptiveAvgPool2d) for m in D.head.modules())
    G, _ = _build("g-conv-input")
    assert isinstance(G.project[1], nn.ConvTranspose2d) and not any(isinstance(m, nn.Linear) for m in G.modules())


def test_r4_r5_variants_are_visible():
    G, _ = _build("g-leakyrelu")
    assert any(isinstance(m, nn.LeakyReLU) for m in G.modules()) and not any(isinstance(m, nn.ReLU) for m in G.modules())
    G, _ = _build("g-maxout")
    assert any(type(m).__name__ == "Maxout" for m in G.modules())
    G, _ = _build("g-out-linear")
    assert not any(isinstance(m, (nn.Tanh, nn.Sigmoid, ScaledSigmoid)) for m in G.modules())
    G, _ = _build("g-out-sigmoid")
    assert isinstance(G.output[-1], ScaledSigmoid)
    out = G(torch.randn(4, 100))
    assert out.min() >= -1 and out.max() <= 1
    _, D = _build("d-relu")
    assert any(isinstance(m, nn.ReLU) for m in D.modules()) and not any(isinstance(m, nn.LeakyReLU) for m in D.modules())
    _, D = _build("d-maxout")
    assert any(type(m).__name__ == "Maxout" for m in D.modules())


def test_r6_variants_change_only_the_optimizer_or_init():
    assert BUILTIN["adam-beta1-0.9"].optim.g.betas == (0.9, 0.999) == BUILTIN["adam-beta1-0.9"].optim.d.betas
    assert BUILTIN["adam-lr-1e-3"].optim.d.lr == 1e-3 and not BUILTIN["adam-lr-1e-3"].arch
    assert BUILTIN["dcgan"].optim.g.lr == 2e-4 and BUILTIN["dcgan"].optim.g.betas == (0.5, 0.999)
    assert dict(BUILTIN["default-init"].arch) == {"init": "default"}


def test_variant_rejects_unknown_fields_and_directions():
    with pytest.raises(SpecError, match="unknown ArchSpec fields"):
        Variant("x", "R1", "d", arch={"d_pooling": "max"})
    with pytest.raises(SpecError, match="directions"):
        Variant("x", "R1", "d", expects={"fid": "lower"})


def test_primary_endpoint_defaults_to_the_first_expectation_and_is_checked():
    assert BUILTIN["d-gap"].primary == "sample_oscillation" and BUILTIN["dcgan"].primary == ""
    assert Variant("x", "R1", "d", expects={"fid": "worse", "modes": "worse"}, primary="modes").primary == "modes"
    with pytest.raises(SpecError, match="primary='kid_mean' is not one of its expected metrics"):
        Variant("x", "R1", "d", expects={"fid": "worse"}, primary="kid_mean")


# ---- fair no-BN arms -----------------------------------------------------------------------------------


def _biased(net) -> set[str]:
    return {n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
            and m.bias is not None}


def test_no_bn_has_biases_exactly_where_bn_was():
    G, D = _build("no-bn")
    assert _biased(G) == {"project.0", "up1.0", "up2.0"}       # G's output had no BN in the paper: no bias
    assert _biased(D) == {"down1.0", "down2.0"}                # D's input and logit had none either
    G, D = _build("no-bn-gen")
    assert _biased(G) == {"project.0", "up1.0", "up2.0"} and _biased(D) == set()
    G, D = _build("no-bn-disc")
    assert _biased(G) == set() and _biased(D) == {"down1.0", "down2.0"}


def test_bias_free_control_has_none():
    G, D = _build("no-bn-bias-free")
    assert _biased(G) == set() and _biased(D) == set()
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for net in (G, D) for m in net.modules())


def test_a_plugins_no_bn_variant_gets_the_same_biases():
    plugin = Variant("plugin-no-bn-disc", rule="extra", description="D without BN", arch={"d_bn": "none"})
    G, D = plugin.build(ArchSpec(resolution=32, g_width=4, d_width=4))
    assert _biased(D) == {"down1.0", "down2.0"} and _biased(G) == set()


def test_he_init_control_starts_at_dcgans_output_scale():
    def g_std(name, seed=0):
        torch.manual_seed(seed)
        G, _ = BUILTIN[name].build(ArchSpec(resolution=32, channels=1, g_width=32, d_width=32))
        with torch.no_grad():
            return G(torch.randn(256, 100)).std().item()

    # measured (seeds 0-4): dcgan 0.14-0.17, no-bn-he-init 0.15-0.23, no-bn-bias-free 0.0016-0.0025
    paper, he, free = g_std("dcgan"), g_std("no-bn-he-init"), g_std("no-bn-bias-free")
    assert paper / 3 < he < paper * 3
    assert free < paper / 20


# ---- parameter matching and confounds --------------------------------------------------------------------


@pytest.mark.parametrize("resolution,width", [(32, 32), (64, 64)])
def test_fc_hidden_matched_is_within_tolerance_of_dcgan(resolution, width):
    base = ArchSpec(resolution=resolution, channels=1, g_width=width, d_width=width)
    matched, paper = network_size(BUILTIN["fc-hidden-matched"], base), network_size(BUILTIN["dcgan"], base)
    for net in ("g", "d"):
        assert abs(matched[f"{net}_params"] / paper[f"{net}_params"] - 1) <= 0.10, net
    spec = BUILTIN["fc-hidden-matched"].arch_spec(base)
    assert spec.fc_hidden == 1 and spec.g_fc_width > spec.d_fc_width >= 1
    G, D = BUILTIN["fc-hidden-matched"].build(base)
    assert G.fc0[0].out_features == spec.g_fc_width and D.head.fc0[0].out_features == spec.d_fc_width
    # one unit more would break the tolerance: the widths are the widest that keep it
    wider = network_size(Variant("w", "R3", "d", arch={"fc_hidden": 1, "g_fc_width": spec.g_fc_width + 1,
                                                        "d_fc_width": spec.d_fc_width + 1}), base)
    assert wider["g_params"] > paper["g_params"] * (1 + MATCH_TOLERANCE)
    assert wider["d_params"] > paper["d_params"] * (1 + MATCH_TOLERANCE)


def test_matched_arch_spec_is_the_same_from_a_resolved_record():
    base = ArchSpec(resolution=32, channels=1, g_width=16, d_width=16)
    spec = BUILTIN["fc-hidden-matched"].arch_spec(base)
    assert BUILTIN["fc-hidden-matched"].arch_spec(spec) == spec         # probe rebuilds from the recorded ArchSpec
    assert BUILTIN["fc-hidden-matched"].arch_spec(ArchSpec(resolution=32, channels=1, g_width=32, d_width=32)) != spec


@pytest.mark.parametrize("fixed,learned", [("d-avgpool", "d-pool-learned"), ("g-upsample-nearest", "g-upsample-learned")])
@pytest.mark.parametrize("init", ["dcgan", "he", "default"])
def test_a_learned_resampling_control_starts_as_its_fixed_arm_and_learns(fixed, learned, init):
    """R1's controls: the pooling/upsampling arm's network, its fixed 2x2 resampling made learnable. Built from
    one seed, both compute the same function at the start (under every init), cost the same within 5%, and
    its resampling weights move in a training step."""
    base = ArchSpec(resolution=32, channels=1, g_width=8, d_width=8, init=init)
    torch.manual_seed(0)
    G0, D0 = BUILTIN[fixed].build(base)
    torch.manual_seed(0)
    G1, D1 = BUILTIN[learned].build(base)
    z, x = torch.randn(6, base.z_dim), torch.rand(6, 1, 32, 32) * 2 - 1
    assert torch.allclose(G0(z), G1(z), atol=1e-5) and torch.allclose(D0(x), D1(x), atol=1e-5)
    ratios = {k: network_size(BUILTIN[learned], base)[k] / network_size(BUILTIN[fixed], base)[k]
              for k in ("g_params", "d_params", "g_flops", "d_flops")}
    assert all(abs(r - 1) < 0.05 for r in ratios.values()), ratios   # 1% at widths 32
    resamplers = [m for m in (*G1.modules(), *D1.modules()) if isinstance(m, (LearnedPool, LearnedUpsample))]
    assert len(resamplers) == 3 and not any(isinstance(m, (LearnedPool, LearnedUpsample))
                                            for m in (*G0.modules(), *D0.modules()))
    start = [m.weight.detach().clone() for m in resamplers]
    opt = torch.optim.SGD([p for net in (G1, D1) for p in net.parameters()], lr=0.1)
    (D1(G1(z)).mean() - D1(x).mean()).backward()
    opt.step()
    assert all(not torch.equal(m.weight, w) for m, w in zip(resamplers, start))


@pytest.mark.parametrize("resolution,width", [(32, 32), (64, 64), (32, 16)])
def test_d_maxout_matched_pays_for_maxout_with_a_narrower_d(resolution, width):
    """The maxout control: D keeps maxout's pieces, its stage width solved so that its parameters are the nearest
    to dcgan's a whole width gives; G is dcgan's own."""
    base = ArchSpec(resolution=resolution, channels=1, g_width=width, d_width=width)
    v = BUILTIN["d-maxout-matched"]
    spec = v.arch_spec(base)
    assert spec.d_act == "maxout" and spec.g_matched_width is None and 0.6 * width < spec.d_matched_width < width
    matched, paper = network_size(v, base), network_size(BUILTIN["dcgan"], base)
    unmatched = network_size(BUILTIN["d-maxout"], base)
    assert matched["g_params"] == paper["g_params"] and matched["g_flops"] == paper["g_flops"]
    assert abs(matched["d_params"] / paper["d_params"] - 1) <= 0.06 < unmatched["d_params"] / paper["d_params"] - 1
    assert abs(matched["d_flops"] / paper["d_flops"] - 1) <= 0.06
    assert confounded(confound_ratios(v, base)) == [] and confounded(confound_ratios(BUILTIN["d-maxout"], base))
    # nearest: a channel more or fewer lands farther from dcgan's count
    for other in (spec.d_matched_width - 1, spec.d_matched_width + 1):
        near = network_size(Variant("w", "R5", "d", arch={"d_act": "maxout", "d_matched_width": other}), base)
        assert abs(near["d_params"] - paper["d_params"]) > abs(matched["d_params"] - paper["d_params"])
    G, D = v.build(base)
    assert D.down0[0].out_channels == 2 * spec.d_matched_width and D.down1[0].in_channels == spec.d_matched_width
    assert v.arch_spec(spec) == spec                                     # the same from the recorded ArchSpec


def test_match_params_is_false_true_or_a_known_matcher():
    with pytest.raises(SpecError, match="match_params='depth' must be false, true or one of 'fc', 'width'"):
        Variant("m", "R5", "d", match_params="depth")
    fc = Variant("m", "R3", "d", arch={"fc_hidden": 1}, match_params="fc")
    base = ArchSpec(resolution=32, channels=1, g_width=16, d_width=16)
    assert fc.arch_spec(base) == BUILTIN["fc-hidden-matched"].arch_spec(base)   # "fc" is what True has always meant


def test_match_params_needs_fc_layers():
    with pytest.raises(SpecError, match="fc_hidden is 0"):
        Variant("m", "R3", "d", match_params=True).arch_spec(ArchSpec(resolution=16, g_width=4, d_width=4))


def test_confound_ratios():
    base = ArchSpec(resolution=32, channels=1, g_width=32, d_width=32)
    fc = confound_ratios(BUILTIN["fc-hidden"], base)
    assert list(fc) == list(CONFOUNDS)
    assert fc["g_params"] > CONFOUND_RATIO and fc["d_params"] > CONFOUND_RATIO
    assert {"g_params", "d_params"} <= set(confounded(fc)) and "g_lr" not in confounded(fc)
    assert confound_ratios(BUILTIN["d-relu"], base) == {k: 1.0 for k in CONFOUNDS}
    assert confounded(confound_ratios(BUILTIN["d-relu"], base)) == []
    matched = confound_ratios(BUILTIN["fc-hidden-matched"], base)
    assert confounded(matched) == []
    lr = confound_ratios(BUILTIN["adam-lr-1e-3"], base)
    assert lr["g_lr"] == lr["d_lr"] == pytest.approx(5.0) and confounded(lr) == ["g_lr", "d_lr"]
    slow = Variant("slow-g", "extra", "d", optim=adam_both(lr=1e-4))
    assert confounded(confound_ratios(slow, base)) == ["g_lr", "d_lr"]     # 0.5x counts too
    assert confounded({"g_params": 1.24, "d_params": 0.81}) == []


def test_measuring_a_variant_leaves_the_random_state_alone():
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    confound_ratios(BUILTIN["fc-hidden-matched"], ArchSpec(resolution=16, g_width=4, d_width=4))
    assert torch.equal(torch.random.get_rng_state(), before)
