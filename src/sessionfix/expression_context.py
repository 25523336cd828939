"""libcst's expression contexts (load, store, del), read from the nodes' fields.

`ScopeProvider` needs `ExpressionContextProvider`, whose visitor runs through libcst's generic
traversal, which rebuilds every node it passes: 22 ms a module on average over the benchmark's
matching files, once for every tree a rule rewrites. This walk gives the same mapping (tested against libcst's on every input) from
the fields alone. Each special case below mirrors one `visit_*` of libcst's
`ExpressionContextVisitor`: the children it visits, and in which context; a node without one
passes its context on to all its children.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Callable, Mapping

import libcst as cst
from libcst.metadata import ExpressionContext

from sessionfix.cstfields import children

LOAD, STORE, DEL = ExpressionContext.LOAD, ExpressionContext.STORE, ExpressionContext.DEL

#: (node, its context) still to visit
_Stack = list[tuple[cst.CSTNode, ExpressionContext]]


def _push(stack: _Stack, context: ExpressionContext, *nodes: object) -> None:
    """Each of `nodes` (a node, a sequence of them, or None) to visit in `context`."""
    for node in nodes:
        if isinstance(node, cst.CSTNode):
            stack.append((node, context))
        elif isinstance(node, (list, tuple)):
            stack.extend((item, context) for item in node if isinstance(item, cst.CSTNode))


def _assign(node: cst.Assign, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    _push(stack, STORE, node.targets)
    _push(stack, context, node.value)


def _ann_assign(node: cst.AnnAssign, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    _push(stack, STORE, node.target)
    _push(stack, context, node.annotation, node.value)


def _target_then_value(node: cst.AugAssign | cst.NamedExpr, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    _push(stack, STORE, node.target)
    _push(stack, context, node.value)


def _name(node: cst.Name, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    out[node] = context


def _as_name(node: cst.AsName, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    _push(stack, STORE, node.name)


def _comp_for(node: cst.CompFor, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    _push(stack, STORE, node.target)
    _push(stack, context, node.iter, node.ifs, node.inner_for_in)


def _for(node: cst.For, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    _push(stack, STORE, node.target)
    _push(stack, context, node.iter, node.body, node.orelse)


def _del(node: cst.Del, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    _push(stack, DEL, node.target)


def _attribute(node: cst.Attribute, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    out[node] = context
    _push(stack, LOAD, node.value)  # not `attr`: a str in `ast`, so it has no context


def _subscript(node: cst.Subscript, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    out[node] = context
    _push(stack, LOAD, node.value, node.slice)


def _marked(node: cst.CSTNode, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    out[node] = context  # Tuple, List, StarredElement: their elements share the context
    _push(stack, context, children(node))


def _class(node: cst.ClassDef, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    _push(stack, STORE, node.name)
    _push(stack, context, node.body, node.bases, node.keywords, node.decorators)


def _function(node: cst.FunctionDef, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    _push(stack, STORE, node.name)
    _push(stack, context, node.params, node.body, node.decorators, node.returns)


def _param(node: cst.Param, context: ExpressionContext, stack: _Stack, out: dict) -> None:
    _push(stack, STORE, node.name)
    _push(stack, context, node.annotation, node.default)


_VISITS: Mapping[type, Callable[[cst.CSTNode, ExpressionContext, _Stack, dict], None]] = {
    cst.Assign: _assign, cst.AnnAssign: _ann_assign, cst.AugAssign: _target_then_value,
    cst.NamedExpr: _target_then_value, cst.Name: _name, cst.AsName: _as_name, cst.CompFor: _comp_for,
    cst.For: _for, cst.Del: _del, cst.Attribute: _attribute, cst.Subscript: _subscript,
    cst.Tuple: _marked, cst.List: _marked, cst.StarredElement: _marked, cst.ClassDef: _class,
    cst.FunctionDef: _function, cst.Param: _param,
}


def expression_contexts(module: cst.Module) -> Mapping[cst.CSTNode, ExpressionContext]:
    """What `ExpressionContextProvider` gives for `module`."""
    out: dict[cst.CSTNode, ExpressionContext] = {}
    stack: _Stack = [(module, LOAD)]
    visits = _VISITS
    while stack:
        node, context = stack.pop()
        visit = visits.get(type(node))
        if visit is not None:
            visit(node, context, stack, out)
        else:
            stack.extend((child, context) for child in children(node))
    return MappingProxyType(out)
