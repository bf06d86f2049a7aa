"""Test set-up: real data from ../shared/datasets, a private cache, built-in plugins only (hermetic)."""

import os
import tempfile
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

os.environ.setdefault("GANBENCH_DATA", str(SHARED))
os.environ.setdefault("GANBENCH_CACHE", tempfile.mkdtemp(prefix="ganbench-test-cache-"))
os.environ.setdefault("GANBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
os.environ.setdefault("MPLBACKEND", "Agg")


def needs_shared() -> None:
    """Skip, saying why, where the real data sets are not beside the repository."""
    if not (Path(os.environ["GANBENCH_DATA"]) / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found under {os.environ['GANBENCH_DATA']} (set GANBENCH_DATA)")
