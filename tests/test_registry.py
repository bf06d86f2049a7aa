"""The one registry behind variants, data sets, metrics and protocols."""

from dataclasses import dataclass

import pytest

from ganbench.errors import PluginClash, UnknownName
from ganbench.registry import Registry


@dataclass
class Item:
    name: str


def _registry() -> Registry:
    r = Registry("variant")
    r.extend([Item("dcgan"), Item("d-relu"), Item("d-maxout")], origin="builtin")
    return r


def test_get_and_origin_and_order():
    r = _registry()
    assert r.get("d-relu").name == "d-relu" and r.origin("d-relu") == "builtin"
    assert [i.name for i in r] == ["dcgan", "d-relu", "d-maxout"] and len(r) == 3 and "dcgan" in r


def test_an_unknown_name_answers_with_the_closest():
    with pytest.raises(UnknownName, match=r"unknown variant 'd-reul'; did you mean: d-relu"):
        _registry().get("d-reul")
    with pytest.raises(UnknownName, match="none is registered"):
        Registry("metric").get("fid")


def test_a_name_registered_twice_names_both_plugins():
    r = _registry()
    with pytest.raises(PluginClash, match="'dcgan' is registered twice: by plugin 'builtin' and by plugin 'mine'"):
        r.add(Item("dcgan"), origin="mine")


def test_names_take_a_wildcard():
    assert _registry().names("d-*") == ["d-relu", "d-maxout"]
