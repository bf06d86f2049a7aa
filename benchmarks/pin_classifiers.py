"""Score a study spread over machines through one feature space: its domain classifiers are published with its
records (results/published/classifiers/), and every machine that trains its runs scores them through those files.

A domain classifier is trained on first use and cached, and the same code and seed train other weights on
another machine or at another thread count, and every FID and mode count moves with them: the MNIST classifier
at 32 px trained again at 2 threads instead of 1 (accuracy 99.18% against 99.20%) scores five of the study's
runs 1-6% lower, by amounts that differ between arms (dcgan 0.96x and 0.94x, no-bn-disc 0.99x; measured with
benchmarks/classifier_retrain.py). Runs record the weights' digest beside every score and the report warns when
one protocol's runs differ in it.

  python benchmarks/pin_classifiers.py                       # copy the published ones into the cache (before training)
  python benchmarks/pin_classifiers.py --publish mnist-32px-c1-v2   # publish a cached one (after its first use)

A cached classifier of the same name with other weights is not replaced (records already scored through it
would no longer match): the command exits 2 naming both digests; remove the cached file to use the published one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ganbench.data import cache_dir
from ganbench.files import atomic_write_bytes
from ganbench.metrics.features import weights_digest

PUBLISHED = Path("results/published/classifiers")


def copy_pair(src: Path, dst: Path) -> None:
    """The weights, then the .json: a cache entry is read only when its .json exists (features.load_classifier)."""
    for suffix in (".pt", ".json"):
        atomic_write_bytes(dst.with_suffix(suffix), src.with_suffix(suffix).read_bytes())


def install(cache: Path) -> int:
    status = 0
    for src in sorted(PUBLISHED.glob("*.pt")):
        dst = cache / src.name
        if not dst.with_suffix(".json").exists():
            copy_pair(src, dst)
            print(f"installed {src.stem} ({weights_digest(dst)}) into {cache}")
        elif weights_digest(dst) != weights_digest(src):
            print(f"{dst}: weights {weights_digest(dst)}, but the study's records were scored through {src} "
                  f"({weights_digest(src)}); remove {dst} and its .json to score through the published one",
                  file=sys.stderr)
            status = 2
        else:
            print(f"{src.stem}: the cache holds the published weights ({weights_digest(src)})")
    return status


def publish(cache: Path, names: list[str]) -> int:
    PUBLISHED.mkdir(parents=True, exist_ok=True)
    for name in names:
        src = cache / f"{name}.pt"
        if not (src.exists() and src.with_suffix(".json").exists()):
            print(f"{src}: no cached classifier (it is trained on first use)", file=sys.stderr)
            return 2
        dst = PUBLISHED / src.name
        if dst.exists() and weights_digest(dst) != weights_digest(src):
            print(f"{dst}: other weights ({weights_digest(dst)}) already published; not replaced", file=sys.stderr)
            return 2
        copy_pair(src, dst)
        print(f"published {name} ({weights_digest(dst)})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--publish", nargs="+", metavar="NAME",
                        help="cached classifiers to publish, e.g. mnist-32px-c1-v2")
    args = parser.parse_args()
    cache = cache_dir("classifiers")
    return publish(cache, args.publish) if args.publish else install(cache)


if __name__ == "__main__":
    sys.exit(main())
