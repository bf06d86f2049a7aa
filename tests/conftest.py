"""Test set-up: real data from ../shared/datasets, a private cache, built-in plugins only (hermetic)."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
import torch_fidelity

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

os.environ.setdefault("GANBENCH_DATA", str(SHARED))
if "GANBENCH_CACHE" not in os.environ:   # a private cache, removed at exit (CIFAR-10's extraction is 60,000 files)
    os.environ["GANBENCH_CACHE"] = tempfile.mkdtemp(prefix="ganbench-test-cache-")
    atexit.register(shutil.rmtree, os.environ["GANBENCH_CACHE"], ignore_errors=True)
os.environ.setdefault("GANBENCH_DISABLE_PLUGIN_AUTOLOAD", "1")
os.environ.setdefault("GANBENCH_JOBS", "1")          # runs one after another in the test process unless a test asks
os.environ.setdefault("MPLBACKEND", "Agg")


def needs_shared() -> None:
    """Skip, saying why, where the real data sets are not beside the repository."""
    if not (Path(os.environ["GANBENCH_DATA"]) / "MNIST" / "raw").is_dir():
        pytest.skip(f"real data not found under {os.environ['GANBENCH_DATA']} (set GANBENCH_DATA)")


def pytest_configure(config):
    config.addinivalue_line("markers", "browser: opens a page in headless chromium (skipped where it is not installed)")


@pytest.fixture
def restore_threads():
    """A test whose runs set torch's thread count in this process (protocol key ``threads``) gives the
    other tests their threads back."""
    import torch

    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def report_smoke_results(tmp_path_factory):
    """A real small suite for the report's tests: the smoke protocol, dcgan, no-bn and bn-all, 3 seeds each
    (about two minutes on 2 CPU cores), trained once per session through the command line."""
    import json

    from click.testing import CliRunner

    from ganbench.cli import main

    results = tmp_path_factory.mktemp("report-smoke") / "results"
    r = CliRunner().invoke(main, ["run", "--protocol", "smoke", "--variant", "dcgan", "--variant", "no-bn",
                                  "--variant", "bn-all", "--seeds", "3", "--results", str(results)],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    failed = [f"{p.parent}: {json.loads(p.read_text()).get('error', '')}" for p in results.glob("*/*/seed-*/summary.json")
              if json.loads(p.read_text()).get("status") not in ("complete", "diverged")]
    if failed:
        pytest.fail("the smoke suite did not train (the trainer or a metric is broken): " + "; ".join(failed[:3]))
    return results



class PooledPixels(torch_fidelity.FeatureExtractorBase):
    """A torch-fidelity feature extractor with no weights, for the tests of the extractor hook: 4x4
    average-pooled pixels."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)

    @staticmethod
    def get_provided_features_list():
        return ("pooled",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "pooled"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None

    def forward(self, x):
        return (torch.nn.functional.adaptive_avg_pool2d(x.float() / 127.5 - 1, 4).flatten(1),)


class ItemScale(torch.nn.Module):
    """Multiplies by 1, through a Python float read with ``.item()``: fine alone, refused by vmap."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (1.0 + 0.0 * x.detach().abs().max().item())


def item_builder(spec):
    """The built-in networks with a module at G's end that torch.func.vmap cannot run (seeds-together tests)."""
    from ganbench.arch import build

    G, D = build(spec)
    G.add_module("item", ItemScale())
    return G, D
