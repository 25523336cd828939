"""libcst's visit, for a visitor that only reads, without libcst rebuilding the tree under it.

`CSTNode.visit` goes through `_visit_and_replace_children`, which constructs (and validates) a
copy of every node it passes, even for a `CSTVisitor`, whose copies are thrown away: most of the
cost of libcst's scope analysis, which runs once for every tree a rule rewrites. `walk` makes
the same calls on the visitor, in the same order (`on_visit`, each visited field's attribute
hooks with its children in between, `on_leave`), and returns the node, as `visit` does for a
visitor; `reading_visits` routes `visit` there for chosen visitor types, including the nested
`node.visit(self)` calls those visitors make themselves.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import libcst as cst

from sessionfix.cstfields import KINDS, NODE, SEQUENCE, VISITED, kind, visited_fields

_Hook = Optional[Callable[[cst.CSTVisitor, cst.CSTNode], object]]
#: (visit_<Type>, leave_<Type>, ((field, visit_<Type>_<field>, leave_<Type>_<field>), ...))
_Plan = tuple[_Hook, _Hook, tuple[tuple[str, _Hook, _Hook], ...]]

#: visitor type -> node type -> plan (weakly: a test makes visitor types by the hundred; a type
#: whose hooks call super() keeps itself alive through their __class__ cell, as ScopeVisitor does)
_PLANS: weakref.WeakKeyDictionary[type, dict[type, _Plan]] = weakref.WeakKeyDictionary()
_ORIGINAL_VISIT = cst.CSTNode.visit
_ATTRIBUTE_HOOKS = ("on_visit_attribute", "on_leave_attribute")
#: visitor types `visit` hands to `walk` while `reading_visits` is on
_TAKEN: set[type] = set()


def can_walk(visitor_type: type) -> bool:
    """A `CSTVisitor` whose attribute hooks are libcst's own, which look the visitor's
    `visit_<Type>_<field>` methods up by name: `walk` looks them up once per node type instead,
    and so does it for `visit_<Type>`/`leave_<Type>` unless the visitor overrides `on_visit` or
    `on_leave` (looked up on the class: such a visitor must not hold those methods on the
    instance)."""
    return (issubclass(visitor_type, cst.CSTVisitor)
            and all(getattr(visitor_type, hook) is getattr(cst.CSTVisitor, hook) for hook in _ATTRIBUTE_HOOKS))


def _children_wanted(visitor: cst.CSTVisitor, node: cst.CSTNode) -> bool:
    """An overridden `on_visit`, whose answer `visit` takes by truth (libcst's own says False
    only when `visit_<Type>` returned False, which is what `walk` checks for)."""
    return bool(visitor.on_visit(node))


def _plan(visitor_type: type, node: cst.CSTNode, plans: dict[type, _Plan]) -> _Plan:
    name = type(node).__name__
    fields = VISITED.get(type(node)) or visited_fields(node)
    base = cst.CSTVisitor
    plan = (
        getattr(visitor_type, f"visit_{name}", None) if visitor_type.on_visit is base.on_visit else _children_wanted,
        getattr(visitor_type, f"leave_{name}", None) if visitor_type.on_leave is base.on_leave else visitor_type.on_leave,
        tuple((field, getattr(visitor_type, f"visit_{name}_{field}", None),
               getattr(visitor_type, f"leave_{name}_{field}", None)) for field in fields),
    )
    if type(node) in VISITED:  # else its fields go node by node
        plans[type(node)] = plan
    return plan


def walk(node: cst.CSTNode, visitor: cst.CSTVisitor) -> cst.CSTNode:
    """`node.visit(visitor)` for a visitor `can_walk` accepts, reading fields instead of
    rebuilding nodes."""
    plans = _PLANS.get(type(visitor))
    if plans is None:
        plans = _PLANS[type(visitor)] = {}
    _walk(node, visitor, plans)
    return node


def _walk(node: cst.CSTNode, visitor: cst.CSTVisitor, plans: dict[type, _Plan]) -> None:
    kinds = KINDS
    visit, leave, fields = plans.get(type(node)) or _plan(type(visitor), node, plans)
    if visit is None or visit(visitor, node) is not False:
        for field, visit_field, leave_field in fields:
            if visit_field is not None:
                visit_field(visitor, node)
            value = getattr(node, field)
            held = kinds.get(type(value)) or kind(type(value))
            if held == NODE:
                _walk(value, visitor, plans)
            elif held == SEQUENCE:
                for child in value:
                    _walk(child, visitor, plans)
            if leave_field is not None:
                leave_field(visitor, node)
    if leave is not None:
        leave(visitor, node)


def _visit(self: cst.CSTNode, visitor: cst.CSTVisitor) -> object:
    if type(visitor) in _TAKEN:
        return walk(self, visitor)
    return _ORIGINAL_VISIT(self, visitor)


@contextmanager
def reading_visits(*visitor_types: type) -> Iterator[None]:
    """While on, `node.visit(v)` for `v` of one of `visitor_types` (each one `can_walk`
    accepts) is `walk(node, v)`; any other visitor gets libcst's own traversal.

    It swaps `CSTNode.visit`, so it holds for the whole process: meant for a single-threaded
    stretch. Another thread's visit during it still gets exactly libcst's results (the same
    calls, made faster, or libcst's own). Nested uses in one thread leave libcst's method to the
    outermost; across threads, the first use to end puts it back while another may still be
    inside, which then gets libcst's own traversal (the same calls, slower).
    """
    for visitor_type in visitor_types:
        if not can_walk(visitor_type):
            raise TypeError(f"{visitor_type.__name__} overrides a visitor hook; walk cannot stand in for it")
    added = set(visitor_types) - _TAKEN
    swapped = cst.CSTNode.visit is _ORIGINAL_VISIT
    _TAKEN.update(added)
    if swapped:
        cst.CSTNode.visit = _visit  # type: ignore[method-assign]
    try:
        yield
    finally:
        _TAKEN.difference_update(added)
        if swapped:
            cst.CSTNode.visit = _ORIGINAL_VISIT  # type: ignore[method-assign]
