"""A libcst node's children, read from its dataclass fields.

Asking a node for `children`, or visiting it, goes through libcst's traversal, which rebuilds
every node it passes; the walks that only read the tree (parents, the node index, expression
contexts) read the fields instead.
"""

from __future__ import annotations

import dataclasses

import libcst as cst

#: node type -> the names of its fields, in declaration order
FIELDS: dict[type, tuple[str, ...]] = {}

#: what a field's value is, by its type: a node, a sequence (of nodes, maybe), or neither.
#: Asked per value with isinstance, CSTNode being an ABC made that check most of a walk's time.
NODE, SEQUENCE, OTHER = 1, 2, 3  # all true: `KINDS.get(t) or kind(t)`
KINDS: dict[type, int] = {}


def kind(value_type: type) -> int:
    found = KINDS.get(value_type)
    if found is None:
        found = KINDS[value_type] = (NODE if issubclass(value_type, cst.CSTNode)
                                     else SEQUENCE if issubclass(value_type, (list, tuple)) else OTHER)
    return found


def fields(node_type: type) -> tuple[str, ...]:
    names = FIELDS.get(node_type)
    if names is None:
        names = FIELDS[node_type] = tuple(f.name for f in dataclasses.fields(node_type))
    return names


def children(node: cst.CSTNode, names: tuple[str, ...] | None = None) -> list[cst.CSTNode]:
    """The nodes in `node`'s fields `names` (default: all of them, in declaration order)."""
    kinds = KINDS
    found: list[cst.CSTNode] = []
    for name in names or FIELDS.get(type(node)) or fields(type(node)):
        value = getattr(node, name)
        held = kinds.get(type(value)) or kind(type(value))
        if held == NODE:
            found.append(value)
        elif held == SEQUENCE:
            found.extend(item for item in value if (kinds.get(type(item)) or kind(type(item))) == NODE)
    return found
