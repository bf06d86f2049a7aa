import pytest

from ganbench.claims import CLAIMS, REQUIREMENTS, Claim, claims_for
from ganbench.errors import SpecError
from ganbench.plugins import catalog
from ganbench.variants import RULES, VARIANTS

REGISTRY = {v.name: v for v in catalog().variants}
METRICS = {name for m in catalog().metrics for name in m.outputs}


def test_claim_ids_are_unique_and_every_rule_has_claims():
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids))
    assert {c.rule for c in CLAIMS} == set(RULES)


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: c.id)
def test_claim_names_real_variants_and_metrics(claim):
    assert set(claim.variants) <= set(REGISTRY), claim.variants
    assert claim.baseline in REGISTRY
    if claim.untested:
        return
    # a recorded metric, or a prefix the report expands (loss_oscillation -> loss_oscillation_g, _d)
    assert claim.metric in METRICS or any(m.startswith(claim.metric + "_") for m in METRICS), claim.metric
    for name in claim.variants:   # a variant that names the claim's metric expects what the claim predicts
        expected = REGISTRY[name].expects.get(claim.metric)
        assert expected in (None, claim.direction) or claim.baseline != "dcgan", (name, expected)


def test_every_rule_variant_is_tested_by_a_claim():
    rule_variants = {v.name for v in VARIANTS if v.rule in RULES}
    tested = {name for c in CLAIMS for name in (*c.variants, c.baseline)}   # an arm, or a control as baseline
    assert rule_variants - tested == set()
    assert [c.id for c in claims_for("no-bn-he-init")] == ["R2.collapse"]


def test_the_claims_the_paper_makes_are_there():
    ids = {c.id for c in CLAIMS}
    assert {"R1.learn-downsampling", "R2.begin-learning", "R2.collapse", "R2.bn-all-oscillation", "R2.poor-init",
            "R3.gap-stability", "R3.gap-speed", "R3.fc-hidden", "R4.bounded-saturates", "R4.colour", "R4.relu",
            "R5.leaky-high-resolution", "R5.maxout", "R6.lr", "R6.beta1", "R6.init"} <= ids
    by_id = {c.id: c for c in CLAIMS}
    assert "fc-hidden-matched" in by_id["R3.fc-hidden"].variants
    assert by_id["R2.poor-init"].baseline == "no-bn-he-init"
    assert by_id["R1.learn-downsampling-matched"].baseline == "d-pool-learned"
    assert by_id["R1.learn-upsampling-matched"].baseline == "g-upsample-learned"


def test_untested_reasons_depend_on_the_protocol():
    by_id = {c.id: c for c in CLAIMS}
    high = by_id["R5.leaky-high-resolution"]
    assert high.untested_reason(channels=1, resolution=32) == REQUIREMENTS["64px"][1]
    assert high.untested_reason(channels=1, resolution=64) == ""
    assert "colour" in by_id["R4.colour"].untested_reason(channels=3, resolution=64)   # no colour metric either
    assert by_id["R2.collapse"].untested_reason(channels=1, resolution=16) == ""


def test_claims_are_validated():
    with pytest.raises(SpecError, match="needs variants, a metric and a direction"):
        Claim("R1.x", "R1", "text", variants=("d-maxpool",), metric="fid", direction="lower")
    with pytest.raises(SpecError, match="must start with its rule"):
        Claim("R2.x", "R1", "text", untested="why")
    with pytest.raises(SpecError, match="needs"):
        Claim("R1.x", "R1", "text", untested="why", needs=("lsun",))
    with pytest.raises(SpecError, match="changes"):
        Claim("R6.x", "R6", "text", untested="why", changes=("lr",))


def test_a_recorded_claim_takes_fields_it_predates_from_the_package():
    from ganbench.claims import BY_ID

    old = {k: v for k, v in BY_ID["R6.lr"].to_dict().items() if k != "changes"}   # written before `changes`
    assert Claim.from_dict(old).changes == ()
    assert Claim.from_dict(old, BY_ID) == BY_ID["R6.lr"] and BY_ID["R6.lr"].changes == ("g_lr", "d_lr")
    said = Claim.from_dict({**old, "changes": [], "text": "as recorded"}, BY_ID)     # what a record says wins
    assert said.changes == () and said.text == "as recorded"
    assert Claim.from_dict({**old, "id": "R6.other"}, BY_ID).changes == ()         # no claim of its id
