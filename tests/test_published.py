"""The tooling behind the published results. The pilot's budget rule (``benchmarks/choose_budget.py``): S*
needs every baseline seed plateaued at HOLD evaluations in a row; without such a step, the fallback is the
step where the seeds are jointly closest to flat (slope tables given directly, ``slopes`` patched to pass them
through, so the tests check the rule's logic; the published pilot's records give the published S*). The
README's verdict table (``benchmarks/readme_verdicts.py``) is the one its records render to."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("choose_budget", ROOT / "benchmarks" / "choose_budget.py")
choose_budget = importlib.util.module_from_spec(spec)
spec.loader.exec_module(choose_budget)


def _table(slopes: dict[int, float]) -> dict[int, tuple[float, float]]:
    return {step: (s, float(abs(s) < choose_budget.PLATEAU_SLOPE)) for step, s in slopes.items()}


@pytest.fixture
def given_slopes(monkeypatch):
    monkeypatch.setattr(choose_budget, "slopes", lambda table: table)


def test_s_star_needs_every_seed_flat_at_three_evaluations_in_a_row(given_slopes):
    seed0 = _table({3: -0.2, 4: 0.01, 5: 0.02, 6: 0.03, 7: 0.0, 8: 0.01, 9: 0.02})
    seed1 = _table({3: -0.3, 4: -0.07, 5: 0.01, 6: 0.09, 7: 0.01, 8: 0.0, 9: 0.04})
    assert choose_budget.choose({0: seed0, 1: seed1}, hold=1) == 5       # both flat at 5, seed 1 not at 6
    assert choose_budget.choose({0: seed0, 1: seed1}) == 7               # 7, 8, 9 flat in both
    assert choose_budget.choose({0: seed0, 1: _table({3: 0.2, 4: 0.2})}) is None   # steps both seeds have only


def test_without_such_a_step_the_fallback_is_the_smallest_largest_slope(given_slopes):
    seed0 = _table({3: 0.2, 4: 0.04, 5: -0.3, 6: 0.01})
    seed1 = _table({3: 0.01, 4: -0.07, 5: 0.02, 6: 0.09})
    assert choose_budget.choose({0: seed0, 1: seed1}, hold=1) is None
    step, worst = choose_budget.most_plateaued({0: seed0, 1: seed1})
    assert (step, worst) == (4, pytest.approx(0.07))                   # 6 is worse (0.09): a larger largest slope
    assert choose_budget.most_plateaued({}) == (None, pytest.approx(float("nan"), nan_ok=True))


def test_the_published_pilot_gives_the_published_budget():
    folder = ROOT / "results" / "published" / "records" / "pilot"
    base = choose_budget.pilot_baseline(choose_budget.curves(folder), "dcgan")   # seeds 0-2, not stage (f)'s
    if len(base) < 3:
        pytest.skip("the published pilot has fewer than three dcgan seeds")
    assert choose_budget.choose(base) is None and choose_budget.choose(base, hold=1) is None
    step, worst = choose_budget.most_plateaued(base)
    assert step == 8000 and worst == pytest.approx(0.058, abs=5e-4)
    assert f"**{step}**" in (ROOT / "results" / "published" / "pilot" / "budget.md").read_text()


def test_the_modes_budget_reads_each_evaluations_count_at_one_sample_size():
    """``--metric modes`` (Stacked MNIST's budget): the curve is the modes covered at each evaluation among the
    evaluation's 2,560 samples; the final scoring's count among 25,600 (more samples, more modes) is left out.
    The published Stacked-MNIST records: dcgan seed 0 found 1, 4, 5 modes at steps 250-750, 93 at the end."""
    folder = ROOT / "results" / "published" / "records" / "stacked-mnist-d-quarter"
    modes = choose_budget.curves(folder, "modes")
    assert modes["dcgan"][0] == [(250, 1.0), (500, 4.0), (750, 5.0)]
    fid = choose_budget.curves(folder)["dcgan"][0]
    assert [step for step, _ in fid] == [250, 500, 750, 1000]        # FID at n_eval exists at every evaluation
    slopes = choose_budget.slopes(modes["dcgan"][0])
    assert slopes[750][0] == pytest.approx(math.log(5) - math.log(4))     # the last third of three: two points


def test_the_readmes_verdict_table_is_the_one_its_records_give():
    """Every ``<!-- verdicts: PROTOCOL RESULTS [FAMILY] -->`` section of the README is what
    ``benchmarks/readme_verdicts.py`` renders from those records now, corrected across that family."""
    spec = importlib.util.spec_from_file_location("readme_verdicts", ROOT / "benchmarks" / "readme_verdicts.py")
    readme_verdicts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme_verdicts)
    text = (ROOT / "README.md").read_text()
    sections = readme_verdicts.sections(text)
    assert sections, "the README has no rendered verdict table"
    for protocol, results, family, table in sections:
        rendered = readme_verdicts.render(ROOT / results, protocol, family)
        assert table == rendered, f"README's {protocol} table differs from its records: re-render it"
        assert rendered.count("\n| R") == 6 and "converged" in rendered


def test_writing_one_marked_section_leaves_the_others_alone(tmp_path, monkeypatch):
    """An empty section above another marked section is filled up to its own end marker: the text and the
    section after it stay as they were (an earlier pattern ran on to the next section's end marker)."""
    spec = importlib.util.spec_from_file_location("readme_verdicts", ROOT / "benchmarks" / "readme_verdicts.py")
    readme_verdicts = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(readme_verdicts)
    monkeypatch.setattr(readme_verdicts, "render", lambda results, protocol, family=None: f"TABLE {protocol}")
    readme = tmp_path / "README.md"
    readme.write_text("# top\n<!-- verdicts: new R -->\n<!-- /verdicts -->\n\nwords between\n\n"
                      "<!-- verdicts: old R -->\n| old | table |\n<!-- /verdicts -->\n\nthe end\n")
    readme_verdicts.write(readme, "R", "new")
    assert readme.read_text() == ("# top\n<!-- verdicts: new R -->\nTABLE new\n<!-- /verdicts -->\n\nwords between\n\n"
                                  "<!-- verdicts: old R -->\n| old | table |\n<!-- /verdicts -->\n\nthe end\n")
    readme_verdicts.write(readme, "R", "old", 33)                   # a filled section is replaced the same way
    assert [(p, r, f) for p, r, f, _ in readme_verdicts.sections(readme.read_text())] == [("new", "R", None),
                                                                                          ("old", "R", 33)]
    readme_verdicts.write(readme, "R", "old", 40)                   # its marker's family is replaced with it
    assert "TABLE new" in readme.read_text() and "<!-- verdicts: old R 40 -->\nTABLE old\n<!-- /verdicts -->\n\nthe end" \
        in readme.read_text() and "| old | table |" not in readme.read_text() and " 33 -->" not in readme.read_text()


def test_the_pass_to_more_seeds_trains_the_soonest_decided_arms_first():
    """``benchmarks/seed_order.py``: arms by the fewest seeds that would decide any of their comparisons, arms
    with no figure ('-') and the baselines after them in the plan's order, each arm once."""
    spec = importlib.util.spec_from_file_location("seed_order", ROOT / "benchmarks" / "seed_order.py")
    seed_order = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed_order)
    plan = [{"variant": "a", "vs": "dcgan", "seeds_for_effect": 40},
            {"variant": "b", "vs": "dcgan", "seeds_for_effect": "-"},
            {"variant": "c", "vs": "dcgan", "seeds_for_effect": 9},
            {"variant": "a", "vs": "c", "seeds_for_effect": 6},          # a's other comparison decides it sooner
            {"variant": "d", "vs": "e", "seeds_for_effect": 9}]
    assert seed_order.order(plan) == ["a", "c", "d", "b", "dcgan", "e"]
    published = seed_order.order(json.loads((ROOT / "results/published/study-plan.json").read_text()))
    assert len(published) == len(set(published)) and {"dcgan", "d-pool-learned", "fc-hidden"} <= set(published)
