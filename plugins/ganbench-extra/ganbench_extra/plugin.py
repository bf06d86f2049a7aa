"""Three ideas from after the DCGAN paper, as ganbench variants of a rule of this plugin's own ("extra"),
with the claims the report judges them on.

Two need networks the ArchSpec cannot describe, so they bring their own builder; each starts from
``ganbench.arch.build`` (the one builder) and changes only what the idea is about. The third is a plain
ArchSpec diff, like every built-in variant.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from ganbench.arch import ArchSpec, build, init_weights
from ganbench.claims import Claim
from ganbench.hookspecs import hookimpl
from ganbench.variants import Rule, Variant

RULE = "extra"


# ---- sn-disc: spectral normalisation instead of batchnorm in D ----------------------------------------


def build_sn_disc(spec: ArchSpec) -> tuple[nn.Module, nn.Module]:
    """The paper's G; D without BN and with every conv and linear weight divided by its spectral norm."""
    G, D = build(replace(spec, d_bn="none"))
    for module in list(D.modules()):
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            spectral_norm(module)  # in place: registers weight = original / sigma(original)
    return G, D


# ---- d-minibatch-std: a minibatch standard deviation channel before D's head --------------------------


class MinibatchStdDev(nn.Module):
    """Karras et al. 2018, section 3: append one feature map holding the standard deviation of each
    feature over a group of images, averaged over features and positions, so D can see a batch's
    (lack of) variation. (N, C, H, W) -> (N, C + 1, H, W).

    Groups have ``group_size`` images, or the largest divisor of the batch below it (one image: a
    group of one, whose deviation is zero).
    """

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group_size = group_size
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = next(k for k in range(min(self.group_size, n), 0, -1) if n % k == 0)
        y = x.reshape(g, n // g, c, h, w)
        y = (y.var(dim=0, unbiased=False) + self.eps).sqrt()      # (n/g, C, H, W): std within each group
        y = y.mean(dim=(1, 2, 3)).reshape(n // g, 1, 1, 1)        # one number per group
        y = y.repeat(g, 1, h, w)                                  # image i belongs to group i mod n/g
        return torch.cat([x, y.to(x.dtype)], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"


def _widened(layer: nn.Module, channels: int) -> nn.Module:
    """A copy of D's first head layer that takes one more input channel (its features per channel kept)."""
    bias = layer.bias is not None
    if isinstance(layer, nn.Conv2d):
        return nn.Conv2d(layer.in_channels + 1, layer.out_channels, layer.kernel_size, layer.stride,
                         layer.padding, bias=bias)
    per_channel = layer.in_features // channels  # 16 after a flatten of 4x4, 1 after global pooling
    return nn.Linear(layer.in_features + per_channel, layer.out_features, bias=bias)


def build_minibatch_std(spec: ArchSpec) -> tuple[nn.Module, nn.Module]:
    """The paper's networks, with a ``mbstd`` layer between D's last stage and its head."""
    G, D = build(spec)
    channels = spec.d_width * 2 ** (spec.stages - 1)  # D's features at 4x4
    head = D.head
    # the head's first weighted layer (the logit, or the first FC hidden layer) gets the extra channel
    name, first = next((n, m) for n, m in head.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    widened = _widened(first, channels)
    init_weights(widened, spec.init)
    parent, _, leaf = name.rpartition(".")
    setattr(head.get_submodule(parent), leaf, widened)
    stages = [(n, m) for n, m in D.named_children() if n != "head"]
    return G, nn.Sequential(OrderedDict([*stages, ("mbstd", MinibatchStdDev()), ("head", head)]))


# ---- the variants ---------------------------------------------------------------------------------------


VARIANTS = [
    Variant("sn-disc", RULE, "D: spectral normalisation on every conv and linear layer instead of batchnorm",
            claim="spectral normalisation in D stabilises GAN training, is robust to the optimizer's settings, and "
                  "beat batchnorm on FID and Inception score (Miyato et al. 2018, ICLR)",
            expects={"fid": "better", "sample_oscillation": "better"},
            arch={"d_bn": "none"}, builder=build_sn_disc),
    Variant("d-minibatch-std", RULE, "D: a minibatch standard deviation channel (groups of 4) before its head",
            claim="letting D see a minibatch's feature statistics increases the variation of G's samples "
                  "(Karras et al. 2018, ICLR, 'Progressive growing of GANs', section 3)",
            expects={"modes": "better", "kl_modes": "better"},
            builder=build_minibatch_std),
    Variant("d-lrelu-0.01", RULE, "D: LeakyReLU with slope 0.01 (Maas et al. 2013) instead of 0.2",
            claim="a very leaky slope (about 0.2) works better than 0.01, which behaves almost like ReLU "
                  "(Xu et al. 2015, 'Empirical evaluation of rectified activations', on classifiers)",
            expects={"fid": "worse"},
            arch={"leaky_slope": 0.01}),
]


# Each variant's claim, judged on its first expected metric against dcgan.
CLAIMS = [Claim(f"{RULE}.{v.name}", RULE, v.claim, variants=(v.name,), metric=next(iter(v.expects)),
                direction=next(iter(v.expects.values()))) for v in VARIANTS]


@hookimpl
def ganbench_variants() -> list[Variant]:
    return VARIANTS


@hookimpl
def ganbench_rules() -> list[Rule]:
    return [Rule(RULE, "ideas from after the DCGAN paper, each a change to its D",
                 "each changes what its own claim says against the paper's network")]


@hookimpl
def ganbench_claims() -> list[Claim]:
    return CLAIMS
