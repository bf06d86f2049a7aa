"""Protocols: everything that must be equal across variants for a fair comparison.

A protocol is a preset (registered through ``ganbench_protocols``), a TOML file with the same keys, or
either with ``--set key=value`` overrides. Every value is checked once, at construction; a bad one raises
``ProtocolError`` naming the source (file or preset), the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Iterable

from ganbench.arch import ArchSpec
from ganbench.device import PRECISIONS
from ganbench.errors import GanbenchError, did_you_mean
from ganbench.hookspecs import hookimpl

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]


class ProtocolError(GanbenchError):
    """A protocol key that does not exist, or a value of the wrong type or out of range."""


EXTRACTORS = ("auto", "domain", "inception-v3-compat")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class Protocol:
    name: str = "custom"            # how results are filed: RESULTS/<name>/<variant>/seed-<n>
    description: str = ""           # one line
    dataset: str = "digits"         # data set name (``ganbench list datasets``), or folder:PATH
    resolution: int = 32            # image side in pixels: 16, 32, 64 or 128
    channels: int = 1               # image channels: 1 or 3
    z_dim: int = 100                # latent size
    g_width: int = 64               # channels of G's last hidden stage (paper at 64 px: 128)
    d_width: int = 64               # channels of D's first stage (paper at 64 px: 128)
    batch_size: int = 128           # images per step, for G and for D (paper: 128)
    lr_scale: float = 1.0           # multiplies every variant's learning rates (1: each variant's own)
    steps: int = 1000               # training budget in steps (one D update and one G update each)
    eval_every: int = 250           # steps between evaluations (metrics, checkpoint); the last step always evaluates
    n_eval: int = 1000              # generated images scored at each evaluation
    n_final: int = 2000             # generated images scored at the end
    n_real: int = 2000              # real images of the reference split for FID/KID/precision-recall
    reference_split: str = "test"   # split the generated images are compared against: "test" or "train"
    extractor: str = "auto"         # "auto": InceptionV3 if its weights are found, else the domain classifier
    fid_weights: str = ""           # local path of torch-fidelity's inception-v3-compat weights
    fid_target: float = 0.0         # FID under which a run counts as converged (0: no target)
    metrics: tuple = ("quality", "modes", "stability", "cost")  # metric names run on the schedule
    probe_labels_per_class: int = 100  # probe metric: labelled training images per class (0: all of them)
    probe_draws: int = 3            # probe metric: independent draws of the labelled images
    probe_test: int = 2000          # probe metric: test images scored (0: the whole test split)
    seeds: int = 3                  # default number of seeds per variant
    data_seed: int = 0              # seed of data sets built at random (stacked-mnist)
    precision: str = "cuda-bf16"    # "cuda-bf16": bf16 on a CUDA GPU that has it natively, fp32 elsewhere (every CPU); "fp32"; "bf16": autocast of G's and D's training forward passes (evaluation stays fp32); "auto": bf16 wherever the device has it natively, CPUs included
    device: str = "auto"            # "auto" (cuda if available), "cpu" or "cuda"
    threads: int = 0                # torch CPU threads (0: torch's default)
    channels_last: bool = True      # channels-last memory format for G, D and batches (faster convolutions)
    compile: bool = False           # torch.compile G's and D's training passes (off until a GPU shows it pays)
    cuda_graph: bool = False        # the training step as one CUDA graph, on a CUDA device (off until a GPU shows it pays)
    source: str = ""                # where the protocol came from (preset name or file), for messages

    def __post_init__(self):
        check = self._check
        check("resolution", self.resolution in (16, 32, 64, 128), "one of 16, 32, 64, 128")
        check("channels", self.channels in (1, 3), "1 or 3")
        for key in ("z_dim", "g_width", "d_width", "batch_size", "steps", "eval_every", "n_eval", "n_final",
                    "n_real", "seeds"):
            check(key, getattr(self, key) >= 1, "an integer >= 1")
        check("batch_size", self.batch_size >= 2, "an integer >= 2 (batchnorm needs two images)")
        check("reference_split", self.reference_split in ("test", "train"), "test or train")
        check("extractor", self.extractor in EXTRACTORS, ", ".join(EXTRACTORS))
        check("precision", self.precision in PRECISIONS, ", ".join(PRECISIONS))
        check("device", self.device in DEVICES, ", ".join(DEVICES))
        check("fid_target", self.fid_target >= 0, "a number >= 0")
        check("lr_scale", self.lr_scale > 0, "a number > 0")
        check("threads", self.threads >= 0, "an integer >= 0")
        check("data_seed", self.data_seed >= 0, "an integer >= 0")
        check("probe_labels_per_class", self.probe_labels_per_class >= 0, "an integer >= 0 (0: all labels)")
        check("probe_draws", self.probe_draws >= 1, "an integer >= 1")
        check("probe_test", self.probe_test >= 0, "an integer >= 0 (0: the whole test split)")

    def _check(self, key: str, ok: bool, allowed: str) -> None:
        if not ok:
            raise ProtocolError(f"{self.source or self.name}: {key}={getattr(self, key)!r} is not allowed; "
                                f"expected {allowed}")

    def arch(self) -> ArchSpec:
        """The protocol's part of the ArchSpec; a variant changes the rest."""
        return ArchSpec(resolution=self.resolution, channels=self.channels, z_dim=self.z_dim,
                        g_width=self.g_width, d_width=self.d_width)

    def eval_steps(self) -> list[int]:
        """Steps after which the run evaluates: every ``eval_every`` steps, and the last one."""
        steps = list(range(self.eval_every, self.steps + 1, self.eval_every))
        if not steps or steps[-1] != self.steps:
            steps.append(self.steps)
        return steps

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["metrics"] = list(self.metrics)
        return d


