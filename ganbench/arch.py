"""The one builder: an ArchSpec in, a generator and a discriminator out.

Every axis of the ablation is a field of ``ArchSpec``; every choice along an axis is looked up in a table
(``ACTIVATIONS``, ``UPSAMPLERS``, ``DOWNSAMPLERS``, ``OUTPUTS``, ``D_HEADS``), so there is no branch on a
variant's name anywhere. Both networks are ``nn.Sequential`` stacks of named blocks read from input to
output, like the PyTorch DCGAN example, with the shape of each stage in a comment.

Conventions (from the paper's code and the PyTorch example): layers carry no bias unless ``bias`` says so;
D returns one logit per image (the trainer uses BCE with logits); channels double per stage, so at 64 px
with width 128, G is z -> 4x4x1024 -> 8x8x512 -> 16x16x256 -> 32x32x128 -> 64x64x3 and D mirrors it.
"""

from __future__ import annotations

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
    g_upsample: str = "convt"       # "convt" fractional-strided conv (paper), "nearest" or "bilinear" upsample + conv
    d_downsample: str = "conv"      # "conv" strided conv (paper), "maxpool" or "avgpool" after a stride-1 conv
    d_head: str = "linear"          # "linear": flatten + linear (paper); "conv": a final 4x4 conv; "gap": global average pooling + linear
    fc_hidden: int = 0              # fully connected hidden layers before G's projection and before D's head
    fc_width: int = 1024            # units of each fully connected hidden layer
    g_bn: BNPlacement = "paper"     # BN in G: "paper" (all but the output), "none", "all", or a bool per layer
    d_bn: BNPlacement = "paper"     # BN in D: "paper" (all but the input), "none", "all", or a bool per layer
    g_act: str = "relu"             # G's hidden activation: "relu", "leakyrelu" or "maxout"
    d_act: str = "leakyrelu"        # D's hidden activation: "relu", "leakyrelu" or "maxout"
    leaky_slope: float = 0.2        # negative slope of LeakyReLU
    maxout_k: int = 2               # pieces per maxout unit (the layer before it is k times as wide)
    g_out: str = "tanh"             # G's output: "tanh" (paper), "sigmoid" (rescaled to [-1, 1]) or "linear"
    kernel: int = 4                 # kernel of the strided convs; size-preserving convs use the largest odd one below
    bias: bool = False              # give layers not followed by BN a bias (the paper's code and the example have none)
    init: str = "dcgan"             # "dcgan": N(0, 0.02) weights, BN weight N(1, 0.02); "default": PyTorch's own

    def __post_init__(self):
        _check(self, "resolution", self.resolution in (16, 32, 64, 128), "one of 16, 32, 64, 128")
        _check(self, "channels", self.channels in (1, 3), "1 or 3")
        for name in ("z_dim", "g_width", "d_width", "fc_width", "kernel"):
            _check(self, name, isinstance(getattr(self, name), int) and getattr(self, name) >= 1, "an integer >= 1")
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


@dataclass(frozen=True)
class Activation:
    make: Callable[[ArchSpec], nn.Module]
    widen: Callable[[ArchSpec], int]   # how many times wider the layer before it must be


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(lambda a: nn.ReLU(inplace=True), lambda a: 1),
    "leakyrelu": Activation(lambda a: nn.LeakyReLU(a.leaky_slope, inplace=True), lambda a: 1),
    "maxout": Activation(lambda a: Maxout(a.maxout_k), lambda a: a.maxout_k),
}

OUTPUTS: dict[str, Callable[[], nn.Module]] = {"tanh": nn.Tanh, "sigmoid": ScaledSigmoid, "linear": nn.Identity}

BN_POLICIES = ("paper", "none", "all")

INITS = ("dcgan", "default")


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


# Each maker returns the layers that take (cin, H, W) to (cout, 2H, W) or (cout, H/2, W/2).
UPSAMPLERS: dict[str, Callable[[ArchSpec, int, int, bool], list[nn.Module]]] = {
    "convt": lambda a, cin, cout, bias: [
        nn.ConvTranspose2d(cin, cout, a.kernel, 2, _pad(a.kernel), output_padding=a.kernel % 2, bias=bias)
    ],
    "nearest": _upsample_then_conv("nearest"),
    "bilinear": _upsample_then_conv("bilinear"),
}

