"""Suites and plans: which variants, which seeds, under which protocol -> one RunSpec per (variant, seed).

A suite file is TOML::

    variants = ["dcgan", "no-bn", "bn-all"]   # or ["*"] for every registered variant, ["R2"] for a rule's
    seeds = 3                                # or a list: [0, 1, 2]
    [protocol]
    base = "quick"                           # a preset; the other keys override it
    # results go to RESULTS/<name>/, where name defaults to the suite file's stem
    steps = 400

A suite may run its variants under several protocols that differ in a few keys (the Stacked-MNIST study:
D at 1/4 and at 1/2 of G's width): each ``[[protocols]]`` table overrides ``[protocol]`` and names its own
results folder::

    [[protocols]]
    name = "stacked-mnist-d16"
    d_width = 16
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ganbench.errors import GanbenchError, SpecError
from ganbench.plugins import catalog
from ganbench.protocol import Protocol, ProtocolError, apply, apply_overrides, load_toml, resolve
from ganbench.record import RunSpec

SUITE_KEYS = ("variants", "seeds", "protocol", "protocols")


@dataclass(frozen=True)
class Suite:
    protocols: tuple[Protocol, ...]
    variants: tuple[str, ...]
    seeds: tuple[int, ...]

    @property
    def name(self) -> str:
        return ", ".join(p.name for p in self.protocols)

    def plan(self, results: Path, data_root: str | None = None) -> list[RunSpec]:
        return [RunSpec(p, v, s, Path(results), data_root)
                for p in self.protocols for v in self.variants for s in self.seeds]


def expand_variants(names: Iterable[str]) -> tuple[str, ...]:
    """Variant names, with ``*`` for all and ``R1``..``R6`` for a rule's variants; unknown names raise
    UnknownName with the closest ones."""
    reg = catalog().variants
    out: list[str] = []
    for name in names:
        if name == "*":
            picked = reg.names()
        elif name in {v.rule for v in reg}:
            picked = [v.name for v in reg if v.rule == name]
        else:
            picked = [reg.get(name).name]
        out += [n for n in picked if n not in out]
    return tuple(out)


def seed_list(seeds: int | Sequence[int] | None, default: int) -> tuple[int, ...]:
    if seeds is None:
        return tuple(range(default))
    if isinstance(seeds, int):
        return tuple(range(seeds))
    return tuple(seeds)


def load_suite(path: str | Path, overrides: Iterable[str] = ()) -> Suite:
    path = Path(path)
    data = load_toml(path)
    for key in data:
        if key not in SUITE_KEYS:
            raise ProtocolError(f"{path}: unknown suite key {key!r}; allowed: {', '.join(SUITE_KEYS)}")
    if "variants" not in data or not isinstance(data["variants"], list):
        raise ProtocolError(f"{path}: 'variants' must be a list of variant names, e.g. [\"dcgan\", \"no-bn\"]")
    seeds = data.get("seeds")
    if seeds is not None and not ((isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1) or (
            isinstance(seeds, list) and seeds and all(isinstance(s, int) and s >= 0 for s in seeds))):
        raise ProtocolError(f"{path}: seeds={seeds!r} is not allowed; expected a number of seeds >= 1 or a non-empty "
                            "list of integers >= 0")
    table = data.get("protocol", {})
    if not isinstance(table, dict):
        raise ProtocolError(f"{path}: protocol={table!r} must be a table ([protocol] with keys under it)")
    table = dict(table)
    base_name = table.pop("base", "quick")
    if not isinstance(base_name, str):
        raise ProtocolError(f"{path}: base={base_name!r} must be the name of a preset ({', '.join(catalog().protocols.names())})")
    proto = apply(resolve(base_name), {"name": path.stem, **table}, source=str(path))  # results/<suite name>/
    tables = data.get("protocols")
    if tables is None:
        protos = (apply_overrides(proto, overrides),)
    elif isinstance(tables, list) and tables and all(isinstance(t, dict) and "name" in t for t in tables):
        protos = tuple(apply_overrides(apply(proto, t, source=f"{path} [[protocols]] {t['name']!r}"), overrides)
                       for t in tables)
    else:
        raise ProtocolError(f"{path}: 'protocols' must be a list of [[protocols]] tables, each with its own name")
    names = [p.name for p in protos]
    if len(set(names)) < len(names):
        raise ProtocolError(f"{path}: two [[protocols]] tables share a name; each needs its own results folder")
    return Suite(protos, expand_variants(data["variants"]), seed_list(seeds, proto.seeds))


def make_suite(protocol: str, variants: Sequence[str], seeds: int | Sequence[int] | None,
               overrides: Iterable[str] = ()) -> Suite:
    if not variants:
        raise GanbenchError("nothing to run: give --variant NAME (repeatable) or --suite FILE")
    proto = resolve(protocol, overrides)
    return Suite((proto,), expand_variants(variants), seed_list(seeds, proto.seeds))


def check_plan(specs: Sequence[RunSpec], here: bool = True) -> None:
    """Everything the planned runs need, for the whole suite at once, before any file or folder is made:
    seeds, variants, each protocol's device, data set (present and loadable: both splits it uses) and
    metrics (known, and able to run on that data set), and that no run folder holds a run of other inputs.
    A refused suite leaves the results folder exactly as it was. ``here=False`` where the runs train on
    other machines (a Ray cluster): the device and the data need only be on the workers, which check them."""
    from ganbench.data import dataset_spec, load_dataset
    from ganbench.device import resolve_device
    from ganbench.metrics import metric_problem
    from ganbench.record import RunRecord

    if not specs:
        raise GanbenchError("nothing to run: the suite plans no runs (no variants or no seeds)")
    for spec in specs:
        if spec.seed < 0:
            raise SpecError(f"seed {spec.seed} is not allowed; expected an integer >= 0")
        catalog().variants.get(spec.variant)
    for p, root in dict.fromkeys((spec.protocol, spec.data_root) for spec in specs):
        if here:
            resolve_device(p.device)
        dataset = dataset_spec(p.dataset)
        for split in dict.fromkeys(("train", p.reference_split)) if here else ():
            load_dataset(p.dataset, split, p.resolution, p.channels, root, p.data_seed)
        for name in p.metrics:
            spec = catalog().metrics.get(name)
            problem = metric_problem(spec, p, dataset)
            if problem:
                raise GanbenchError(f"metric {name!r} cannot run under protocol {p.name!r}: {problem}")
    for spec in specs:
        RunRecord(spec.run_dir).check_identity(spec.run_id)
