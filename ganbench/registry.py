"""One small registry for variants, data sets, metrics, protocols, extractors, rules and claims.

Each entry is an object with a ``name`` (rules and claims: an ``id``; the registry's ``key``); the registry
remembers which plugin added it so that a clash names both sides, and a lookup of an unknown name answers
with the closest known names.
"""

from __future__ import annotations

import fnmatch
from typing import Generic, Iterable, Iterator, TypeVar

from ganbench.errors import PluginClash, UnknownName, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, key: str = "name"):
        self.kind = kind                       # "variant", "data set", ... used in messages
        self.key = key                         # the attribute that names an entry: "name", or "id" for rules and claims
        self._items: dict[str, T] = {}
        self._origin: dict[str, str] = {}

    def add(self, item: T, origin: str) -> None:
        name = getattr(item, self.key)
        if name in self._items:
            raise PluginClash(
                f"{self.kind} {name!r} is registered twice: by plugin {self._origin[name]!r} "
                f"and by plugin {origin!r}", kind=self.kind, name=name, plugins=(self._origin[name], origin)
            )
        self._items[name] = item
        self._origin[name] = origin

    def extend(self, items: Iterable[T], origin: str) -> None:
        for item in items:
            self.add(item, origin)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise UnknownName(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        hint = did_you_mean(name, self._items, otherwise="none is registered")
        return f"unknown {self.kind} {name!r}; {hint}"

    def origin(self, name: str) -> str:
        return self._origin[name]

    def names(self, pattern: str = "*") -> list[str]:
        return [n for n in self._items if fnmatch.fnmatch(n, pattern)]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)
