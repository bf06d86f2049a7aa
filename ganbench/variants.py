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


def _paper(name: str, *, rule: str, description: str, expects: Mapping[str, str], arch: Mapping[str, Any] = {},
           optim: OptimSpec = OptimSpec()) -> Variant:
    """A variant that breaks one of the paper's rules; its claim is that rule's claim (``RULES``)."""
    return Variant(name, rule=rule, description=description, claim=RULES[rule][1], expects=expects, arch=arch,
                   optim=optim)


WORSE_FID = {"fid": "worse"}

VARIANTS: list[Variant] = [
    Variant("dcgan", rule="-", description="the paper's network and optimizer: the baseline"),
    # R1: learned up/downsampling
    _paper("d-maxpool", rule="R1", description="D: stride-1 conv + 2x2 max-pool instead of strided conv",
           expects=WORSE_FID, arch={"d_downsample": "maxpool"}),
    _paper("d-avgpool", rule="R1", description="D: stride-1 conv + 2x2 average-pool instead of strided conv",
           expects=WORSE_FID, arch={"d_downsample": "avgpool"}),
    _paper("g-upsample-nearest", rule="R1", description="G: nearest upsample + conv instead of fractional-strided conv",
           expects=WORSE_FID, arch={"g_upsample": "nearest"}),
    _paper("g-upsample-bilinear", rule="R1", description="G: bilinear upsample + conv instead of fractional-strided conv",
           expects=WORSE_FID, arch={"g_upsample": "bilinear"}),
    # R2: batchnorm placement
    _paper("no-bn", rule="R2", description="no batchnorm in G or D",
           expects={"fid": "worse", "modes": "worse"}, arch={"g_bn": "none", "d_bn": "none"}),
    _paper("no-bn-gen", rule="R2", description="no batchnorm in G",
           expects={"fid": "worse", "modes": "worse"}, arch={"g_bn": "none"}),
    _paper("no-bn-disc", rule="R2", description="no batchnorm in D", expects=WORSE_FID, arch={"d_bn": "none"}),
    _paper("bn-all", rule="R2", description="batchnorm on every layer, G's output and D's input included",
           expects={"sample_oscillation": "worse", "fid": "worse"}, arch={"g_bn": "all", "d_bn": "all"}),
    _paper("no-bn-gen-output", rule="R2", description="batchnorm on every layer except G's output (so D's input has BN)",
           expects={"sample_oscillation": "worse", "fid": "worse"}, arch={"d_bn": "all"}),
    _paper("no-bn-disc-input", rule="R2", description="batchnorm on every layer except D's input (so G's output has BN)",
           expects={"sample_oscillation": "worse", "fid": "worse"}, arch={"g_bn": "all"}),
    # R3: fully connected layers
    _paper("fc-hidden", rule="R3",
           description="one fully connected hidden layer (1024 units) at G's input and before D's logit",
           expects=WORSE_FID, arch={"fc_hidden": 1}),
    _paper("d-gap", rule="R3", description="D: global average pooling + linear instead of flatten + linear",
           expects={"sample_oscillation": "better", "fid_auc": "worse"}, arch={"d_head": "gap"}),
    _paper("g-conv-input", rule="R3",
           description="G: 4x4 transposed conv from 1x1 z (the PyTorch example) instead of linear projection",
           expects={"fid": "same"}, arch={"g_input": "convt"}),
    # R4: G's activations
    _paper("g-leakyrelu", rule="R4", description="G: LeakyReLU(0.2) instead of ReLU", expects=WORSE_FID,
           arch={"g_act": "leakyrelu"}),
    _paper("g-maxout", rule="R4", description="G: maxout (k=2) instead of ReLU", expects=WORSE_FID,
           arch={"g_act": "maxout"}),
    _paper("g-out-linear", rule="R4", description="G: unbounded linear output instead of tanh",
           expects={"fid_auc": "worse", "fid": "worse"}, arch={"g_out": "linear"}),
    _paper("g-out-sigmoid", rule="R4", description="G: sigmoid output (rescaled to [-1, 1]) instead of tanh",
           expects={"fid_auc": "worse"}, arch={"g_out": "sigmoid"}),
    # R5: D's activations
    _paper("d-relu", rule="R5", description="D: ReLU instead of LeakyReLU(0.2)", expects=WORSE_FID,
           arch={"d_act": "relu"}),
    _paper("d-maxout", rule="R5", description="D: maxout (k=2) instead of LeakyReLU, as in the original GAN",
           expects=WORSE_FID, arch={"d_act": "maxout"}),
    # R6: optimizer and init
    _paper("adam-beta1-0.9", rule="R6", description="Adam beta1 0.9 instead of 0.5",
           expects={"sample_oscillation": "worse", "loss_oscillation": "worse"}, optim=adam_both(betas=(0.9, 0.999))),
    _paper("adam-lr-1e-3", rule="R6", description="Adam learning rate 1e-3 instead of 2e-4",
           expects={"fid": "worse", "diverged": "worse"}, optim=adam_both(lr=1e-3)),
    _paper("default-init", rule="R6", description="PyTorch's default init instead of N(0, 0.02)", expects=WORSE_FID,
           arch={"init": "default"}),
]


@hookimpl
def ganbench_variants() -> list[Variant]:
    return VARIANTS
