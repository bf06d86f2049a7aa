"""The paper's network and every rule-breaking variant, each a small diff from the baseline.

A ``Variant`` names the rule it breaks (R1..R6 of DESIGN.md), the paper's claim about that rule, and the
direction the claim predicts on the metrics it is about (``expects``); its changes are written as the
ArchSpec fields and optimizer settings that differ from the paper. The protocol supplies resolution,
channels and widths; the variant changes only what it tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

from torch import nn

from ganbench.arch import ArchSpec, build
from ganbench.errors import SpecError
from ganbench.hookspecs import hookimpl

DIRECTIONS = ("worse", "better", "same")

# The paper's rules, as DESIGN.md states them: id -> (rule, the paper's claim).
RULES: dict[str, tuple[str, str]] = {
    "R1": ("strided convolutions in D, fractional-strided in G, no pooling",
           "allowing the network to learn its own spatial downsampling/upsampling"),
    "R2": ("batchnorm in G and D, except G's output and D's input",
           "BN is critical to get deep generators to begin learning and prevents collapse to a single point; "
           "BN on all layers resulted in sample oscillation and model instability"),
    "R3": ("no fully connected hidden layers",
           "global average pooling increased model stability but hurt convergence speed"),
    "R4": ("ReLU in G, Tanh at its output",
           "a bounded output learns more quickly to saturate and cover the color space"),
    "R5": ("LeakyReLU (slope 0.2) in D", "works well, especially for higher resolution modeling"),
    "R6": ("Adam, lr 2e-4, beta1 0.5; N(0, 0.02) init",
           "lr 1e-3 too high; beta1 0.9 resulted in training oscillation and instability"),
}


@dataclass(frozen=True)
class Adam:
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)


@dataclass(frozen=True)
class OptimSpec:
    g: Adam = Adam()   # G's optimizer
    d: Adam = Adam()   # D's optimizer


def adam_both(**changes: Any) -> OptimSpec:
    """The same change to G's and D's Adam."""
    return OptimSpec(g=replace(Adam(), **changes), d=replace(Adam(), **changes))


@dataclass(frozen=True)
class Variant:
    name: str
    rule: str                                   # "R1".."R6" for the paper's rules, anything for a plugin's own
    description: str                            # one line: what differs from the paper's network
    claim: str = ""                             # the paper's claim this variant tests
    expects: Mapping[str, str] = field(default_factory=dict)   # metric -> "worse" | "better" | "same" vs dcgan
    arch: Mapping[str, Any] = field(default_factory=dict)      # ArchSpec fields that differ from the protocol's
    optim: OptimSpec = OptimSpec()              # Adam settings per network
    builder: Callable[[ArchSpec], tuple[nn.Module, nn.Module]] | None = None  # a plugin's own networks

    def __post_init__(self):
        unknown = set(self.arch) - set(ArchSpec.field_names())
        if unknown:
            raise SpecError(f"variant {self.name!r} changes unknown ArchSpec fields {sorted(unknown)}; "
                            f"known: {', '.join(ArchSpec.field_names())}")
        bad = {m: d for m, d in self.expects.items() if d not in DIRECTIONS}
        if bad:
            raise SpecError(f"variant {self.name!r}: expected directions {bad} must be one of {DIRECTIONS}")
        object.__setattr__(self, "arch", MappingProxyType(dict(self.arch)))
        object.__setattr__(self, "expects", MappingProxyType(dict(self.expects)))

    def arch_spec(self, base: ArchSpec) -> ArchSpec:
        """The protocol's ArchSpec with this variant's changes."""
        return replace(base, **self.arch)

    def build(self, base: ArchSpec) -> tuple[nn.Module, nn.Module]:
        """G and D for this variant under a protocol's ArchSpec."""
        spec = self.arch_spec(base)
        return (self.builder or build)(spec)


def _v(name, rule, description, expects, arch=None, optim=OptimSpec()) -> Variant:
    return Variant(name, rule, description, RULES[rule][1] if rule in RULES else "", expects, arch or {}, optim)


WORSE_FID = {"fid": "worse"}

