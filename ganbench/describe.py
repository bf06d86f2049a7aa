"""What ``ganbench show`` says about a variant: its layers, shapes, parameters, biases and FLOPs per image,
and how far it sits from dcgan on the quantities that can confound a comparison (``confound_ratios``).

Library code: returns plain data (JSON-able) and never prints; the CLI renders it.
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import torch

from ganbench.arch import ArchSpec
from ganbench.layers import count_params, flops_per_image, layer_table
from ganbench.variants import CONFOUND_RATIO, Variant, confound_ratios, confounded


def describe(variant: Variant, base: ArchSpec, by_design: Iterable[str] = ()) -> dict:
    """A variant under the protocol's ArchSpec ``base``: its resolved ArchSpec, G's and D's parameters and FLOPs
    per image, one row per layer (module, type, output shape, parameters, bias; the rows sum to the network's
    parameters), its ratios to dcgan and the names of those beyond ``CONFOUND_RATIO`` (``confounded``), less
    those the claims it tests change by design (``by_design``: ``Claim.changes``, e.g. the learning rate)."""
    spec = variant.arch_spec(base)
    with torch.random.fork_rng(devices=[]):   # showing a variant never moves the caller's random state
        G, D = variant.build(base)
    z = torch.randn(2, spec.z_dim, generator=torch.Generator().manual_seed(0))
    x = torch.randn(2, spec.channels, spec.resolution, spec.resolution, generator=torch.Generator().manual_seed(0))
    ratios = confound_ratios(variant, base)
    return {
        "variant": variant.name, "rule": variant.rule, "description": variant.description,
        "primary": variant.primary, "arch": dataclasses.asdict(spec),
        "g_params": count_params(G), "d_params": count_params(D),
        "g_flops": flops_per_image(G, z), "d_flops": flops_per_image(D, x),
        "layers": {"G": layer_table(G, z), "D": layer_table(D, x)},
        "ratios": ratios, "confounded": [q for q in confounded(ratios) if q not in by_design],
        "by_design": [q for q in confounded(ratios) if q in by_design], "confound_ratio": CONFOUND_RATIO,
    }


def describe_variant(name: str, resolution: int, width: int, channels: int, z_dim: int = 100) -> dict:
    """``describe`` for a registered variant by name, at a resolution, G and D width and channel count."""
    from ganbench.plugins import catalog

    cat = catalog()
    base = ArchSpec(resolution=resolution, channels=channels, g_width=width, d_width=width, z_dim=z_dim)
    return describe(cat.variants.get(name), base, {q for c in cat.claims if name in c.variants for q in c.changes})
