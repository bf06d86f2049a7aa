"""Sample quality: FID, KID and precision/recall in ONE torch-fidelity call with one explicit extractor.

- ``fid``: Fréchet distance between Gaussians fitted to the generated and the real features (lower is better).
- ``kid_mean``, ``kid_std``: kernel inception distance (cubic polynomial kernel MMD^2, unbiased) averaged over
  ``KID_SUBSETS`` random subsets of ``min(KID_MAX_SUBSET, n_real, n_fake)`` images of each side, and its
  standard deviation over those subsets (torch-fidelity's fixed ``rng_seed``, so repeatable).
- ``precision``, ``recall``: improved precision/recall (Kynkäänniemi et al. 2019) with k = ``PRC_NEIGHBORHOOD``:
  the share of generated images inside the real manifold, and of real images inside the generated one.
- ``fid_n_eval``: the FID of the first ``n_eval`` generated images (all of them where there are fewer):
  ``fid`` itself at every evaluation but the last, which scores ``n_final`` images. FID's bias falls as the
  number of images grows (on MNIST, 2,000 real images score a real-data FID 14% below 1,000), so only this
  curve, measured at one sample size, tells whether FID still falls at the end (``stability``'s
  ``converged``). One more torch-fidelity call at the end, FID alone, on the cached real statistics.

The features are the protocol's extractor's (``ganbench.metrics.features``); generated images are input1,
real images input2, as torch-fidelity expects. The real side's features and FID statistics are cached by
torch-fidelity itself (``cache=True``, ``cache_root=$GANBENCH_CACHE/fidelity``, ``input2_cache_name``), under
a name made of everything that changes them: data set, split, resolution, channels, data seed, n_real (and
the seed choosing them) and the extractor. Image-folder data sets (``folder:PATH``) are not cached: their
files may change.
"""

from __future__ import annotations

import re

import torch
import torch_fidelity

from ganbench.data import cache_dir
from ganbench.metrics.features import Extractor, ImageTensor

KID_MAX_SUBSET = 1000
KID_SUBSETS = 100
PRC_NEIGHBORHOOD = 3
PRC_BATCH = 2048          # rows of each pairwise-distance block (2048 x 25,600 floats: 200 MB at most)
REFERENCE_SEED = 0        # which n_real images of the reference split are used, when it has more

SCORES = ("fid", "kid_mean", "kid_std", "precision", "recall", "fid_n_eval")


def reference_subset(images: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` images of the reference split, the same ones every time: all of them when there are at most
    ``n``, else a fixed-seed random choice in their original order (a split sorted by class stays fair)."""
    if n >= len(images):
        return images
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(REFERENCE_SEED))[:n]
    return images[idx.sort().values]


def real_cache_name(dataset: str, split: str, resolution: int, channels: int, data_seed: int, n_real: int,
                    extractor: Extractor) -> str | None:
    """torch-fidelity's ``input2_cache_name`` for these real images through this extractor; None for
    image folders. torch-fidelity appends the extractor's registry name and the layer to it."""
    if dataset.startswith("folder:"):
        return None
    name = (f"ganbench-{dataset}-{split}-{resolution}px-c{channels}-seed{data_seed}-n{n_real}r{REFERENCE_SEED}-"
            f"{extractor.cache_key}")
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def fidelity_kwargs(extractor: Extractor, n_real: int, n_fake: int, cuda: bool) -> dict:
    """Everything ganbench tells torch-fidelity besides the inputs and the cache: one extractor and one
    layer for all three metrics."""
    return dict(
        fid=True, kid=True, prc=True, isc=False, cuda=cuda, verbose=False,
        feature_extractor=extractor.name, feature_extractor_weights_path=extractor.weights_arg,
        feature_layer_fid=extractor.layer, feature_layer_kid=extractor.layer, feature_layer_prc=extractor.layer,
        kid_subset_size=min(KID_MAX_SUBSET, n_real, n_fake), kid_subsets=KID_SUBSETS,
        prc_neighborhood=PRC_NEIGHBORHOOD, prc_batch_size=PRC_BATCH,
        batch_size=extractor.batch_size, samples_shuffle=False, save_cpu_ram=True,
    )


def _calculate(fake: torch.Tensor, real: torch.Tensor, extractor: Extractor, real_cache: str | None, cuda: bool,
               **only) -> dict:
    return torch_fidelity.calculate_metrics(
        input1=ImageTensor(fake, extractor.rgb), input2=ImageTensor(real, extractor.rgb),
        cache=real_cache is not None, cache_root=str(cache_dir("fidelity")), input2_cache_name=real_cache,
        **{**fidelity_kwargs(extractor, len(real), len(fake), cuda), **only},
    )


def quality(fake: torch.Tensor, real: torch.Tensor, extractor: Extractor, *, real_cache: str | None = None,
            cuda: bool = False, n_eval: int | None = None) -> dict[str, float]:
    """FID, KID mean and std, precision and recall of ``fake`` against ``real`` (both uint8 NCHW), and the FID
    of the first ``n_eval`` of ``fake`` (``fid_n_eval``; None: all of them)."""
    out = _calculate(fake, real, extractor, real_cache, cuda)
    fid = float(out["frechet_inception_distance"])
    if n_eval is not None and n_eval < len(fake):
        fid_n_eval = float(_calculate(fake[:n_eval], real, extractor, real_cache, cuda, kid=False,
                                      prc=False)["frechet_inception_distance"])
    else:
        fid_n_eval = fid
    return {
        "fid": fid,
        "kid_mean": float(out["kernel_inception_distance_mean"]),
        "kid_std": float(out["kernel_inception_distance_std"]),
        "precision": float(out["precision"]),
        "recall": float(out["recall"]),
        "fid_n_eval": fid_n_eval,
    }
