"""Training throughput: ganbench's trainer against a plain reference loop, A/B in one process.

The reference trains the way the well-known PyTorch DCGAN example does: a DataLoader over a torchvision
data set with per-image transforms (resize, to-tensor, normalise), a sigmoid output with BCELoss, and
``.item()`` on the losses every step. Both train the same network (the PyTorch example's configuration from
ganbench's builder) with the same batch on the same device, on real MNIST. Repetitions alternate A and B
so that both see the same machine state.

    GANBENCH_DATA=../shared/datasets python benchmarks/throughput.py [--steps 30] [--reps 3] [--device cpu]
        [--precision fp32 --precision bf16]

Prints images per second of each, per configuration, and the ratio ganbench / reference, for ganbench at
each precision asked (default: fp32, the protocols' default, and bf16 autocast); the reference is fp32, as
the example trains.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchvision
import torchvision.transforms as T

from ganbench.data import data_root
from ganbench.protocol import resolve
from ganbench.record import RunSpec
from ganbench.train import Trainer

CONFIGS = [  # (resolution, width, batch)
    (32, 32, 128),
    (64, 64, 128),
]


def reference_loop(G, D, loader, steps: int, z_dim: int, device: torch.device) -> float:
    """Images per second of the PyTorch-example training loop over ``steps`` steps (after 2 warm-up)."""
    opt_d = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    criterion = torch.nn.BCELoss()
    it = iter(loader)
    n_images, t0 = 0, None
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        try:
            real, _ = next(it)
        except StopIteration:
            it = iter(loader)
            real, _ = next(it)
        real = real.to(device)
        b = real.size(0)
        label = torch.full((b,), 1.0, device=device)
        D.zero_grad()
        err_real = criterion(torch.sigmoid(D(real)), label)
        err_real.backward()
        noise = torch.randn(b, z_dim, device=device)
        fake = G(noise)
        label.fill_(0.0)
        err_fake = criterion(torch.sigmoid(D(fake.detach())), label)
        err_fake.backward()
        opt_d.step()
        G.zero_grad()
        label.fill_(1.0)
        err_g = criterion(torch.sigmoid(D(fake)), label)
        err_g.backward()
        opt_g.step()
        _ = (err_real + err_fake).item(), err_g.item()   # the example logs every step
        if i >= 2:
            n_images += b
    return n_images / (time.perf_counter() - t0)


def ganbench_loop(trainer: Trainer, steps: int) -> float:
    acc = torch.zeros(6, device=trainer.device)
    for s in range(2):
        trainer.train_step(s, acc)
    t0 = time.perf_counter()
    for s in range(2, steps + 2):
        trainer.train_step(s, acc)
    acc.tolist()  # the trainer reads its statistics once per evaluation
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * trainer.protocol.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference (the example uses 2)")
    ap.add_argument("--precision", action="append", choices=["fp32", "bf16"],
                    help="ganbench's training precision (repeatable; default: fp32 and bf16)")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    precisions = args.precision or ["fp32", "bf16"]
    for res, width, batch in CONFIGS:
        trainers = {}
        for precision in precisions:
            proto = resolve("smoke", ['dataset="mnist"', f"resolution={res}", "channels=1", f"g_width={width}",
                                      f"d_width={width}", "z_dim=100", f"batch_size={batch}",
                                      f'device="{args.device}"', f'precision="{precision}"'])
            trainers[precision] = Trainer(RunSpec(proto, "dcgan", 0))
            trainers[precision].setup()
        ds = torchvision.datasets.MNIST(str(data_root()), train=True, download=False, transform=T.Compose([
            T.Resize(res), T.ToTensor(), T.Normalize((0.5,), (0.5,))]))
        loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=args.workers,
                                             drop_last=True, persistent_workers=args.workers > 0)
        G, D = trainers[precisions[0]].variant.build(proto.arch())   # the same network, built afresh
        G, D = G.to(device), D.to(device)
        ours, ref = {precision: [] for precision in precisions}, []
        for _ in range(args.reps):
            for precision, trainer in trainers.items():
                ours[precision].append(ganbench_loop(trainer, args.steps))
            ref.append(reference_loop(G, D, loader, args.steps, proto.z_dim, device))
        r = statistics.median(ref)
        print(f"{res} px, width {width}, batch {batch} (medians of {args.reps}):")
        print(f"  reference fp32  {r:8.1f} img/s          {['%.1f' % v for v in ref]}")
        for precision, values in ours.items():
            o = statistics.median(values)
            print(f"  ganbench  {precision}  {o:8.1f} img/s  {o / r:4.2f}x  {['%.1f' % v for v in values]}")


if __name__ == "__main__":
    main()
