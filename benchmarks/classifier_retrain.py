"""How much FID moves when the MNIST 32 px classifier is trained again with the same code and seed at another
thread count: trains it at THREADS into OUT (once), then scores 10,000 samples of each run's checkpoint through
the cached classifier and through the new one.

  GANBENCH_DATA=../shared/datasets python benchmarks/classifier_retrain.py 2 /tmp/clf \
      results/study/study/dcgan/seed-0 ...

Measured 2026-12-01 (AVX2, study checkpoints): at 1 thread the weights are the cached ones bit for bit; at 2
threads FID 0.94-0.99x (results/published/README.md, "Setting")."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from torch_fidelity import register_feature_extractor
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ganbench.data import load_dataset, to_uint8
from ganbench.generate import latent, sample, trained
from ganbench.metrics import quality as Q
from ganbench.metrics.features import (DOMAIN_LAYER, FAMILIES, DomainExtractor, Extractor, classifier_path,
                                       train_classifier, weights_digest)

threads, out = int(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
torch.set_num_threads(threads)
cur = classifier_path("mnist", 32, 1)
print("current", cur, weights_digest(cur))
alt = out / f"mnist-32px-c1-v2-t{threads}.pt"
if not alt.exists():
    t = time.time()
    net, meta = train_classifier(FAMILIES["mnist"], 32, 1)
    torch.save(net.state_dict(), alt)
    alt.with_suffix(".json").write_text(json.dumps({**meta, "family": "mnist"}))
    print("trained", round(time.time() - t), "s acc", meta["accuracy"])
print("alt", alt, weights_digest(alt))
name = "ganbench-domain-mnist-32px-c1-v2"
if name not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(name, DomainExtractor)
exA = Extractor(name, cur, DOMAIN_LAYER, rgb=False, batch_size=500, label="A", cache_key="A")
exB = Extractor(name, alt, DOMAIN_LAYER, rgb=False, batch_size=500, label="B", cache_key="B")
real = load_dataset("mnist", "test", 32, 1).images
for run in sys.argv[3:]:
    r = trained(run, "cpu")
    fake = to_uint8(sample(r.G, latent(10000, r.arch.z_dim, 0), r.protocol.batch_size))
    a, b = Q.quality(fake, real, exA)["fid"], Q.quality(fake, real, exB)["fid"]
    print(run, f"FID A {a:.2f} B {b:.2f} ratio {b/a:.3f}", flush=True)
