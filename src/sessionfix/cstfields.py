"""A libcst node's children, read from its dataclass fields.

Asking a node for `children`, or visiting it, goes through libcst's traversal, which rebuilds
every node it passes; the walks that only read the tree (parents, the node index, expression
contexts, `sessionfix.visiting`) read the fields instead.
"""

from __future__ import annotations

import dataclasses
import dis
import types

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


#: node type -> the fields libcst's traversal visits, in its order (see `visited_fields`)
VISITED: dict[type, tuple[str, ...]] = {}


class _FieldRecorder(cst.CSTVisitor):
    """Notes the fields a node's own traversal visits, and goes no deeper."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        return False

    def on_leave(self, original_node: cst.CSTNode) -> None:
        pass

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        self.names.append(attribute)

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        pass


#: what a straight-line traversal may call: each of these visits its field, None or not
_VISIT_HELPERS = frozenset({"visit_required", "visit_optional", "visit_sentinel", "visit_sequence",
                            "visit_iterable", "visit_body_sequence", "visit_body_iterable"})
_JUMPS = frozenset(getattr(dis, "hasjump", None) or [*dis.hasjrel, *dis.hasjabs])
_STRAIGHT: dict[type, bool] = {}


def straight_line(node_type: type) -> bool:
    """Does every node of `node_type` have its fields visited alike? Its traversal must make no
    choice (no jump, no handler, no nested function) and visit only through libcst's helpers,
    which visit a field whether or not it holds anything. (A FormattedStringExpression's
    `format_spec` is visited only when it is not None; an ImportFrom's `names` one way or
    another.) Told from the traversal's bytecode, so a newer libcst is judged by its own code."""
    found = _STRAIGHT.get(node_type)
    if found is None:
        code = node_type._visit_and_replace_children.__code__
        found = _STRAIGHT[node_type] = (
            not getattr(code, "co_exceptiontable", b"")  # 3.11+; before, handlers are jumps
            and not any(isinstance(const, types.CodeType) for const in code.co_consts)
            and not any(instruction.opcode in _JUMPS for instruction in dis.get_instructions(code))
            and all(name in _VISIT_HELPERS for name in code.co_names if name.startswith(("visit", "_visit"))))
    return found


def visited_fields(node: cst.CSTNode) -> tuple[str, ...]:
    """The fields of `node` that libcst's traversal visits, in the order it visits them (not
    always the declared one: a FunctionDef's decorators come before its name).

    Read by letting libcst's own `_visit_and_replace_children` run on `node`, one level deep:
    once per type when `straight_line` says every node of it goes alike, else for each node.
    """
    names = VISITED.get(type(node))
    if names is None:
        recorder = _FieldRecorder()
        node._visit_and_replace_children(recorder)
        names = tuple(recorder.names)
        if straight_line(type(node)):
            VISITED[type(node)] = names
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
