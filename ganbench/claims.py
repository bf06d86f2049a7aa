"""The DCGAN paper's claims about its architecture rules, as data.

Each ``Claim`` is one thing the paper says about one rule (R1..R6 of DESIGN.md), in the paper's words where
they can be quoted (sections 3 and 4 of Radford, Metz and Chintala, ICLR 2016), with the variants that test
it, the one primary endpoint and the direction the claim predicts for those variants against a baseline arm
(dcgan unless said otherwise). A claim no arm here can test says why in ``untested``; a claim only a protocol
of some kind can test (colour data, 64 px or more) names that in ``needs``, and ``untested_reason`` says
whether a given protocol meets it. The report judges each claim on its primary endpoint alone.

The claims register through ``ganbench_claims`` like a plugin's (a plugin may add claims about its own rules
or about the paper's). Each run's record carries the claims that concern its variant (``Claim.to_dict``), so
the report reads them from the records (``Claim.from_dict``), not from what is installed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Mapping

from ganbench.errors import SpecError
from ganbench.hookspecs import hookimpl
from ganbench.variants import CONFOUNDS, DIRECTIONS

# Conditions a protocol must meet for a claim to be testable: key -> (test on (channels, resolution), reason).
REQUIREMENTS: dict[str, tuple[Callable[[int, int], bool], str]] = {
    "colour": (lambda channels, resolution: channels == 3, "needs colour data (3 channels)"),
    "64px": (lambda channels, resolution: resolution >= 64, "needs 64 px or higher resolution"),
}


@dataclass(frozen=True)
class Claim:
    id: str                          # "<rule>.<short name>", e.g. "R2.collapse"
    rule: str                        # the id of a registered Rule: "R1".."R6", or a plugin's own
    text: str                        # the paper's words, quoted; a close paraphrase starts with "~"
    variants: tuple[str, ...] = ()   # the arms that test it, each compared with ``baseline``
    metric: str = ""                 # the primary endpoint (a recorded metric, or a prefix of some: loss_oscillation)
    direction: str = ""              # what the claim predicts for the variants against the baseline
    baseline: str = "dcgan"          # the arm the variants are compared with
    needs: tuple[str, ...] = ()      # keys of REQUIREMENTS a protocol must meet to test it
    untested: str = ""               # why no arm here can test it at all (empty: tested)
    note: str = ""                   # what to keep in mind when reading the verdict
    changes: tuple[str, ...] = ()    # recorded quantities its variants change by design (the rule under test,
                                     # not a confound), e.g. ("g_lr", "d_lr") for a claim about the learning rate

    def __post_init__(self):
        for name in ("variants", "needs", "changes"):   # a list from a plugin or a record
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.id.startswith(self.rule + "."):
            raise SpecError(f"claim {self.id!r}: its id must start with its rule {self.rule!r} and a dot")
        unknown = [n for n in self.needs if n not in REQUIREMENTS]
        if unknown:
            raise SpecError(f"claim {self.id!r}: needs {unknown}; known: {', '.join(REQUIREMENTS)}")
        unknown = [n for n in self.changes if n not in CONFOUNDS]
        if unknown:
            raise SpecError(f"claim {self.id!r}: changes {unknown}; known: {', '.join(CONFOUNDS)}")
        if self.untested:
            return
        if not (self.variants and self.metric and self.direction in DIRECTIONS):
            raise SpecError(f"claim {self.id!r}: a tested claim needs variants, a metric and a direction "
                            f"({', '.join(DIRECTIONS)}); else say why in untested")

    def concerns(self, variant: str, rule: str = "") -> bool:
        """Whether a run of ``variant`` (breaking ``rule``) takes part in this claim: as one of its arms, as
        its baseline arm, or by breaking its rule. Such a run's record carries the claim."""
        return variant in self.variants or variant == self.baseline or bool(rule) and rule == self.rule

    def to_dict(self) -> dict[str, Any]:
        """The claim as JSON-able data, as a run record carries it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], package: Mapping[str, "Claim"] | None = None) -> "Claim":
        """A claim from ``to_dict``'s data (keys it does not know are ignored); SpecError where it is not one.
        Fields the data lacks (a record written before they existed) come from the claim of its id in
        ``package`` (id -> claim, e.g. ``BY_ID``) where there is one, else from their defaults."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a claim must be a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in known}
        earlier = (package or {}).get(values.get("id"))
        if earlier is not None:
            values = {**{k: getattr(earlier, k) for k in known - values.keys()}, **values}
        try:
            return cls(**values)
        except TypeError as exc:
            raise SpecError(f"claim {data.get('id')!r}: {exc}") from None

    def untested_reason(self, channels: int, resolution: int) -> str:
        """Why a protocol with these channels and resolution cannot test this claim ("" where it can)."""
        if self.untested:
            return self.untested
        return "; ".join(REQUIREMENTS[n][1] for n in self.needs if not REQUIREMENTS[n][0](channels, resolution))


