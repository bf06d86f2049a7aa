import pytest
import torch
from torch import nn

from ganbench.arch import ArchSpec, ScaledSigmoid
from ganbench.errors import SpecError
from ganbench.variants import RULES, VARIANTS, Variant

BUILTIN = {v.name: v for v in VARIANTS}
REQUIRED = """dcgan d-maxpool d-avgpool g-upsample-nearest g-upsample-bilinear no-bn no-bn-gen no-bn-disc bn-all
no-bn-gen-output no-bn-disc-input fc-hidden d-gap g-conv-input g-leakyrelu g-maxout g-out-linear g-out-sigmoid
d-relu d-maxout adam-beta1-0.9 adam-lr-1e-3 default-init""".split()


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


@pytest.mark.parametrize("name", sorted(BUILTIN))
@pytest.mark.parametrize("resolution", [16, 32, 64])
@pytest.mark.parametrize("channels", [1, 3])
def test_every_variant_builds_and_runs(name, resolution, channels):
    G, D = BUILTIN[name].build(ArchSpec(resolution=resolution, channels=channels, g_width=4, d_width=4, z_dim=8))
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
