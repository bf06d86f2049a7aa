"""The one builder: an ArchSpec in, a generator and a discriminator out.

Every axis of the ablation is a field of ``ArchSpec``; every choice along an axis is looked up in a table
(``ACTIVATIONS``, ``G_INPUTS``, ``UPSAMPLERS``, ``DOWNSAMPLERS``, ``OUTPUTS``, ``D_HEADS``, ``BIAS_POLICIES``,
``INITS``), so there is no branch on a variant's name anywhere. ``generator_plan`` and ``discriminator_plan``
decide each stage's channels, BN and bias once; the builders then assemble ``nn.Sequential`` stacks of named
blocks read from input to output, like the PyTorch DCGAN example, with the shape of each stage in a comment.

Conventions (from the paper's code and the PyTorch example): the paper's network has no biases (BN's beta is
the only additive term), and a layer that loses its BN gets a bias in its place (``bias="lost-bn"``);
D returns one logit per image (the trainer uses BCE with logits); channels double per stage, so at 64 px
with width 128, G is z -> 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3 and D mirrors it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields
from typing import Callable, Union

import torch
from torch import nn

from ganbench.errors import SpecError

BNPlacement = Union[str, tuple]  # "paper" | "none" | "all", or one bool per layer (see bn_flags)


@dataclass(frozen=True)
class ArchSpec:
    resolution: int = 64            # side of the square image, a power of two: 16, 32, 64 or 128
    channels: int = 3               # image channels: 1 (grey) or 3 (colour)
    z_dim: int = 100                # size of the latent vector z ~ N(0, I)
    g_width: int = 128              # channels of G's last hidden stage; doubles per stage towards 4x4
    d_width: int = 128              # channels of D's first stage; doubles per stage towards 4x4
    g_input: str = "linear"         # "linear": project z and reshape to 4x4 (paper); "convt": 4x4 conv-transpose of a 1x1 z
    g_upsample: str = "convt"       # "convt" fractional-strided conv (paper), "nearest" or "bilinear" upsample + conv,
                                    # "learned": a learned upsample that starts as "nearest" (LearnedUpsample) + conv
    d_downsample: str = "conv"      # "conv" strided conv (paper), "maxpool" or "avgpool" after a stride-1 conv,
                                    # "learned": a learned downsample that starts as "avgpool" (LearnedPool)
    d_head: str = "linear"          # "linear": flatten + linear (paper); "conv": a final 4x4 conv; "gap": global average pooling + linear
    fc_hidden: int = 0              # fully connected hidden layers before G's projection and before D's head
    fc_width: int = 1024            # units of each fully connected hidden layer
    g_fc_width: int | None = None   # units of G's FC hidden layers, where they differ from fc_width
    d_fc_width: int | None = None   # units of D's FC hidden layers, where they differ from fc_width
    g_matched_width: int | None = None   # G's stage width where a variant's parameter matching (match_params=
    d_matched_width: int | None = None   # "width") solved it; None: g_width, d_width (the protocol's)
    g_bn: BNPlacement = "paper"     # BN in G: "paper" (all but the output), "none", "all", or a bool per layer
    d_bn: BNPlacement = "paper"     # BN in D: "paper" (all but the input), "none", "all", or a bool per layer
    g_act: str = "relu"             # G's hidden activation: "relu", "leakyrelu" or "maxout"
    d_act: str = "leakyrelu"        # D's hidden activation: "relu", "leakyrelu" or "maxout"
    leaky_slope: float = 0.2        # negative slope of LeakyReLU
    maxout_k: int = 2               # pieces per maxout unit (the layer before it is k times as wide)
    g_out: str = "tanh"             # G's output: "tanh" (paper), "sigmoid" (rescaled to [-1, 1]) or "linear"
    kernel: int = 4                 # kernel of the strided convs; size-preserving convs use the largest odd one below
    bias: str = "lost-bn"           # which layers have a bias: "lost-bn" (those the paper gives BN and this spec
                                    # does not: BN's beta given back), "none" (the paper's code), "all" (every layer
                                    # that no BN follows); see BIAS_POLICIES
    init: str = "dcgan"             # "dcgan": N(0, 0.02), BN weight N(1, 0.02); "he": Kaiming normal with the gain of
                                    # the layer's activation; "default": PyTorch's own (see INITS)

    def __post_init__(self):
        _check(self, "resolution", self.resolution in (16, 32, 64, 128), "one of 16, 32, 64, 128")
        _check(self, "channels", self.channels in (1, 3), "1 or 3")
        for name in ("z_dim", "g_width", "d_width", "fc_width", "kernel"):
            _check(self, name, isinstance(getattr(self, name), int) and getattr(self, name) >= 1, "an integer >= 1")
        for name in ("g_fc_width", "d_fc_width", "g_matched_width", "d_matched_width"):
            value = getattr(self, name)
            _check(self, name, value is None or isinstance(value, int) and value >= 1, "None or an integer >= 1")
        if isinstance(self.bias, bool):  # records and TOML from before the policies: False -> "none", True -> "all"
            object.__setattr__(self, "bias", "all" if self.bias else "none")
        _check(self, "bias", self.bias in BIAS_POLICIES, ", ".join(BIAS_POLICIES) + " (or a boolean: false, true)")
        _check(self, "kernel", self.kernel >= 2, "an integer >= 2")
        _check(self, "fc_hidden", isinstance(self.fc_hidden, int) and self.fc_hidden >= 0, "an integer >= 0")
        _check(self, "maxout_k", isinstance(self.maxout_k, int) and self.maxout_k >= 2, "an integer >= 2")
        _check(self, "leaky_slope", 0.0 <= self.leaky_slope < 1.0, "a number in [0, 1)")
        _check(self, "g_input", self.g_input in G_INPUTS, " or ".join(G_INPUTS))
        _check(self, "g_upsample", self.g_upsample in UPSAMPLERS, ", ".join(UPSAMPLERS))
        _check(self, "d_downsample", self.d_downsample in DOWNSAMPLERS, ", ".join(DOWNSAMPLERS))
        _check(self, "d_head", self.d_head in D_HEADS, ", ".join(D_HEADS))
        _check(self, "fc_hidden", self.fc_hidden == 0 or D_HEADS[self.d_head].flat,
               f"0 with d_head={self.d_head!r}, which has no flat features for hidden layers")
        _check(self, "g_act", self.g_act in ACTIVATIONS, ", ".join(ACTIVATIONS))
        _check(self, "d_act", self.d_act in ACTIVATIONS, ", ".join(ACTIVATIONS))
        _check(self, "g_out", self.g_out in OUTPUTS, ", ".join(OUTPUTS))
        _check(self, "init", self.init in INITS, ", ".join(INITS))
        for name in ("g_bn", "d_bn"):
            value = getattr(self, name)
            if isinstance(value, list):  # from TOML or JSON
                object.__setattr__(self, name, tuple(value))
                value = tuple(value)
            ok = value in BN_POLICIES or (isinstance(value, tuple) and all(isinstance(v, bool) for v in value))
            _check(self, name, ok, f"one of {', '.join(BN_POLICIES)} or a list of booleans, one per layer")

    @property
    def g_fc_units(self) -> int:
        """Units of each of G's FC hidden layers."""
        return self.fc_width if self.g_fc_width is None else self.g_fc_width

    @property
    def d_fc_units(self) -> int:
        """Units of each of D's FC hidden layers."""
        return self.fc_width if self.d_fc_width is None else self.d_fc_width

    @property
    def g_stage_width(self) -> int:
        """Channels of G's last hidden stage: the matched width where one was solved, else the protocol's."""
        return self.g_width if self.g_matched_width is None else self.g_matched_width

    @property
    def d_stage_width(self) -> int:
        """Channels of D's first stage: the matched width where one was solved, else the protocol's."""
        return self.d_width if self.d_matched_width is None else self.d_matched_width

    @property
    def stages(self) -> int:
        """Number of 2x resolution changes between 4x4 and the image."""
        return int(math.log2(self.resolution // 4))

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def _check(spec: ArchSpec, name: str, ok: bool, allowed: str) -> None:
    if not ok:
        raise SpecError(f"ArchSpec.{name}={getattr(spec, name)!r} is not allowed; expected {allowed}")


# ---- the lookup tables ---------------------------------------------------------------------------------


class Maxout(nn.Module):
    """Maximum over groups of k consecutive channels (Goodfellow et al. 2013): C*k channels in, C out."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        return x.reshape(n, c // self.k, self.k, *x.shape[2:]).amax(dim=2)

    def extra_repr(self) -> str:
        return f"k={self.k}"


class ScaledSigmoid(nn.Module):
    """2 * sigmoid(x) - 1: a sigmoid output on the data's [-1, 1] range."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * torch.sigmoid(x) - 1


@functools.lru_cache(maxsize=None)
def maxout_gain(k: int) -> float:
    """The gain that keeps a maxout layer's output second moment at its input's variance: 1 / sqrt(E[M^2]) for
    M the largest of k independent standard normals (E[M^2] = 1 for k = 2; numerically, by the trapezoid rule)."""
    n, lo, hi = 8001, -9.0, 9.0
    h = (hi - lo) / (n - 1)
    total = 0.0
    for i in range(n):
        x = lo + i * h
        pdf = math.exp(-x * x / 2) / math.sqrt(2 * math.pi)
        cdf = 0.5 * (1 + math.erf(x / math.sqrt(2)))
        total += (0.5 if i in (0, n - 1) else 1.0) * x * x * k * pdf * cdf ** (k - 1)
    return 1 / math.sqrt(total * h)


@dataclass(frozen=True)
class Activation:
    make: Callable[[ArchSpec], nn.Module]
    widen: Callable[[ArchSpec], int]   # how many times wider the layer before it must be
    gain: Callable[[ArchSpec], float]  # std gain that keeps the second moment through it (Kaiming et al. 2015)


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(lambda a: nn.ReLU(inplace=True), lambda a: 1, lambda a: nn.init.calculate_gain("relu")),
    "leakyrelu": Activation(lambda a: nn.LeakyReLU(a.leaky_slope, inplace=True), lambda a: 1,
                            lambda a: nn.init.calculate_gain("leaky_relu", a.leaky_slope)),
    "maxout": Activation(lambda a: Maxout(a.maxout_k), lambda a: a.maxout_k, lambda a: maxout_gain(a.maxout_k)),
}

OUTPUTS: dict[str, Callable[[], nn.Module]] = {"tanh": nn.Tanh, "sigmoid": ScaledSigmoid, "linear": nn.Identity}

BN_POLICIES = ("paper", "none", "all")

# Which layers get an additive bias: (BN under the paper's placement, BN under this spec) -> bias.
BIAS_POLICIES: dict[str, Callable[[bool, bool], bool]] = {
    "lost-bn": lambda paper_bn, bn: paper_bn and not bn,   # BN's beta, kept where BN is taken away
    "none": lambda paper_bn, bn: False,                     # the paper's code: BN's beta is the only additive term
    "all": lambda paper_bn, bn: not bn,                     # every layer that no BN follows, outputs included
}


def _pad(k: int) -> int:
    return (k - 1) // 2


def _conv_same(a: ArchSpec, cin: int, cout: int, bias: bool) -> nn.Module:
    """A size-preserving conv (after an upsample, before a pool): the largest odd kernel <= ``kernel``."""
    k = a.kernel - 1 + a.kernel % 2
    return nn.Conv2d(cin, cout, k, stride=1, padding=k // 2, bias=bias)


def _upsample_then_conv(mode: str):
    def make(a: ArchSpec, cin: int, cout: int, bias: bool) -> list[nn.Module]:
        up = nn.Upsample(scale_factor=2, mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
        return [up, _conv_same(a, cin, cout, bias)]
    return make


class LearnedPool(nn.Conv2d):
    """A 2x2 stride-2 depthwise conv that starts as the 2x2 average pool and learns from there: pooling's cost
    (4 parameters per channel), the downsampling learned. Every init scheme leaves its start (``init_weights``)."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 2, stride=2, groups=channels, bias=False)

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, 0.25)


class LearnedUpsample(nn.ConvTranspose2d):
    """A 2x2 stride-2 depthwise fractional-strided conv that starts as nearest-neighbour upsampling (each pixel
    copied to a 2x2 block) and learns from there. Every init scheme leaves its start (``init_weights``)."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 2, stride=2, groups=channels, bias=False)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)


FIXED_START = (LearnedPool, LearnedUpsample)   # layers whose start is part of their definition, not the init's


# Each maker returns the layers that take (cin, H, W) to (cout, 2H, W) or (cout, H/2, W/2).
UPSAMPLERS: dict[str, Callable[[ArchSpec, int, int, bool], list[nn.Module]]] = {
    "convt": lambda a, cin, cout, bias: [
        nn.ConvTranspose2d(cin, cout, a.kernel, 2, _pad(a.kernel), output_padding=a.kernel % 2, bias=bias)
    ],
    "nearest": _upsample_then_conv("nearest"),
    "bilinear": _upsample_then_conv("bilinear"),
    "learned": lambda a, cin, cout, bias: [LearnedUpsample(cin), _conv_same(a, cin, cout, bias)],
}

DOWNSAMPLERS: dict[str, Callable[[ArchSpec, int, int, bool], list[nn.Module]]] = {
    "conv": lambda a, cin, cout, bias: [nn.Conv2d(cin, cout, a.kernel, 2, _pad(a.kernel), bias=bias)],
    "maxpool": lambda a, cin, cout, bias: [_conv_same(a, cin, cout, bias), nn.MaxPool2d(2)],
    "avgpool": lambda a, cin, cout, bias: [_conv_same(a, cin, cout, bias), nn.AvgPool2d(2)],
    "learned": lambda a, cin, cout, bias: [_conv_same(a, cin, cout, bias), LearnedPool(cout)],
}

@dataclass(frozen=True)
class DHead:
    features: Callable[[], list[nn.Module]]              # the 4x4 feature map -> the features the logit reads
    width: Callable[[int], int]                          # channels at 4x4 -> how many features that is
    logit: Callable[[int, bool], list[nn.Module]]        # (features, bias) -> one logit per image
    flat: bool = True                                    # FC hidden layers can sit between the two


# D's head: the 4x4 feature map -> one logit per image.
D_HEADS: dict[str, DHead] = {
    "linear": DHead(lambda: [nn.Flatten()], lambda c: c * 16, lambda n, bias: [nn.Linear(n, 1, bias=bias)]),
    "conv": DHead(lambda: [], lambda c: c,
                  lambda c, bias: [nn.Conv2d(c, 1, 4, 1, 0, bias=bias), nn.Flatten()], flat=False),
    "gap": DHead(lambda: [nn.AdaptiveAvgPool2d(1), nn.Flatten()], lambda c: c,
                 lambda n, bias: [nn.Linear(n, 1, bias=bias)]),
}

# G's input: z (or the last FC hidden layer's features) -> the 4x4 map.
G_INPUTS: dict[str, Callable[[ArchSpec, int, int, bool], list[nn.Module]]] = {
    "linear": lambda a, cin, cout, bias: [nn.Linear(cin, cout * 16, bias=bias), nn.Unflatten(1, (cout, 4, 4))],
    "convt": lambda a, cin, cout, bias: [nn.Unflatten(1, (cin, 1, 1)),
                                         nn.ConvTranspose2d(cin, cout, 4, 1, 0, bias=bias)],
}


# ---- BN placement ------------------------------------------------------------------------------------


def bn_flags(placement: BNPlacement, n_layers: int, exempt: int, network: str) -> tuple[bool, ...]:
    """One bool per layer. ``exempt`` is the layer the paper leaves without BN (G's output, D's input)."""
    if isinstance(placement, tuple):
        if len(placement) != n_layers:
            raise SpecError(
                f"ArchSpec.{network}_bn has {len(placement)} entries but this {network.upper()} has {n_layers} "
                "layers that can take BN"
            )
        return placement
    if placement == "none":
        return (False,) * n_layers
    flags = [True] * n_layers
    if placement == "paper":
        flags[exempt] = False
    return tuple(flags)


def g_layer_count(a: ArchSpec) -> int:
    """Layers of G that may carry BN: FC hidden layers, the input projection, hidden stages, the output."""
    return a.fc_hidden + 1 + (a.stages - 1) + 1


def d_layer_count(a: ArchSpec) -> int:
    """Layers of D that may carry BN: the input conv, the other stages, FC hidden layers (not the logit)."""
    return a.stages + a.fc_hidden


# ---- the plan: every block's channels, BN and bias, decided once ------------------------------------


@dataclass(frozen=True)
class Stage:
    """One block of a network, decided before anything is built: layer(s), then BN, then the activation."""
    name: str            # its module name (D's logit sits in ``head`` under a number)
    cin: int             # channels (or features) in
    cout: int            # channels (or features) out, after the activation
    width: int           # channels the layer itself produces: cout times the activation's widening (maxout)
    bn: bool             # BN over the layer's output
    bias: bool           # the layer has an additive bias
    act: str | None      # a key of ACTIVATIONS; None for G's output and D's logit


def _stage(a: ArchSpec, name: str, cin: int, cout: int, act: str | None, bn: bool, paper_bn: bool) -> Stage:
    width = cout * (ACTIVATIONS[act].widen(a) if act else 1)
    return Stage(name, cin, cout, width, bn, BIAS_POLICIES[a.bias](paper_bn, bn), act)


def generator_plan(a: ArchSpec) -> list[Stage]:
    """G from z to the image: FC hidden layers, the projection to 4x4, one upsampling stage per doubling."""
    bn = bn_flags(a.g_bn, g_layer_count(a), exempt=-1, network="g")
    paper = bn_flags("paper", g_layer_count(a), exempt=-1, network="g")
    chans = [a.g_stage_width * 2 ** (a.stages - 1 - i) for i in range(a.stages)]   # per stage, the 4x4 one first
    fc = [a.g_fc_units] * a.fc_hidden
    ins = [a.z_dim, *fc]                   # the inputs of each FC layer, then of the projection
    shape = [*((f"fc{i}", ins[i], fc[i]) for i in range(a.fc_hidden)),
             ("project", ins[-1], chans[0]),
             *((f"up{i}", chans[i - 1], chans[i]) for i in range(1, a.stages)),
             ("output", chans[-1], a.channels)]
    acts = [a.g_act] * (len(shape) - 1) + [None]
    return [_stage(a, name, cin, cout, act, b, p) for (name, cin, cout), act, b, p in zip(shape, acts, bn, paper)]


def discriminator_plan(a: ArchSpec) -> list[Stage]:
    """D from the image to one logit: one downsampling stage per halving, FC hidden layers, the logit."""
    bn = bn_flags(a.d_bn, d_layer_count(a), exempt=0, network="d") + (False,)   # the logit never has BN
    paper = bn_flags("paper", d_layer_count(a), exempt=0, network="d") + (False,)
    chans = [a.d_stage_width * 2 ** i for i in range(a.stages)]                       # per stage, the first one first
    flat = D_HEADS[a.d_head].width(chans[-1])
    fc = [a.d_fc_units] * a.fc_hidden
    ins = [flat, *fc]                      # the inputs of each FC layer, then of the logit
    shape = [*((f"down{i}", ([a.channels] + chans)[i], chans[i]) for i in range(a.stages)),
             *((f"fc{i}", ins[i], fc[i]) for i in range(a.fc_hidden)),
             ("logit", ins[-1], 1)]
    acts = [a.d_act] * (len(shape) - 1) + [None]
    return [_stage(a, name, cin, cout, act, b, p) for (name, cin, cout), act, b, p in zip(shape, acts, bn, paper)]


# ---- the builder -------------------------------------------------------------------------------------

WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _block(a: ArchSpec, layers: list[nn.Module], s: Stage, gains: dict[nn.Module, float | None],
           bn_kind: str = "2d") -> nn.Sequential:
    """The stage's layers, then BN over their ``width`` outputs, then the activation (which may narrow them to
    ``cout``). Notes in ``gains`` the gain of that activation for each weighted layer (for ``init="he"``)."""
    mods = list(layers)
    if s.bn:
        mods.append(nn.BatchNorm2d(s.width) if bn_kind == "2d" else nn.BatchNorm1d(s.width))
    if s.act is not None:
        mods.append(ACTIVATIONS[s.act].make(a))
    gains.update({m: ACTIVATIONS[s.act].gain(a) if s.act else None for m in layers if isinstance(m, WEIGHTED)})
    return nn.Sequential(*mods)


def build_generator(a: ArchSpec) -> nn.Sequential:
    plan = generator_plan(a)
    fc, project, ups, output = plan[:a.fc_hidden], plan[a.fc_hidden], plan[a.fc_hidden + 1:-1], plan[-1]
    g, gains = nn.Sequential(), {}
    # z -> (FC hidden layers of g_fc_units)
    for s in fc:
        g.add_module(s.name, _block(a, [nn.Linear(s.cin, s.width, bias=s.bias)], s, gains, "1d"))
    # -> g_width*2^(stages-1) x 4 x 4
    layers = G_INPUTS[a.g_input](a, project.cin, project.width, project.bias)
    g.add_module(project.name, _block(a, layers, project, gains))
    # -> twice the size, half the channels, per stage
    for s in ups:
        g.add_module(s.name, _block(a, UPSAMPLERS[a.g_upsample](a, s.cin, s.width, s.bias), s, gains))
    # g_width x res/2 x res/2 -> channels x res x res
    image = _block(a, UPSAMPLERS[a.g_upsample](a, output.cin, output.width, output.bias), output, gains)
    image.append(OUTPUTS[a.g_out]())
    g.add_module(output.name, image)
    init_weights(g, a.init, gains)
    return g


def build_discriminator(a: ArchSpec) -> nn.Sequential:
    plan = discriminator_plan(a)
    downs, fc, logit = plan[:a.stages], plan[a.stages:-1], plan[-1]
    head = D_HEADS[a.d_head]
    d, gains = nn.Sequential(), {}
    # channels x res x res -> d_stage_width x res/2 x res/2 -> ... -> d_stage_width*2^(stages-1) x 4 x 4
    for s in downs:
        d.add_module(s.name, _block(a, DOWNSAMPLERS[a.d_downsample](a, s.cin, s.width, s.bias), s, gains))
    # -> the head's features -> (FC hidden layers of d_fc_units) -> one logit per image, shape (N,)
    top = nn.Sequential(*head.features())
    for s in fc:
        top.add_module(s.name, _block(a, [nn.Linear(s.cin, s.width, bias=s.bias)], s, gains, "1d"))
    top.extend(head.logit(logit.cin, logit.bias))
    top.append(nn.Flatten(0))
    d.add_module("head", top)
    init_weights(d, a.init, gains)
    return d


# ---- initialisation ----------------------------------------------------------------------------------


def fan_in(m: nn.Module) -> float:
    """How many inputs each output of a layer sums, away from the borders: in_features for a linear layer,
    in_channels * k * k for a conv, in_channels * k * k / stride^2 for a fractional-strided conv (each output
    pixel meets k / stride taps per axis). Counted for inputs larger than the kernel: G's 4x4 conv-transpose
    from a 1x1 z (``g_input="convt"``) sums in_channels inputs, not 16 times that."""
    if isinstance(m, nn.Linear):
        return float(m.in_features)
    k = math.prod(m.kernel_size)
    if isinstance(m, nn.ConvTranspose2d):
        return m.in_channels * k / math.prod(m.stride)
    return float(m.in_channels * k)


def _paper_init(m: nn.Module, gain: float | None) -> None:
    """Every conv and linear weight N(0, 0.02), BN weight N(1, 0.02), biases 0."""
    if isinstance(m, WEIGHTED):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, BATCHNORMS):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def _he_init(m: nn.Module, gain: float | None) -> None:
    """A layer followed by a hidden activation: N(0, gain / sqrt(fan_in)), the gain of that activation (He et al.
    2015, fan-in mode), so each hidden layer keeps the scale BN would have given it; G's output and D's logit
    (no hidden activation after them) and BN as the paper's init."""
    if isinstance(m, WEIGHTED) and gain is not None:
        nn.init.normal_(m.weight, 0.0, gain / math.sqrt(fan_in(m)))
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    else:
        _paper_init(m, gain)


# name -> how it initialises one module, given the gain of the activation after it (None: none follows)
INITS: dict[str, Callable[[nn.Module, float | None], None]] = {
    "dcgan": _paper_init,
    "he": _he_init,
    "default": lambda m, gain: None,   # PyTorch's own, as the layers were made
}


def init_weights(net: nn.Module, scheme: str, gains: dict[nn.Module, float | None] | None = None) -> None:
    """Initialise every module of ``net`` in order by ``INITS[scheme]``; ``gains`` maps a weighted layer to the
    gain of the activation after it (the builder notes them; a layer not in it is initialised as an output).
    A layer of ``FIXED_START`` gets its own start (the fixed resampling it learns from) under every scheme."""
    init, gains = INITS[scheme], gains or {}
    for m in net.modules():
        if isinstance(m, FIXED_START):
            m.reset_parameters()
        else:
            init(m, gains.get(m))


def build(a: ArchSpec) -> tuple[nn.Sequential, nn.Sequential]:
    return build_generator(a), build_discriminator(a)