LEARN_DOWN_QUOTE = ("[The all convolutional net] replaces deterministic spatial pooling functions (such as "
                    "maxpooling) with strided convolutions, allowing the network to learn its own spatial "
                    "downsampling.")
LEARN_UP_QUOTE = "We use this approach in our generator, allowing it to learn its own spatial upsampling."
BN_QUOTE = ("This proved critical to get deep generators to begin learning, preventing the generator from "
            "collapsing all samples to a single point which is a common failure mode observed in GANs.")
TANH_QUOTE = ("We observed that using a bounded activation allowed the model to learn more quickly to saturate "
              "and cover the color space of the training distribution.")
LEAKY_QUOTE = ("Within the discriminator we found the leaky rectified activation to work well, especially for "
               "higher resolution modeling.")
MAXOUT_QUOTE = "This is in contrast to the original GAN paper, which used the maxout activation."

CLAIMS: tuple[Claim, ...] = (
    # R1: strided convolutions instead of pooling
    Claim("R1.learn-downsampling", "R1", LEARN_DOWN_QUOTE, variants=("d-maxpool", "d-avgpool"), metric="fid",
          direction="worse"),
    Claim("R1.learn-upsampling", "R1", LEARN_UP_QUOTE,
          variants=("g-upsample-nearest", "g-upsample-bilinear"), metric="fid", direction="worse"),
    Claim("R1.learn-downsampling-matched", "R1", LEARN_DOWN_QUOTE, variants=("d-avgpool",), metric="fid",
          direction="worse", baseline="d-pool-learned",
          note="the pooling arms' cost differs from dcgan's (a stride-1 conv: FLOPs 2.25x, parameters 0.57x); "
               "against d-pool-learned only whether the 2x2 downsampling is fixed or learned differs"),
    Claim("R1.learn-upsampling-matched", "R1", LEARN_UP_QUOTE, variants=("g-upsample-nearest",), metric="fid",
          direction="worse", baseline="g-upsample-learned",
          note="upsample + conv costs 2.19x dcgan's FLOPs; against g-upsample-learned only whether the 2x "
               "upsampling is fixed or learned differs"),
    # R2: batchnorm
    Claim("R2.begin-learning", "R2", BN_QUOTE, variants=("no-bn-gen", "no-bn"), metric="fid_auc", direction="worse",
          note="'deep generators': at 32 px G has three upsampling stages, the paper's 64 px G four"),
    Claim("R2.collapse", "R2", BN_QUOTE,
          variants=("no-bn-gen", "no-bn", "no-bn-bias-free", "no-bn-he-init"), metric="modes", direction="worse",
          note="no-bn-he-init starts at BN's scale: collapse there is BN's doing, not the init's"),
    Claim("R2.stabilise", "R2",
          "[Batch Normalization] stabilizes learning by normalizing the input to each unit to have zero mean and "
          "unit variance.",
          variants=("no-bn-disc", "no-bn"), metric="sample_oscillation", direction="worse",
          note="a collapsed G oscillates little: read with modes"),
    Claim("R2.poor-init", "R2",
          "This helps deal with training problems that arise due to poor initialization.",
          variants=("no-bn", "no-bn-bias-free"), metric="fid", direction="worse", baseline="no-bn-he-init",
          note="all three arms lack BN; no-bn differs from the baseline in its init only, no-bn-bias-free also "
               "lacks the biases (BN's beta); N(0, 0.02) without BN starts G(z) about 100x too small"),
    Claim("R2.gradient-flow", "R2", "[BN] helps gradient flow in deeper models.",
          untested="no recorded metric measures gradient flow, and it needs a sweep over depth"),
    Claim("R2.bn-all-oscillation", "R2",
          "Directly applying batchnorm to all layers however, resulted in sample oscillation and model "
          "instability. This was avoided by not applying batchnorm to the generator output layer and the "
          "discriminator input layer.",
          variants=("bn-all", "no-bn-gen-output", "no-bn-disc-input"), metric="sample_oscillation",
          direction="worse"),
    # R3: no fully connected hidden layers
    Claim("R3.gap-stability", "R3", "We found global average pooling increased model stability ...",
          variants=("d-gap",), metric="sample_oscillation", direction="better"),
    Claim("R3.gap-speed", "R3", "... but hurt convergence speed.",
          variants=("d-gap",), metric="fid_auc", direction="worse"),
    Claim("R3.fc-hidden", "R3",
          "A middle ground of directly connecting the highest convolutional features to the input and output "
          "respectively of the generator and discriminator worked well.",
          variants=("fc-hidden", "fc-hidden-matched"), metric="fid", direction="worse",
          note="fc-hidden has several times dcgan's parameters; fc-hidden-matched keeps them within 10%, which "
               "leaves D's hidden layer narrow (9 units at 32 px, widths 32)"),
    Claim("R3.projection", "R3",
          "The first layer of the GAN, which takes a uniform noise distribution Z as input, could be called fully "
          "connected as it is just a matrix multiplication, but the result is reshaped into a 4-dimensional tensor "
          "and used as the start of the convolution stack.",
          variants=("g-conv-input",), metric="fid", direction="same"),
    # R4: ReLU in G, tanh at its output
    Claim("R4.relu", "R4",
          "The ReLU activation is used in the generator with the exception of the output layer which uses the "
          "Tanh function.",
          variants=("g-leakyrelu", "g-maxout"), metric="fid", direction="worse",
          note="stated as the design, not compared in the paper"),
    Claim("R4.bounded-saturates", "R4", TANH_QUOTE, variants=("g-out-linear",), metric="fid_auc", direction="worse",
          note="tests 'learns more quickly'; the colour-space part is R4.colour"),
    Claim("R4.bounded-sigmoid", "R4", TANH_QUOTE, variants=("g-out-sigmoid",), metric="fid_auc", direction="same",
          note="a sigmoid is bounded too: the claim is about boundedness, so it predicts no slower learning"),
    Claim("R4.colour", "R4", TANH_QUOTE, needs=("colour",),
          untested="no recorded metric measures coverage of the colour space (and grey data has none to cover)"),
    # R5: LeakyReLU in D
    Claim("R5.leaky", "R5", LEAKY_QUOTE, variants=("d-relu",), metric="fid", direction="worse"),
    Claim("R5.leaky-high-resolution", "R5", LEAKY_QUOTE, variants=("d-relu",), metric="fid", direction="worse",
          needs=("64px",), note="'especially for higher resolution': the effect should grow from 32 px to 64 px"),
    Claim("R5.maxout", "R5", MAXOUT_QUOTE, variants=("d-maxout",), metric="fid", direction="worse"),
    Claim("R5.maxout-matched", "R5", MAXOUT_QUOTE, variants=("d-maxout-matched",), metric="fid", direction="worse",
          note="d-maxout doubles D's parameters and FLOPs (maxout's k=2 pieces); d-maxout-matched pays for them "
               "with a narrower D (width 23 for 32 at 32 px), its parameters and FLOPs within 5% of dcgan's"),
    # R6: optimizer and init
    Claim("R6.lr", "R6", "We found the suggested learning rate of 0.001, to be too high, using 0.0002 instead.",
          variants=("adam-lr-1e-3",), metric="fid", direction="worse", changes=("g_lr", "d_lr")),
    Claim("R6.beta1", "R6",
          "We found leaving the momentum term beta1 at the suggested value of 0.9 resulted in training oscillation "
          "and instability while reducing it to 0.5 helped stabilize training.",
          variants=("adam-beta1-0.9",), metric="sample_oscillation", direction="worse"),
    Claim("R6.init", "R6",
          "All weights were initialized from a zero-centered Normal distribution with standard deviation 0.02.",
          variants=("default-init",), metric="fid", direction="worse",
          note="stated as the setting, not compared in the paper"),
)

BY_ID: dict[str, Claim] = {c.id: c for c in CLAIMS}


def claims_for(variant: str) -> list[Claim]:
    """The claims a variant tests."""
    return [c for c in CLAIMS if variant in c.variants]


@hookimpl
def ganbench_claims() -> list[Claim]:
    return list(CLAIMS)
