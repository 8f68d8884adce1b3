"""YAML read strictly: a key given twice in one mapping is an error, not the last one winning
silently (PyYAML's ``safe_load`` keeps the last: a study with ``seed`` twice ran with the
second and said nothing).

And a plain scalar is a number, a Boolean or null only in the few spellings lvplan's own
number grammar (:mod:`lvplan.numbers`) and YAML 1.2's core schema agree on; every other is a
string, which the field's own check then refuses by name. PyYAML follows YAML 1.1, whose
implicit types turned a changes file's ``kw: 1:30`` into a 90 kW load (base 60), ``1_000``
into 1000, ``bus: 0x10`` into bus 16 and ``closed: off`` into False, each without a word
(found by a hostile probe), where the same text in a CSV or on the command line is refused.
Numbers: ``[-+]?[0-9]+`` (int); decimals with a point and/or an exponent, ``1e3`` included
(float; ``.inf``/``.nan`` too, which the fields refuse as not finite); Booleans ``true`` and
``false`` (any case); null ``~``, ``null`` or nothing. Dates stay strings."""

from __future__ import annotations

import re
from typing import Any

import yaml


class DuplicateKey(Exception):
    """A mapping names a key twice; the message gives the key and both lines."""


class _StrictLoader(yaml.SafeLoader):
    pass


_StrictLoader.yaml_implicit_resolvers = {}  # (not SafeLoader's YAML 1.1 set: see above)
for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^[-+]?[0-9]+$", "-+0123456789"),
    (
        "float",
        r"^(?:[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^(?:<<)$", "<"),  # (a merged mapping, as SafeLoader reads it)
):
    _StrictLoader.add_implicit_resolver(
        f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first)
    )


def _decimal_int(loader: _StrictLoader, node: yaml.ScalarNode) -> int:
    """An int in base 10 always: PyYAML's own constructor reads a leading 0 as octal (``010``
    was 8, ``08`` a ValueError traceback; found by a review), where lvplan reads 10 and 8."""
    return int(str(loader.construct_scalar(node)), 10)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _decimal_int)


def _refuse_repeats(loader: _StrictLoader, node: yaml.MappingNode) -> None:
    """A key twice in ``node``, or in a mapping merged into it (``<<: {...}``, which PyYAML
    flattens without constructing it as a mapping)."""
    first: dict[Any, int] = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # "<<": merged keys may be overridden
            merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for m in merged:
                if isinstance(m, yaml.MappingNode):
                    _refuse_repeats(loader, m)
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            line = first.get(key)
        except TypeError:  # an unhashable key: construct_mapping refuses it in its own words
            continue
        here = key_node.start_mark.line + 1
        if line is not None:
            raise DuplicateKey(f"line {here}: {key!r} given twice (first on line {line})")
        first[key] = here


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    _refuse_repeats(loader, node)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load_yaml(text: str) -> Any:
    """``yaml.safe_load(text)``, but a key given twice in a mapping raises DuplicateKey."""
    return yaml.load(text, Loader=_StrictLoader)  # (a SafeLoader: no Python objects)