FIELDS = {f.name: f for f in fields(Protocol)}
_TYPES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", tuple: "a list of strings"}


def _field_type(key: str) -> type:
    return type(FIELDS[key].default)


def _coerce(key: str, value: Any, source: str) -> Any:
    """A value from TOML or JSON, typed as the field wants it; a wrong type names source, key and type."""
    want = _field_type(key)
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if want is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
        value = tuple(value)
    if not isinstance(value, want) or (isinstance(value, bool) and want is not bool):
        raise ProtocolError(f"{source}: {key}={value!r} has the wrong type; expected {_TYPES[want]}")
    return value


def _unknown_key(key: str, source: str) -> ProtocolError:
    hint = did_you_mean(key, FIELDS, cutoff=0.5, otherwise=f"allowed keys: {', '.join(FIELDS)}")
    return ProtocolError(f"{source}: unknown protocol key {key!r}; {hint}")


def apply(base: Protocol, values: dict[str, Any], source: str) -> Protocol:
    """``base`` with ``values`` (from a file, a suite or --set), each checked for key and type."""
    changes = {}
    for key, value in values.items():
        if key not in FIELDS or key == "source":
            raise _unknown_key(key, source)
        changes[key] = _coerce(key, value, source)
    return replace(base, source=source, **changes)


def parse_override(text: str) -> tuple[str, Any]:
    """``key=value`` from the command line; the value is read as TOML (so 1e-3, true, "x", [..] work),
    falling back to a bare string."""
    if "=" not in text:
        raise ProtocolError(f"--set {text!r}: expected key=value, e.g. --set steps=500")
    key, raw = (part.strip() for part in text.split("=", 1))
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(base: Protocol, overrides: Iterable[str]) -> Protocol:
    values = dict(parse_override(o) for o in overrides)
    return apply(base, values, source=f"{base.source or base.name} with --set") if values else base


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ProtocolError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:   # a folder, a path through a file, no permission: the user's path, one line
        raise ProtocolError(f"{path}: cannot be read as a TOML file ({exc.strerror or exc})") from None


def resolve(name_or_path: str, overrides: Iterable[str] = ()) -> Protocol:
    """A preset by name, or a TOML file (optionally ``base = "preset"`` inside), then --set overrides."""
    from ganbench.plugins import catalog

    presets = catalog().protocols
    if name_or_path in presets:
        proto = replace(presets.get(name_or_path), source=f"protocol {name_or_path!r}")
    elif name_or_path.endswith(".toml") or Path(name_or_path).is_file():
        values = load_toml(name_or_path)
        values = values.get("protocol", values)  # a suite file keeps it under [protocol]
        if not isinstance(values, dict):
            raise ProtocolError(f"{name_or_path}: protocol={values!r} must be a table ([protocol] with keys under it)")
        values = dict(values)
        base_name = values.pop("base", None)
        if base_name is not None and not isinstance(base_name, str):
            raise ProtocolError(f"{name_or_path}: base={base_name!r} must be the name of a preset "
                                f"({', '.join(presets.names())})")
        base = presets.get(base_name) if base_name else Protocol()
        values.setdefault("name", Path(name_or_path).stem if not base_name else base.name)
        proto = apply(base, values, source=str(name_or_path))
    else:
        presets.get(name_or_path)  # raises UnknownName with the closest presets
        raise AssertionError("unreachable")
    return apply_overrides(proto, overrides)


PRESETS: list[Protocol] = [
    Protocol(
        name="smoke", description="seconds on a CPU: tiny networks on the embedded digits, for tests",
        dataset="digits", resolution=16, channels=1, g_width=8, d_width=8, z_dim=16, batch_size=32,
        steps=20, eval_every=10, n_eval=256, n_final=256, n_real=256, seeds=2,
    ),
    Protocol(
        name="quick", description="minutes on 2 CPU cores: the embedded digits at 32 px, the README's main job",
        dataset="digits", resolution=32, channels=1, g_width=32, d_width=32, batch_size=64,
        steps=600, eval_every=150, n_eval=1000, n_final=2000, n_real=297, seeds=3, fid_target=0.0,
    ),
    Protocol(
        name="stacked-mnist", description="mode collapse: 1000 modes of three stacked MNIST digits, 25,600 samples scored",
        dataset="stacked-mnist", resolution=32, channels=3, g_width=64, d_width=16, batch_size=64,
        steps=3000, eval_every=1000, n_eval=2560, n_final=25600, n_real=10000, seeds=5, metrics=("quality", "modes", "stability", "cost"),
    ),
    Protocol(
        name="cifar10-32", description="GPU scale: CIFAR-10 at 32 px, batch 128, 64 width",
        dataset="cifar10", resolution=32, channels=3, g_width=64, d_width=64, batch_size=128,
        steps=20000, eval_every=2000, n_eval=5000, n_final=10000, n_real=10000, seeds=3,
        metrics=("quality", "modes", "stability", "cost", "probe"),
    ),
    Protocol(
        name="paper-64", description="GPU scale: the paper's 64 px network (4x4x1024 ... 64x64x3) on CIFAR-10",
        dataset="cifar10", resolution=64, channels=3, g_width=128, d_width=128, batch_size=128,
        steps=30000, eval_every=3000, n_eval=5000, n_final=10000, n_real=10000, seeds=3,
        metrics=("quality", "modes", "stability", "cost", "probe"),
    ),
]


@hookimpl
def ganbench_protocols() -> list[Protocol]:
    return PRESETS
