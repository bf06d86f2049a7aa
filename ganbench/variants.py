"""The paper's network and every rule-breaking variant, each a small diff from the baseline.

A ``Rule`` is one of the paper's rules (R1..R6 of DESIGN.md, ``RULES``) or a plugin's own; rules register
through ``ganbench_rules``. A ``Variant`` names the rule it breaks, the claim it tests, and the
direction the claim predicts on the metrics it is about (``expects``); its changes are written as the
ArchSpec fields and optimizer settings that differ from the paper. The protocol supplies resolution,
channels and widths; the variant changes only what it tests.

Where a change cannot help changing something else too (parameters, FLOPs, a learning rate), the
``confound_ratios`` of a variant to ``dcgan`` say by how much, and ``confounded`` names those beyond
``CONFOUND_RATIO``; control arms (``no-bn-bias-free``, ``no-bn-he-init``, ``fc-hidden-matched``, ``d-pool-learned``,
``g-upsample-learned``, ``d-maxout-matched``) isolate the rule.
"""

from __future__ import annotations

import functools
from dataclasses import MISSING, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ganbench.arch import ArchSpec, build
from ganbench.layers import count_params, flops_per_image
from ganbench.errors import SpecError
from ganbench.hookspecs import hookimpl

DIRECTIONS = ("worse", "better", "same")

NO_RULE = "-"   # the rule of a variant that breaks none (the baseline): needs no registered rule


@dataclass(frozen=True)
class Rule:
    """One architecture rule under test: the paper's R1..R6, or a plugin's own (``ganbench_rules``)."""
    id: str          # short and unique, e.g. "R2" or a plugin's "P1"; a variant's ``rule`` and a claim's ``rule`` name it
    text: str        # the rule itself, one line: "batchnorm in G and D, except G's output and D's input"
    claim: str = ""  # what the rule's author claims it does (the paper's words, or the plugin author's)

    def __post_init__(self):
        if not self.id or any(ch.isspace() for ch in self.id) or "." in self.id or self.id == NO_RULE:
            raise SpecError(f"rule {self.id!r}: an id is one word without dots or spaces (claim ids are "
                            f"'<rule>.<name>'), and {NO_RULE!r} means no rule")
        if not self.text:
            raise SpecError(f"rule {self.id!r}: text (the rule itself) must not be empty")


# The paper's rules, as DESIGN.md states them; registered through ``ganbench_rules`` like a plugin's.
RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("R1", "strided convolutions in D, fractional-strided in G, no pooling",
         "allowing the network to learn its own spatial downsampling/upsampling"),
    Rule("R2", "batchnorm in G and D, except G's output and D's input",
         "BN is critical to get deep generators to begin learning and prevents collapse to a single point; "
         "BN on all layers resulted in sample oscillation and model instability"),
    Rule("R3", "no fully connected hidden layers",
         "global average pooling increased model stability but hurt convergence speed"),
    Rule("R4", "ReLU in G, Tanh at its output",
         "a bounded output learns more quickly to saturate and cover the color space"),
    Rule("R5", "LeakyReLU (slope 0.2) in D", "works well, especially for higher resolution modeling"),
    Rule("R6", "Adam, lr 2e-4, beta1 0.5; N(0, 0.02) init",
         "lr 1e-3 too high; beta1 0.9 resulted in training oscillation and instability"),
)}


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
    rule: str                                   # a registered Rule's id: "R1".."R6", or a plugin's own; "-": none
    description: str                            # one line: what differs from the paper's network
    claim: str = ""                             # the paper's claim this variant tests
    expects: Mapping[str, str] = field(default_factory=dict)   # metric -> "worse" | "better" | "same" vs dcgan
    arch: Mapping[str, Any] = field(default_factory=dict)      # ArchSpec fields that differ from the protocol's
    optim: OptimSpec = OptimSpec()              # Adam settings per network
    builder: Callable[[ArchSpec], tuple[nn.Module, nn.Module]] | None = None  # a plugin's own networks
    match_params: bool | str = False            # keep each network's parameters within MATCH_TOLERANCE of dcgan's
                                                # under the protocol's ArchSpec by solving its FC hidden widths
                                                # (True or "fc") or its stage width ("width"): see MATCHERS
    primary: str = ""                           # the one primary endpoint: a key of expects (default: the first)

    def __post_init__(self):
        unknown = set(self.arch) - set(ArchSpec.field_names())
        if unknown:
            raise SpecError(f"variant {self.name!r} changes unknown ArchSpec fields {sorted(unknown)}; "
                            f"known: {', '.join(ArchSpec.field_names())}")
        bad = {m: d for m, d in self.expects.items() if d not in DIRECTIONS}
        if bad:
            raise SpecError(f"variant {self.name!r}: expected directions {bad} must be one of {DIRECTIONS}")
        if self.match_params is not False and self.match_params not in MATCHERS:
            raise SpecError(f"variant {self.name!r}: match_params={self.match_params!r} must be false, true or one "
                            f"of {', '.join(repr(k) for k in MATCHERS if isinstance(k, str))}")
        if self.primary and self.primary not in self.expects:
            raise SpecError(f"variant {self.name!r}: primary={self.primary!r} is not one of its expected metrics "
                            f"{sorted(self.expects) or '(none)'}")
        object.__setattr__(self, "arch", MappingProxyType(dict(self.arch)))
        object.__setattr__(self, "expects", MappingProxyType(dict(self.expects)))
        object.__setattr__(self, "primary", self.primary or next(iter(self.expects), ""))

    def arch_spec(self, base: ArchSpec) -> ArchSpec:
        """The protocol's ArchSpec with this variant's changes (and, with ``match_params``, the widths that
        match dcgan's parameters under it). ``base`` may be an ArchSpec this returned: the result is the same."""
        spec = replace(base, **self.arch)
        if self.match_params:
            spec = MATCHERS[self.match_params](spec, _as_paper(base, self.arch), self.builder or build, self.name)
        return spec

    def build(self, base: ArchSpec) -> tuple[nn.Module, nn.Module]:
        """G and D for this variant under a protocol's ArchSpec."""
        spec = self.arch_spec(base)
        return (self.builder or build)(spec)


