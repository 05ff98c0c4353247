"""Every node below a libcst node, fast, for the passes that read a function's tree without
caring in which order its nodes come.

libcst's ``node.children`` builds a copy of ``node`` each time it is asked (it is a visit),
and a visitor rebuilds the whole tree: over a 20,000-line function the passes that only
collect names spent seconds there. A node's children are the libcst nodes among its
dataclass fields (alone or in a sequence), which this reads directly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import libcst as cst

_FIELDS: dict[type, tuple[str, ...]] = {}


def descendants(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """``node`` and every node below it (each once; in no order to rely on)."""
    pending = [node]
    while pending:
        current = pending.pop()
        yield current
        kind = type(current)
        names = _FIELDS.get(kind)
        if names is None:
            names = _FIELDS[kind] = tuple(field.name for field in dataclasses.fields(kind))
        for name in names:
            value = getattr(current, name)
            if isinstance(value, cst.CSTNode):
                pending.append(value)
            elif isinstance(value, (tuple, list)):
                pending.extend(item for item in value if isinstance(item, cst.CSTNode))


def contains(node: cst.CSTNode, kinds: type | tuple[type, ...]) -> bool:
    """Is ``node``, or a node below it, of one of ``kinds``?"""
    return any(isinstance(found, kinds) for found in descendants(node))
