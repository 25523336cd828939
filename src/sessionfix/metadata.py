"""A metadata wrapper that computes what it is asked for, and walks the tree only for that."""

from __future__ import annotations

from typing import Collection, Mapping

import libcst as cst
from libcst.metadata import ExpressionContextProvider
from libcst.metadata.base_provider import BaseMetadataProvider, BatchableMetadataProvider

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


class Wrapper(cst.MetadataWrapper):
    """libcst's wrapper, minus one walk over the tree for nothing.

    libcst gathers what is left to compute into one batched walk, and walks the whole tree even
    when that batch is empty, as it is when positions or parents are all that was asked for
    (neither is batchable): a full walk per request, the cost of a second parse. Expression
    contexts, which scopes need, come from `sessionfix.expression_context` (libcst's answer at a
    sixth of the cost).
    """

    def resolve_many(self, providers: Collection[Provider]) -> Mapping[Provider, Mapping[cst.CSTNode, object]]:
        if ExpressionContextProvider not in self._metadata and ExpressionContextProvider in _with_dependencies(providers):
            from sessionfix.expression_context import expression_contexts

            self._metadata[ExpressionContextProvider] = expression_contexts(self.module)  # see there why
        for provider in providers:
            if (provider not in self._metadata and not issubclass(provider, BatchableMetadataProvider)
                    and set(provider.METADATA_DEPENDENCIES) <= self._metadata.keys()):
                made = provider(self._cache.get(provider)) if provider.gen_cache else provider()
                self._metadata[provider] = made._gen(self)
        return super().resolve_many(providers)