# ---- parameter matching ------------------------------------------------------------------------------

MATCH_TOLERANCE = 0.10   # match_params: each network's parameters within this fraction of dcgan's
SOLVED = ("g_fc_width", "d_fc_width", "g_matched_width", "d_matched_width")   # the fields matching solves for
_PAPER = {f.name: f.default for f in fields(ArchSpec) if f.default is not MISSING}


def _as_paper(base: ArchSpec, changed) -> ArchSpec:
    """``base`` with the fields a variant changes, and the widths matching solves for, at the paper's values:
    dcgan under the protocol's ArchSpec, whether ``base`` is that ArchSpec or the variant's resolved one."""
    return replace(base, **{k: _PAPER[k] for k in {*changed, *SOLVED}})


def _param_counts(builder, spec: ArchSpec) -> tuple[int, int]:
    """G's and D's parameters, built on the meta device (no memory, no random numbers drawn); a builder that
    cannot run there is built on the CPU with the global random state put back afterwards."""
    try:
        with torch.device("meta"):
            G, D = builder(spec)
    except (NotImplementedError, RuntimeError):
        with torch.random.fork_rng(devices=[]):
            G, D = builder(spec)
    return count_params(G), count_params(D)


def _widest(count: Callable[[int], int], target: int, what: str) -> int:
    """The largest width w >= 1 with count(w) within MATCH_TOLERANCE of target (count grows with w)."""
    limit = target * (1 + MATCH_TOLERANCE)
    if count(1) > limit:
        raise SpecError(f"{what}: even 1 unit per FC hidden layer gives {count(1):,} parameters, over "
                        f"{MATCH_TOLERANCE:.0%} more than dcgan's {target:,}")
    lo, hi = 1, 2
    while count(hi) <= limit:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) <= limit else (lo, mid)
    if count(lo) < target * (1 - MATCH_TOLERANCE):
        raise SpecError(f"{what}: no FC width brings the parameters within {MATCH_TOLERANCE:.0%} of dcgan's {target:,}")
    return lo


@functools.lru_cache(maxsize=64)   # solved once per (protocol, variant): a run asks for its ArchSpec more than once
def match_fc_widths(spec: ArchSpec, paper: ArchSpec, builder=build, name: str = "variant") -> ArchSpec:
    """``spec`` with G's and D's FC hidden layers as wide as keeps each network's parameters within
    MATCH_TOLERANCE of ``paper``'s (dcgan under the same protocol): solved per network, since G's FC layers
    replace part of its projection while D's come on top of its head (so D's are far narrower)."""
    if spec.fc_hidden < 1:
        raise SpecError(f"variant {name!r}: match_params solves for FC hidden widths, but fc_hidden is 0")
    g_target, d_target = _param_counts(build, paper)
    g = _widest(lambda w: _param_counts(builder, replace(spec, g_fc_width=w))[0], g_target, f"variant {name!r}, G")
    d = _widest(lambda w: _param_counts(builder, replace(spec, d_fc_width=w))[1], d_target, f"variant {name!r}, D")
    return replace(spec, g_fc_width=g, d_fc_width=d)


