"""benchmarks/choose_replicate.py: stage (e)'s rule for which MNIST arms are replicated on Fashion-MNIST."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest

from ganbench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("choose_replicate", ROOT / "benchmarks" / "choose_replicate.py")
choose_replicate = importlib.util.module_from_spec(spec)
spec.loader.exec_module(choose_replicate)


def claim(variant, metric="fid", estimate=0.0, mde=1.2, scale="log-ratio", verdict="inconclusive", baseline="dcgan"):
    return {"claim": f"X.{variant}", "variant": variant, "baseline": baseline, "metric": metric, "estimate": estimate,
            "mde": mde, "scale": scale, "verdict": verdict, "effect": "-"}


def aggregates(**means) -> pd.DataFrame:
    """variant__metric=mean"""
    return pd.DataFrame([{"variant": k.split("__")[0].replace("_", "-"), "metric": k.split("__")[1], "mean": v}
                         for k, v in means.items()])


@pytest.mark.parametrize("ratio, chosen", [(1.2, True), (1.2 ** (1 / 1.5) * 1.001, True), (1.2 ** (1 / 1.5) * 0.99, False),
                                           (1.2 ** 1.5 * 0.999, True), (1.2 ** 1.5 * 1.01, False), (1 / 1.25, True)])
def test_an_effect_within_a_factor_of_its_mde_is_replicated(ratio, chosen):
    claims = pd.DataFrame([claim("a", estimate=math.log(ratio))])
    got = choose_replicate.choose(claims, aggregates(dcgan__fid=60.0))
    assert ("a" in got) is chosen
    assert ("dcgan" in got) is chosen   # with its baseline arm


def test_difference_scale_effects_are_compared_as_differences():
    claims = pd.DataFrame([claim("a", "sample_oscillation", 0.10, 0.12, "difference"),
                           claim("b", "sample_oscillation", 0.40, 0.12, "difference")])
    assert set(choose_replicate.choose(claims, aggregates(dcgan__fid=1.0))) == {"a", "dcgan"}


def test_untested_claims_and_missing_mdes_choose_nothing():
    claims = pd.DataFrame([claim("a", estimate=math.log(1.2), verdict="untested"), claim("b", mde=float("nan")),
                           claim("c", "modes", -9.0, 0.0, "difference")])
    assert choose_replicate.choose(claims, aggregates(dcgan__modes=10.0, c__modes=1.0)) == {}


def test_saturated_modes_and_probe_are_replicated():
    claims = pd.DataFrame([claim("a", "modes", 0.0, 0.0, "difference"), claim("b", "modes", 0.0, 0.0, "difference")])
    agg = aggregates(dcgan__modes=10.0, a__modes=10.0, b__modes=9.4, dcgan__probe_acc=0.98, c__probe_acc=0.975,
                     d__probe_acc=0.90)
    got = choose_replicate.choose(claims, agg)
    assert set(got) == {"a", "c", "dcgan"}                       # b missed modes; d's probe is below the ceiling
    assert set(choose_replicate.choose(claims, agg.replace({0.98: 0.95}))) == {"a", "dcgan"}   # baseline below it


def test_the_written_suite_is_the_study_on_fashion_mnist(tmp_path):
    out = tmp_path / "replicate.toml"
    out.write_text(choose_replicate.suite_text(ROOT / "benchmarks" / "study.toml", ["dcgan", "d-gap"], "study-fashion-mnist"))
    study, rep = load_suite(ROOT / "benchmarks" / "study.toml", []), load_suite(out, [])
    assert rep.variants == ("dcgan", "d-gap") and rep.seeds == study.seeds
    p, q = study.protocols[0], rep.protocols[0]
    assert (q.name, q.dataset) == ("study-fashion-mnist", "fashion-mnist")
    same = {k for k in vars(p) if k not in ("name", "dataset", "description", "source")}
    assert {k: getattr(q, k) for k in same} == {k: getattr(p, k) for k in same}
