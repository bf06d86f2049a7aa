"""Seeds trained together (``ganbench.batched``) against one seed through the trainer, in images per second.

    python benchmarks/batched_seeds.py [--k 1 --k 2 --k 4] [--threads 1 --threads 2] [--steps 6] [--reps 3]
        [--device cpu] [--precision fp32] [--set key=value ...]
    python benchmarks/batched_seeds.py --precision-cost      # the trainer at fp32 and bf16 autocast

Default configuration: dcgan on the embedded digits at 32 px, widths 32, batch 64 (the ``quick`` protocol).
"img/s per seed-step" counts every seed's images: K seeds x batch x steps / seconds, so K seeds together
beat K runs one after another exactly when the figure for K exceeds the trainer's. Repetitions alternate
the configurations; the table shows medians.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ganbench.batched import SeedStack
from ganbench.protocol import resolve
from ganbench.record import RunSpec
from ganbench.train import STEP_STATS, Trainer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def trainer_ips(proto, variant: str, steps: int, warmup: int = 2) -> float:
    """Images per second of one seed through ``Trainer.train_step``."""
    trainer = Trainer(RunSpec(proto, variant, 0))
    trainer.setup()
    acc = torch.zeros(len(STEP_STATS), device=trainer.device)
    for s in range(warmup):
        trainer.train_step(s, acc)
    _sync(trainer.device)
    t0 = time.perf_counter()
    for s in range(warmup, warmup + steps):
        trainer.train_step(s, acc)
    acc.tolist()
    _sync(trainer.device)
    return steps * proto.batch_size / (time.perf_counter() - t0)


def stack_ips(proto, variant: str, k: int, steps: int, warmup: int = 2) -> float:
    """Images per second, all seeds counted, of ``k`` seeds through ``SeedStack.train_step``."""
    stack = SeedStack(proto, variant, list(range(k)))
    stack.setup()
    if stack.problem:
        raise SystemExit(f"{variant} cannot be batched: {stack.problem}")
    for s in range(warmup):
        stack.train_step(s)
    _sync(stack.device)
    t0 = time.perf_counter()
    for s in range(warmup, warmup + steps):
        last = stack.train_step(s)
    last.tolist()
    _sync(stack.device)
    return k * steps * proto.batch_size / (time.perf_counter() - t0)


def table(args) -> list[dict]:
    rows = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        proto = resolve(args.protocol, [f'device="{args.device}"', f'precision="{args.precision}"', *args.set])
        runs = {"trainer": [], **{f"K={k}": [] for k in args.k}}
        for _ in range(args.reps):
            runs["trainer"].append(trainer_ips(proto, args.variant, args.steps))
            for k in args.k:
                runs[f"K={k}"].append(stack_ips(proto, args.variant, k, args.steps))
        base = statistics.median(runs["trainer"])
        for name, values in runs.items():
            m = statistics.median(values)
            rows.append({"threads": threads, "config": name, "img/s per seed-step": m, "vs trainer": m / base,
                         "runs": values})
    return rows


def precision_cost(args) -> None:
    """The trainer at fp32 and at bf16 autocast, alternating, on this device."""
    torch.set_num_threads(args.threads[-1])
    out = {"fp32": [], "bf16": []}
    for _ in range(args.reps):
        for precision in out:
            proto = resolve(args.protocol, [f'device="{args.device}"', f'precision="{precision}"', *args.set])
            out[precision].append(trainer_ips(proto, args.variant, args.steps))
    fp32, bf16 = statistics.median(out["fp32"]), statistics.median(out["bf16"])
    print(f"{args.variant}, protocol {args.protocol} {list(args.set)}, {args.device}, {torch.get_num_threads()} threads, "
          f"capability {torch.backends.cpu.get_cpu_capability()}, medians of {args.reps}:")
    print(f"  fp32 {fp32:8.1f} img/s  {['%.1f' % v for v in out['fp32']]}")
    print(f"  bf16 {bf16:8.1f} img/s  {['%.1f' % v for v in out['bf16']]}  ({fp32 / bf16:.1f}x slower)" if bf16 < fp32
          else f"  bf16 {bf16:8.1f} img/s  ({bf16 / fp32:.2f}x faster)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, action="append", help="seeds together (repeatable; default 1, 2, 4)")
    ap.add_argument("--threads", type=int, action="append", help="torch threads (repeatable; default 1, 2)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps (after 2 warm-up steps)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--variant", default="dcgan")
    ap.add_argument("--protocol", default="quick")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="protocol override (repeatable)")
    ap.add_argument("--precision-cost", action="store_true", help="measure the trainer at fp32 against bf16 instead")
    args = ap.parse_args()
    args.k = args.k or [1, 2, 4]
    args.threads = args.threads or [1, 2]
    if args.precision_cost:
        precision_cost(args)
        return
    rows = table(args)
    print(f"{args.variant}, protocol {args.protocol} {list(args.set)}, {args.device}, {args.precision}, "
          f"{args.steps} timed steps, medians of {args.reps}")
    print(f"{'threads':>7}  {'config':<8} {'img/s per seed-step':>20} {'vs trainer':>10}  runs")
    for r in rows:
        print(f"{r['threads']:>7}  {r['config']:<8} {r['img/s per seed-step']:>20.1f} {r['vs trainer']:>10.2f}  "
              f"{['%.0f' % v for v in r['runs']]}")


if __name__ == "__main__":
    main()