def _nearest(count: Callable[[int], int], target: int) -> int:
    """The width w >= 1 whose count(w) is nearest target (count grows with w)."""
    lo, hi = 0, 1            # count(lo) < target <= count(hi), width 0 standing for "below any target"
    while count(hi) < target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    return hi if lo == 0 or count(hi) - target <= target - count(lo) else lo


@functools.lru_cache(maxsize=64)   # solved once per (protocol, variant), as match_fc_widths
def match_stage_widths(spec: ArchSpec, paper: ArchSpec, builder=build, name: str = "variant") -> ArchSpec:
    """``spec`` with G's and D's stage widths (the channels every stage doubles from) solved so that each
    network's parameters are nearest ``paper``'s (dcgan under the same protocol): a change that widens a network
    (maxout's k pieces) is paid for with fewer channels, and a network the variant leaves alone keeps the
    protocol's width. The FLOPs follow the parameters (every stage's convs scale alike). Whole channels cannot
    always come within MATCH_TOLERANCE at tiny widths (8 at 16 px); what is left shows in ``confound_ratios``."""
    g_target, d_target = _param_counts(build, paper)
    g = _nearest(lambda w: _param_counts(builder, replace(spec, g_matched_width=w))[0], g_target)
    d = _nearest(lambda w: _param_counts(builder, replace(spec, d_matched_width=w))[1], d_target)
    return replace(spec, g_matched_width=None if g == spec.g_width else g,
                   d_matched_width=None if d == spec.d_width else d)


# match_params -> the solver: (the variant's ArchSpec, dcgan's under the protocol, builder, name) -> ArchSpec
MATCHERS: dict[bool | str, Callable[..., ArchSpec]] = {True: match_fc_widths, "fc": match_fc_widths,
                                                        "width": match_stage_widths}


def _paper(name: str, *, rule: str, description: str, expects: Mapping[str, str], arch: Mapping[str, Any] = {},
           optim: OptimSpec = OptimSpec(), match_params: bool | str = False) -> Variant:
    """A variant that breaks one of the paper's rules; its claim is that rule's claim (``RULES``)."""
    return Variant(name, rule=rule, description=description, claim=RULES[rule].claim, expects=expects, arch=arch,
                   optim=optim, match_params=match_params)


WORSE_FID = {"fid": "worse"}

VARIANTS: list[Variant] = [
    Variant("dcgan", rule=NO_RULE, description="the paper's network and optimizer: the baseline"),
    # R1: learned up/downsampling
    _paper("d-maxpool", rule="R1", description="D: stride-1 conv + 2x2 max-pool instead of strided conv",
           expects=WORSE_FID, arch={"d_downsample": "maxpool"}),
    _paper("d-avgpool", rule="R1", description="D: stride-1 conv + 2x2 average-pool instead of strided conv",
           expects=WORSE_FID, arch={"d_downsample": "avgpool"}),
    _paper("g-upsample-nearest", rule="R1", description="G: nearest upsample + conv instead of fractional-strided conv",
           expects=WORSE_FID, arch={"g_upsample": "nearest"}),
    _paper("g-upsample-bilinear", rule="R1", description="G: bilinear upsample + conv instead of fractional-strided conv",
           expects=WORSE_FID, arch={"g_upsample": "bilinear"}),
    _paper("d-pool-learned", rule="R1",
           description="control: d-avgpool with its pool learned (a 2x2 stride-2 depthwise conv that starts as the "
                       "average pool): pooling's cost, learned downsampling",
           expects={"fid": "same"}, arch={"d_downsample": "learned"}),
    _paper("g-upsample-learned", rule="R1",
           description="control: g-upsample-nearest with its upsample learned (a 2x2 stride-2 depthwise "
                       "fractional-strided conv that starts as nearest): its cost, learned upsampling",
           expects={"fid": "same"}, arch={"g_upsample": "learned"}),
    # R2: batchnorm placement
    # (a layer that loses BN keeps BN's beta as a bias: ArchSpec.bias="lost-bn")
    _paper("no-bn", rule="R2", description="no batchnorm in G or D (a bias where BN was)",
           expects={"fid": "worse", "modes": "worse"}, arch={"g_bn": "none", "d_bn": "none"}),
    _paper("no-bn-gen", rule="R2", description="no batchnorm in G (a bias where BN was)",
           expects={"fid": "worse", "modes": "worse"}, arch={"g_bn": "none"}),
    _paper("no-bn-disc", rule="R2", description="no batchnorm in D (a bias where BN was)", expects=WORSE_FID,
           arch={"d_bn": "none"}),
    _paper("no-bn-bias-free", rule="R2",
           description="control: no batchnorm and no bias anywhere, N(0, 0.02) init (G(z) starts ~100x too small)",
           expects={"fid": "worse", "modes": "worse"}, arch={"g_bn": "none", "d_bn": "none", "bias": "none"}),
    _paper("no-bn-he-init", rule="R2",
           description="control: no batchnorm, a bias where BN was, He init (fan-in, each activation's gain)",
           expects={"modes": "worse", "fid": "worse"}, arch={"g_bn": "none", "d_bn": "none", "init": "he"}),
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
    _paper("fc-hidden-matched", rule="R3",
           description="control: fc-hidden, each FC layer as wide as keeps G's and D's parameters within 10% of "
                       "dcgan's",
           expects=WORSE_FID, arch={"fc_hidden": 1}, match_params=True),
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
           expects={"fid_auc": "same"}, arch={"g_out": "sigmoid"}),   # bounded too: see claim R4.bounded-sigmoid
    # R5: D's activations
    _paper("d-relu", rule="R5", description="D: ReLU instead of LeakyReLU(0.2)", expects=WORSE_FID,
           arch={"d_act": "relu"}),
    _paper("d-maxout", rule="R5", description="D: maxout (k=2) instead of LeakyReLU, as in the original GAN",
           expects=WORSE_FID, arch={"d_act": "maxout"}),
    _paper("d-maxout-matched", rule="R5",
           description="control: d-maxout with D's stage width solved so that its parameters (and FLOPs) are "
                       "nearest dcgan's (width 23 for 32 at 32 px: within 5%)",
           expects=WORSE_FID, arch={"d_act": "maxout"}, match_params="width"),
    # R6: optimizer and init
    _paper("adam-beta1-0.9", rule="R6", description="Adam beta1 0.9 instead of 0.5",
           expects={"sample_oscillation": "worse", "loss_oscillation": "worse"}, optim=adam_both(betas=(0.9, 0.999))),
    _paper("adam-lr-1e-3", rule="R6", description="Adam learning rate 1e-3 instead of 2e-4",
           expects={"fid": "worse", "diverged": "worse"}, optim=adam_both(lr=1e-3)),
    _paper("default-init", rule="R6", description="PyTorch's default init instead of N(0, 0.02)", expects=WORSE_FID,
           arch={"init": "default"}),
]


