"""What a built network holds: its parameters, its FLOPs per image and a table of its layers (``ganbench
show``, the cost metric, the variants' confound ratios)."""

from __future__ import annotations

import torch
from torch import nn

WEIGHTED = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)   # layers that may carry a bias


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


OTHER = "(other parameters)"   # layer_table's row for parameters that sit in no leaf layer it lists


def layer_table(net: nn.Module, example: torch.Tensor) -> list[dict]:
    """One row per leaf module run by the forward pass: its path, type, output shape (for one image), parameters
    and whether it has a bias (None for a layer that is not a conv or linear). A parameter is counted once, in
    the first row that holds it; parameters in no listed leaf (one registered directly on a container, or in a
    layer the forward pass skips) make a last row, ``OTHER``, so the rows sum to ``count_params(net)``."""
    rows: list[dict] = []
    counted: set[int] = set()
    hooks = []

    def own(mod: nn.Module) -> int:
        new = [p for p in mod.parameters() if id(p) not in counted]
        counted.update(id(p) for p in new)
        return sum(p.numel() for p in new)

    for name, m in net.named_modules():
        if ".parametrizations" in name:   # a parametrized weight (spectral norm): not a layer of its own
            continue
        children = [n for n, _ in m.named_children()]
        if not children or children == ["parametrizations"]:
            def hook(mod, inp, out, name=name):
                rows.append({"module": name, "type": type(mod).__name__, "output": list(out.shape[1:]),
                             "params": own(mod), "bias": mod.bias is not None if isinstance(mod, WEIGHTED) else None})
            hooks.append(m.register_forward_hook(hook))
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(example[:1])
    finally:
        net.train(was_training)
        for h in hooks:
            h.remove()
    other = own(net)
    if other:
        rows.append({"module": OTHER, "type": "", "output": [], "params": other, "bias": None})
    return rows
