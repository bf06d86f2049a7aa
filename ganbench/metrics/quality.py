"""FID, KID and precision/recall in one torch-fidelity call with one explicit extractor.

Real-side features are cached by torch-fidelity itself (``input2_cache_name``), keyed by data set, split,
resolution, channels, extractor and the number of real images.
"""

from __future__ import annotations

import torch
import torch_fidelity
from torch.utils.data import Dataset

from ganbench.data import cache_dir
from ganbench.metrics.features import Extractor

KID_MAX_SUBSET = 1000
KID_SUBSETS = 100


class ImageTensor(Dataset):
    """uint8 (N, C, H, W) as torch-fidelity reads it: one uint8 CHW tensor per item; grey to RGB if asked."""

    def __init__(self, images: torch.Tensor, rgb: bool = False):
        self.images = images.expand(-1, 3, -1, -1) if rgb and images.shape[1] == 1 else images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def fidelity_kwargs(extractor: Extractor, n_real: int, n_fake: int, cuda: bool) -> dict:
    """The arguments ganbench gives torch-fidelity: one extractor and one layer for all three metrics."""
    layer = "2048" if extractor.name == "inception-v3-compat" else "penultimate"
    return dict(
        fid=True, kid=True, prc=True, cuda=cuda, verbose=False,
        feature_extractor=extractor.name, feature_extractor_weights_path=str(extractor.weights_path),
        feature_layer_fid=layer, feature_layer_kid=layer, feature_layer_prc=layer,
        kid_subset_size=min(KID_MAX_SUBSET, n_real, n_fake), kid_subsets=KID_SUBSETS,
        samples_shuffle=False, save_cpu_ram=True,
    )


def quality(real: torch.Tensor, fake: torch.Tensor, extractor: Extractor, real_cache_name: str | None,
            cuda: bool = False) -> dict[str, float]:
    """FID, KID mean and std, precision and recall of ``fake`` against ``real`` (both uint8 NCHW)."""
    kwargs = fidelity_kwargs(extractor, len(real), len(fake), cuda)
    out = torch_fidelity.calculate_metrics(
        input1=ImageTensor(fake, extractor.rgb), input2=ImageTensor(real, extractor.rgb),
        cache=real_cache_name is not None, cache_root=str(cache_dir("fidelity")), input2_cache_name=real_cache_name,
        **kwargs,
    )
    return {
        "fid": float(out["frechet_inception_distance"]),
        "kid_mean": float(out["kernel_inception_distance_mean"]),
        "kid_std": float(out["kernel_inception_distance_std"]),
        "precision": float(out["precision"]),
        "recall": float(out["recall"]),
    }
