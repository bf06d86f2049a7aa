"""The margins behind tests/test_learning.py: FID of the smoke protocol's dcgan at initialisation and after
STEPS steps, and their ratio, per seed (digits domain classifier, 256 images, one torch thread).

    python benchmarks/learning_margin.py STEPS SEEDS [KEY=VALUE ...]      # e.g. 1000 0,1,2,3

Measured on the project's AVX2 build machine at 1000 steps: ratios 3.01, 3.46, 3.83, 2.34 (seeds 0-3). To see
the test fail, run the same command with PYTHONPATH pointing at a copy of the package whose train.py has G's
loss inverted (``BCE(d_on_fake, zeros)``): 1.20, 1.17 (seeds 1, 2); or D's ``opt_d.step()`` removed: 0.96, 1.16.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from ganbench.data import to_uint8
from ganbench.metrics import quality
from ganbench.metrics.features import choose_extractor
from ganbench.protocol import resolve
from ganbench.record import RunSpec
from ganbench.train import Trainer, run_one


def main() -> None:
    steps, seeds, extra = int(sys.argv[1]), [int(s) for s in sys.argv[2].split(",")], sys.argv[3:]
    torch.set_num_threads(1)
    print("seed  steps  fid_init  fid_end  ratio  seconds")
    for seed in seeds:
        protocol = resolve("smoke", [f"steps={steps}", f"eval_every={steps}", 'metrics=["quality"]', *extra])
        spec = RunSpec(protocol, "dcgan", seed, Path(tempfile.mkdtemp()))
        untrained = Trainer(spec)
        untrained.setup()
        real = quality.reference_subset(untrained.reference.images, protocol.n_real)
        extractor = choose_extractor(protocol, untrained.dataset)
        before = quality.quality(to_uint8(untrained.sampler(0)(protocol.n_final)), real, extractor)["fid"]
        t0 = time.time()
        run_one(spec)
        after = json.loads((spec.run_dir / "summary.json").read_text())["final"]["fid"]
        print(f"{seed:4d}  {steps:5d}  {before:8.1f}  {after:7.1f}  {before / after:5.2f}  {time.time() - t0:7.1f}")


if __name__ == "__main__":
    main()
