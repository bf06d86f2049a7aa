"""Training learns: a short run of the paper's network on the embedded digits must move its quality metric
far from where it started. This is the test that fails when the GAN stops learning (G's loss inverted, D
never stepped), which the record, metric and executor tests cannot see.

Margins, measured on this project's CPU (smoke protocol, 1000 steps, FID with the digits domain
classifier on 256 images): FID fell from 854-940 at initialisation to 232-365, a ratio of 2.3-3.8 over
seeds 0-3; with G's loss inverted or D's optimizer step removed it did not fall by 1.5x
(`python benchmarks/learning_margin.py 1000 0,1,2,3`; its docstring says how the broken cases were run).
The test asks for 1.5x.
"""

import json

import torch

from ganbench.data import to_uint8
from ganbench.metrics import quality
from ganbench.metrics.features import choose_extractor
from ganbench.protocol import resolve
from ganbench.record import RunSpec
from ganbench.train import Trainer, run_one

STEPS = 1000
MIN_RATIO = 1.5       # FID at initialisation / FID after STEPS: measured 2.3-3.8 when training works


def test_a_short_training_on_digits_lowers_fid_clearly(tmp_path, restore_threads):
    protocol = resolve("smoke", [f"steps={STEPS}", f"eval_every={STEPS}", 'metrics=["quality"]', "threads=1"])
    spec = RunSpec(protocol, "dcgan", 1, tmp_path)
    untrained = Trainer(spec)
    untrained.setup()            # the same seed's networks before the first step
    extractor = choose_extractor(protocol, untrained.dataset)
    real = quality.reference_subset(untrained.reference.images, protocol.n_real)
    with torch.no_grad():
        before = quality.quality(to_uint8(untrained.sampler(0)(protocol.n_final)), real, extractor)["fid"]

    assert run_one(spec).status == "complete"
    after = json.loads((spec.run_dir / "summary.json").read_text())["final"]["fid"]
    assert after * MIN_RATIO < before, f"FID {before:.1f} at initialisation, {after:.1f} after {STEPS} steps"