DOWNSAMPLERS: dict[str, Callable[[ArchSpec, int, int, bool], list[nn.Module]]] = {
    "conv": lambda a, cin, cout, bias: [nn.Conv2d(cin, cout, a.kernel, 2, _pad(a.kernel), bias=bias)],
    "maxpool": lambda a, cin, cout, bias: [_conv_same(a, cin, cout, bias), nn.MaxPool2d(2)],
    "avgpool": lambda a, cin, cout, bias: [_conv_same(a, cin, cout, bias), nn.AvgPool2d(2)],
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
    "conv": DHead(lambda: [], lambda c: c, lambda c, bias: [nn.Conv2d(c, 1, 4, 1, 0, bias=bias), nn.Flatten()], flat=False),
    "gap": DHead(lambda: [nn.AdaptiveAvgPool2d(1), nn.Flatten()], lambda c: c, lambda n, bias: [nn.Linear(n, 1, bias=bias)]),
}

# G's input: z (or the last FC hidden layer's features) -> the 4x4 map.
G_INPUTS: dict[str, Callable[[ArchSpec, int, int, bool], list[nn.Module]]] = {
    "linear": lambda a, cin, cout, bias: [nn.Linear(cin, cout * 16, bias=bias), nn.Unflatten(1, (cout, 4, 4))],
    "convt": lambda a, cin, cout, bias: [nn.Unflatten(1, (cin, 1, 1)), nn.ConvTranspose2d(cin, cout, 4, 1, 0, bias=bias)],
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


def _stage(a: ArchSpec, name: str, cin: int, cout: int, act: str | None, bn: bool) -> Stage:
    width = cout * (ACTIVATIONS[act].widen(a) if act else 1)
    return Stage(name, cin, cout, width, bn, a.bias and not bn, act)


def generator_plan(a: ArchSpec) -> list[Stage]:
    """G from z to the image: FC hidden layers, the projection to 4x4, one upsampling stage per doubling."""
    bn = bn_flags(a.g_bn, g_layer_count(a), exempt=-1, network="g")
    chans = [a.g_width * 2 ** (a.stages - 1 - i) for i in range(a.stages)]   # per stage, the 4x4 one first
    fc = [a.fc_width] * a.fc_hidden
    ins = [a.z_dim, *fc]                                                      # what each FC layer and the projection read
    shape = [*((f"fc{i}", ins[i], fc[i]) for i in range(a.fc_hidden)),
             ("project", ins[-1], chans[0]),
             *((f"up{i}", chans[i - 1], chans[i]) for i in range(1, a.stages)),
             ("output", chans[-1], a.channels)]
    acts = [a.g_act] * (len(shape) - 1) + [None]
    return [_stage(a, name, cin, cout, act, b) for (name, cin, cout), act, b in zip(shape, acts, bn)]


def discriminator_plan(a: ArchSpec) -> list[Stage]:
    """D from the image to one logit: one downsampling stage per halving, FC hidden layers, the logit."""
    bn = bn_flags(a.d_bn, d_layer_count(a), exempt=0, network="d") + (False,)   # the logit never has BN
    chans = [a.d_width * 2 ** i for i in range(a.stages)]                       # per stage, the first one first
    flat = D_HEADS[a.d_head].width(chans[-1])
    fc = [a.fc_width] * a.fc_hidden
    ins = [flat, *fc]                                                          # what each FC layer and the logit read
    shape = [*((f"down{i}", ([a.channels] + chans)[i], chans[i]) for i in range(a.stages)),
             *((f"fc{i}", ins[i], fc[i]) for i in range(a.fc_hidden)),
             ("logit", ins[-1], 1)]
    acts = [a.d_act] * (len(shape) - 1) + [None]
    return [_stage(a, name, cin, cout, act, b) for (name, cin, cout), act, b in zip(shape, acts, bn)]


# ---- the builder -------------------------------------------------------------------------------------


def _block(a: ArchSpec, layers: list[nn.Module], s: Stage, bn_kind: str = "2d") -> nn.Sequential:
    """The stage's layers, then BN over their ``width`` outputs, then the activation (which may narrow them to
    ``cout``)."""
    mods = list(layers)
    if s.bn:
        mods.append(nn.BatchNorm2d(s.width) if bn_kind == "2d" else nn.BatchNorm1d(s.width))
    if s.act is not None:
        mods.append(ACTIVATIONS[s.act].make(a))
    return nn.Sequential(*mods)


def build_generator(a: ArchSpec) -> nn.Sequential:
    plan = generator_plan(a)
    fc, project, ups, output = plan[:a.fc_hidden], plan[a.fc_hidden], plan[a.fc_hidden + 1:-1], plan[-1]
    g = nn.Sequential()
    # z -> (FC hidden layers of fc_width units)
    for s in fc:
        g.add_module(s.name, _block(a, [nn.Linear(s.cin, s.width, bias=s.bias)], s, "1d"))
    # -> g_width*2^(stages-1) x 4 x 4
    g.add_module(project.name, _block(a, G_INPUTS[a.g_input](a, project.cin, project.width, project.bias), project))
    # -> twice the size, half the channels, per stage
    for s in ups:
        g.add_module(s.name, _block(a, UPSAMPLERS[a.g_upsample](a, s.cin, s.width, s.bias), s))
    # g_width x res/2 x res/2 -> channels x res x res
    image = _block(a, UPSAMPLERS[a.g_upsample](a, output.cin, output.width, output.bias), output)
    image.append(OUTPUTS[a.g_out]())
    g.add_module(output.name, image)
    init_weights(g, a.init)
    return g


def build_discriminator(a: ArchSpec) -> nn.Sequential:
    plan = discriminator_plan(a)
    downs, fc, logit = plan[:a.stages], plan[a.stages:-1], plan[-1]
    head = D_HEADS[a.d_head]
    d = nn.Sequential()
    # channels x res x res -> d_width x res/2 x res/2 -> ... -> d_width*2^(stages-1) x 4 x 4
    for s in downs:
        d.add_module(s.name, _block(a, DOWNSAMPLERS[a.d_downsample](a, s.cin, s.width, s.bias), s))
    # -> the head's features -> (FC hidden layers) -> one logit per image, shape (N,)
    top = nn.Sequential(*head.features())
    for s in fc:
        top.add_module(s.name, _block(a, [nn.Linear(s.cin, s.width, bias=s.bias)], s, "1d"))
    top.extend(head.logit(logit.cin, logit.bias))
    top.append(nn.Flatten(0))
    d.add_module("head", top)
    init_weights(d, a.init)
    return d


def init_weights(net: nn.Module, scheme: str) -> None:
    """The paper's init: every conv and linear weight N(0, 0.02), BN weight N(1, 0.02), biases 0."""
    if scheme == "default":
        return
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build(a: ArchSpec) -> tuple[nn.Sequential, nn.Sequential]:
    return build_generator(a), build_discriminator(a)


# ---- inspection (``ganbench show``) ------------------------------------------------------------------


def count_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def flops_per_image(net: nn.Module, example: torch.Tensor) -> int:
    """Forward FLOPs for one image, by torch's FLOP counter (a multiply-add counts as 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = net.training
    net.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(example[:1])
    net.train(was_training)
    return int(counter.get_total_flops())


def layer_table(net: nn.Sequential, example: torch.Tensor) -> list[dict]:
    """One row per leaf module: its path, type, output shape (for one image) and parameters."""
    rows: list[dict] = []
    hooks = []
    for name, m in net.named_modules():
        if ".parametrizations" in name:   # a parametrized weight (spectral norm): not a layer of its own
            continue
        children = [n for n, _ in m.named_children()]
        if not children or children == ["parametrizations"]:
            def hook(mod, inp, out, name=name):
                rows.append({"module": name, "type": type(mod).__name__, "output": list(out.shape[1:]),
                             "params": count_params(mod)})
            hooks.append(m.register_forward_hook(hook))
    was_training = net.training
    net.eval()
    with torch.no_grad():
        net(example[:1])
    net.train(was_training)
    for h in hooks:
        h.remove()
    return rows