BASELINE = VARIANTS[0]


# ---- confounds -----------------------------------------------------------------------------------------

CONFOUND_RATIO = 1.25   # a quantity this many times the baseline's, either way, confounds the comparison
CONFOUNDS = ("g_params", "d_params", "g_flops", "d_flops", "g_lr", "d_lr")


def network_size(variant: Variant, base: ArchSpec) -> dict[str, int]:
    """G's and D's parameters and forward FLOPs per image for ``variant`` under ``base``. Built on the meta device
    (no memory, no random numbers drawn); a builder that cannot run there is built on the CPU with the global
    random state put back afterwards, so calling this never changes a run's weights."""
    spec = variant.arch_spec(base)
    z = torch.zeros(1, spec.z_dim)
    x = torch.zeros(1, spec.channels, spec.resolution, spec.resolution)

    def measure(device: str) -> dict[str, int]:
        with torch.device(device):
            G, D = variant.build(base)
        return {"g_params": count_params(G), "d_params": count_params(D),
                "g_flops": flops_per_image(G, z.to(device)), "d_flops": flops_per_image(D, x.to(device))}

    try:
        return measure("meta")
    except (NotImplementedError, RuntimeError):
        with torch.random.fork_rng(devices=[]):
            return measure("cpu")


def confound_ratios(variant: Variant, base: ArchSpec, baseline: Variant = BASELINE) -> dict[str, float]:
    """``variant``'s quantities over ``baseline``'s (dcgan) under the protocol's ArchSpec ``base``: one float per
    name in CONFOUNDS (G and D parameters, G and D FLOPs per image, G and D Adam learning rates)."""
    v, b = network_size(variant, base), network_size(baseline, base)
    ratios = {k: v[k] / b[k] for k in v}
    ratios["g_lr"] = variant.optim.g.lr / baseline.optim.g.lr
    ratios["d_lr"] = variant.optim.d.lr / baseline.optim.d.lr
    return {k: float(ratios[k]) for k in CONFOUNDS}


def confounded(ratios: Mapping[str, float], limit: float = CONFOUND_RATIO) -> list[str]:
    """The quantities of ``confound_ratios`` more than ``limit`` times the baseline's, either way."""
    return [k for k, r in ratios.items() if not 1 / limit <= r <= limit]


@hookimpl
def ganbench_variants() -> list[Variant]:
    return VARIANTS


@hookimpl
def ganbench_rules() -> list[Rule]:
    return list(RULES.values())
