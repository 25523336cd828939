"""Which import binds a name at a site, and which sites belong to a helper's own definition.

Shared by SF010 (async-raw-factory) and SF011 (raw-factory-import): a raw factory imported under
the helper's own name (`from src.db import async_session as get_session`) cannot be fixed one call
site at a time, because the name already means the helper to a reader; SF011 rewrites the import
and all its uses together, so SF010 leaves those sites alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import libcst as cst
from libcst.metadata import GlobalScope, ParentNodeProvider, ScopeProvider

from sessionfix.index import dotted_name, resolve_relative

if TYPE_CHECKING:
    from sessionfix.rule import Rule


@dataclass(frozen=True)
class ImportBinding:
    """One name bound by one `from M import N [as A]` alias."""

    statement: cst.ImportFrom
    alias: cst.ImportAlias
    module: str  # absolute
    name: str  # N
    local: str  # A, or N
    assignment: object  # the libcst scope Assignment


def from_import_binding(rule: Rule, site: cst.CSTNode, name: str) -> ImportBinding | None:
    """The single `from ... import` alias that binds `name` where `site` is, if that is all it is."""
    scope = rule.get_metadata(ScopeProvider, site, None)
    if scope is None:
        return None
    assignments = list(scope[name])
    if len(assignments) != 1:
        return None
    return binding_of(rule, assignments[0])


def binding_of(rule: Rule, assignment: object) -> ImportBinding | None:
    node = getattr(assignment, "node", None)
    if not isinstance(node, cst.ImportFrom) or isinstance(node.names, cst.ImportStar):
        return None
    written = dotted_name(node.module) if node.module is not None else None
    module = resolve_relative(len(node.relative), written, rule.package)
    if module is None:
        return None
    wanted = getattr(assignment, "name", None)
    for alias in node.names:
        local = alias.evaluated_alias or alias.evaluated_name
        if local == wanted:
            return ImportBinding(node, alias, module, alias.evaluated_name, local, assignment)
    return None


def wears_helper_name(rule: Rule, func: cst.BaseExpression, helper: str | None) -> ImportBinding | None:
    """`func` is a raw factory imported under the last part of `helper`'s name (seed 002's
    `from src.db import async_session as get_session`), judged by what the import resolves to."""
    if helper is None or not isinstance(func, cst.Name):
        return None
    short = helper.rpartition(".")[2]
    if func.value != short:
        return None
    binding = from_import_binding(rule, func, func.value)
    if binding is None:
        return None
    target = rule.project.canonical(f"{binding.module}.{binding.name}")
    if target not in rule.raw_factories or target == rule.project.canonical(helper):
        return None
    return binding


def _outermost_definition(rule: Rule, node: cst.CSTNode) -> str | None:
    """Name of the module-level function or class that contains `node`, if any."""
    current: cst.CSTNode | None = node
    outermost: str | None = None
    while current is not None:
        parent = rule.get_metadata(ParentNodeProvider, current, None)
        if isinstance(current, (cst.FunctionDef, cst.ClassDef)) and isinstance(parent, cst.Module):
            outermost = current.name.value
        current = parent
    return outermost


def inside_definition_of(rule: Rule, node: cst.CSTNode, helpers: Iterable[str | None]) -> str | None:
    """The configured helper whose own module-level definition contains `node`, if any: its body
    is where the raw factory legitimately lives, and swapping it there would make it call itself."""
    module_name = rule.context.full_module_name
    if not module_name and rule.context.filename:
        module_name = rule.project.module_name_for(Path(rule.context.filename))[0]
    top = _outermost_definition(rule, node)
    if not module_name or top is None:
        return None
    here = rule.project.canonical(f"{module_name}.{top}")
    for helper in helpers:
        if helper is not None and rule.project.canonical(helper) == here:
            return helper
    return None


def in_module_scope(rule: Rule, node: cst.CSTNode) -> bool:
    return isinstance(rule.get_metadata(ScopeProvider, node, None), GlobalScope)

