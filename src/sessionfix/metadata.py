"""A metadata wrapper that computes what it is asked for, and walks the tree only for that."""

from __future__ import annotations

import builtins
from contextlib import contextmanager
from types import MappingProxyType
from typing import Collection, Iterator, Mapping

import libcst as cst
from libcst.metadata import ExpressionContextProvider, PositionProvider
from libcst.metadata.position_provider import PositionProvidingCodegenState
from libcst.metadata.base_provider import BaseMetadataProvider, BatchableMetadataProvider
from libcst.metadata import scope_provider
from libcst.metadata.scope_provider import ScopeVisitor

from sessionfix.visiting import can_walk, reading_visits

Provider = type[BaseMetadataProvider[object]]


def _with_dependencies(providers: Collection[Provider]) -> set[Provider]:
    found: set[Provider] = set()
    pending = list(providers)
    while pending:
        provider = pending.pop()
        if provider not in found:
            found.add(provider)
            pending.extend(provider.METADATA_DEPENDENCIES)
    return found


_IN_VISIT_MODULE: dict[Provider, bool] = {}


def _works_in_visit_module(provider: BatchableMetadataProvider[object]) -> bool:
    """A batchable provider that does all its work when the batch visits the module (it runs its
    own visitor from there): the batch's walk over the rest of the tree calls nothing of it."""
    found = _IN_VISIT_MODULE.get(type(provider))
    if found is None:
        found = _IN_VISIT_MODULE[type(provider)] = provider.get_visitors().keys() == {"visit_Module"}
    return found


class _PositionsKeepingCode(PositionProvider):
    """libcst's positions, which come from writing the module's code out: the code is kept."""

    code: str | None = None

    def _gen_impl(self, module: cst.Module) -> None:
        state = PositionProvidingCodegenState(default_indent=module.default_indent,
                                              default_newline=module.default_newline, provider=self)
        module._codegen(state)
        self.code = "".join(state.tokens)


#: libcst's node types that count as assignments for the scope visitor, and per node type whether
#: it is one (see `_assignments_told_by_type`)
_ASSIGNMENT_LIKE = getattr(scope_provider, "_ASSIGNMENT_LIKE_NODES", None)
_IS_ASSIGNMENT_LIKE: dict[type, bool] = {}


def _isinstance(obj: object, classes: object) -> bool:
    if classes is not _ASSIGNMENT_LIKE:
        return builtins.isinstance(obj, classes)  # type: ignore[arg-type]
    found = _IS_ASSIGNMENT_LIKE.get(type(obj))
    if found is None:
        found = _IS_ASSIGNMENT_LIKE[type(obj)] = builtins.isinstance(obj, classes)  # type: ignore[arg-type]
    return found


@contextmanager
def _assignments_told_by_type() -> Iterator[None]:
    """libcst's scope visitor asks, as it leaves each node, `isinstance(node, <assignment-like
    node types>)`: node types are ABCs, so each ask went through `ABCMeta.__instancecheck__`, a
    quarter of the scope analysis. While on, the scope module's `isinstance` answers that one
    question once per node type (a node's type decides it: libcst's node classes are concrete,
    and nothing registers virtual subclasses of them); every other question goes to the builtin.
    """
    if not isinstance(_ASSIGNMENT_LIKE, tuple) or "isinstance" in vars(scope_provider):
        yield  # a libcst without that tuple, or already on
        return
    scope_provider.isinstance = _isinstance  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del scope_provider.isinstance  # type: ignore[attr-defined]


#: visitors that run under `reading_visits`, when libcst's hooks are theirs unchanged
_WALKED = (ScopeVisitor,) if can_walk(ScopeVisitor) else ()


class Wrapper(cst.MetadataWrapper):
    """libcst's wrapper, minus one walk over the tree for nothing.

    libcst gathers what is left to compute into one batched walk, and walks the whole tree even
    when that batch is empty, as it is when positions or parents are all that was asked for
    (neither is batchable): a full walk per request, the cost of a second parse. Scopes (and
    qualified names) are computed by a visitor that their provider starts from the module, so
    the batch's own walk is for nothing too: they are computed directly, and libcst's scope
    visitor goes through `sessionfix.visiting`. Expression contexts, which scopes need, come from
    `sessionfix.expression_context` (libcst's answer at a sixth of the cost).

    Writing a module's code out costs about what computing its positions does, which writes it
    out too: `code` is the module's code, kept from the positions when they were computed first.
    """

    @property
    def code(self) -> str:
        """`self.module.code`, worked out once."""
        code = self.__dict__.get("_code")
        if code is None:
            code = self.__dict__["_code"] = self.module.code
        return code

    def resolve_many(self, providers: Collection[Provider]) -> Mapping[Provider, Mapping[cst.CSTNode, object]]:
        needed = _with_dependencies(providers)
        if ExpressionContextProvider in needed and ExpressionContextProvider not in self._metadata:
            from sessionfix.expression_context import expression_contexts

            self._metadata[ExpressionContextProvider] = expression_contexts(self.module)  # see there why
        pending = [provider for provider in needed if provider not in self._metadata]
        while pending:
            ready = [provider for provider in pending if set(provider.METADATA_DEPENDENCIES) <= self._metadata.keys()]
            for provider in ready:
                if provider is PositionProvider:
                    positions = _PositionsKeepingCode()
                    self._metadata[provider] = positions._gen(self)
                    self.__dict__.setdefault("_code", positions.code)
                    pending.remove(provider)
                    continue
                made = provider(self._cache.get(provider)) if provider.gen_cache else provider()
                if not isinstance(made, BatchableMetadataProvider):
                    self._metadata[provider] = made._gen(self)
                elif _works_in_visit_module(made):
                    with made.resolve(self), reading_visits(*_WALKED), _assignments_told_by_type():
                        made.visit_Module(self.module)
                    self._metadata[provider] = MappingProxyType(dict(made._computed))
                else:
                    continue  # left to libcst's batch
                pending.remove(provider)
            if not any(provider in self._metadata for provider in ready):
                break
        return super().resolve_many(providers)
