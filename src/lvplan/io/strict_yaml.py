"""YAML read strictly: a key given twice in one mapping is an error, not the last one winning
silently (PyYAML's ``safe_load`` keeps the last: a study with ``seed`` twice ran with the
second and said nothing)."""

from __future__ import annotations

from typing import Any

import yaml


class DuplicateKey(Exception):
    """A mapping names a key twice; the message gives the key and both lines."""


class _StrictLoader(yaml.SafeLoader):
    pass


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