VARIANTS: list[Variant] = [
    Variant("dcgan", "-", "the paper's network and optimizer: the baseline"),
    # R1: learned up/downsampling
    _v("d-maxpool", "R1", "D: stride-1 conv + 2x2 max-pool instead of strided conv", WORSE_FID, {"d_downsample": "maxpool"}),
    _v("d-avgpool", "R1", "D: stride-1 conv + 2x2 average-pool instead of strided conv", WORSE_FID, {"d_downsample": "avgpool"}),
    _v("g-upsample-nearest", "R1", "G: nearest upsample + conv instead of fractional-strided conv", WORSE_FID,
       {"g_upsample": "nearest"}),
    _v("g-upsample-bilinear", "R1", "G: bilinear upsample + conv instead of fractional-strided conv", WORSE_FID,
       {"g_upsample": "bilinear"}),
    # R2: batchnorm placement
    _v("no-bn", "R2", "no batchnorm in G or D", {"fid": "worse", "modes": "worse"}, {"g_bn": "none", "d_bn": "none"}),
    _v("no-bn-gen", "R2", "no batchnorm in G", {"fid": "worse", "modes": "worse"}, {"g_bn": "none"}),
    _v("no-bn-disc", "R2", "no batchnorm in D", WORSE_FID, {"d_bn": "none"}),
    _v("bn-all", "R2", "batchnorm on every layer, G's output and D's input included",
       {"sample_oscillation": "worse", "fid": "worse"}, {"g_bn": "all", "d_bn": "all"}),
    _v("no-bn-gen-output", "R2", "batchnorm on every layer except G's output (so D's input has BN)",
       {"sample_oscillation": "worse", "fid": "worse"}, {"d_bn": "all"}),
    _v("no-bn-disc-input", "R2", "batchnorm on every layer except D's input (so G's output has BN)",
       {"sample_oscillation": "worse", "fid": "worse"}, {"g_bn": "all"}),
    # R3: fully connected layers
    _v("fc-hidden", "R3", "one fully connected hidden layer (1024 units) at G's input and before D's logit",
       WORSE_FID, {"fc_hidden": 1}),
    _v("d-gap", "R3", "D: global average pooling + linear instead of flatten + linear",
       {"sample_oscillation": "better", "fid_auc": "worse"}, {"d_head": "gap"}),
    _v("g-conv-input", "R3", "G: 4x4 transposed conv from 1x1 z (the PyTorch example) instead of linear projection",
       {"fid": "same"}, {"g_input": "convt"}),
    # R4: G's activations
    _v("g-leakyrelu", "R4", "G: LeakyReLU(0.2) instead of ReLU", WORSE_FID, {"g_act": "leakyrelu"}),
    _v("g-maxout", "R4", "G: maxout (k=2) instead of ReLU", WORSE_FID, {"g_act": "maxout"}),
    _v("g-out-linear", "R4", "G: unbounded linear output instead of tanh", {"fid_auc": "worse", "fid": "worse"},
       {"g_out": "linear"}),
    _v("g-out-sigmoid", "R4", "G: sigmoid output (rescaled to [-1, 1]) instead of tanh", {"fid_auc": "worse"},
       {"g_out": "sigmoid"}),
    # R5: D's activations
    _v("d-relu", "R5", "D: ReLU instead of LeakyReLU(0.2)", WORSE_FID, {"d_act": "relu"}),
    _v("d-maxout", "R5", "D: maxout (k=2) instead of LeakyReLU, as in the original GAN", WORSE_FID, {"d_act": "maxout"}),
    # R6: optimizer and init
    _v("adam-beta1-0.9", "R6", "Adam beta1 0.9 instead of 0.5",
       {"sample_oscillation": "worse", "loss_oscillation": "worse"}, optim=adam_both(betas=(0.9, 0.999))),
    _v("adam-lr-1e-3", "R6", "Adam learning rate 1e-3 instead of 2e-4", {"fid": "worse", "diverged": "worse"},
       optim=adam_both(lr=1e-3)),
    _v("default-init", "R6", "PyTorch's default init instead of N(0, 0.02)", WORSE_FID, {"init": "default"}),
]


@hookimpl
def ganbench_variants() -> list[Variant]:
    return VARIANTS
