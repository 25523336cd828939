"""What a rule needs in a file's bytes to have anything to do there (read by `sessionfix.prefilter`).

Kept apart from `sessionfix.rule` so that reading the cache never has to import libcst.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class PrefilterNeeds:
    """What must be in a file's bytes for a rule to have anything to do there (sessionfix.prefilter).

    The prefilter runs a rule on a file when any of these can occur in it. It decides from the
    bytes, and for `names` also from Python's own parser: a spelling counts only where it can stand
    for one of the names (see `sessionfix.prefilter.References`).
    """

    #: dotted names the rule matches by meaning (raw factories, helpers); the prefilter also looks
    #: for every project alias of them (`from core.db import async_session as make`)
    names: frozenset[str] = frozenset()
    #: identifiers that must occur as written
    words: frozenset[str] = frozenset()
    #: callables (dotted): a module-level `X = f(...)` in the project with f among these makes X
    #: one of `names` (e.g. sqlalchemy.orm.sessionmaker)
    made_by: frozenset[str] = frozenset()
    #: decorators (dotted): every function a project module that mentions one defines counts as
    #: one of `names` (e.g. contextlib.contextmanager for session helpers)
    decorated_by: frozenset[str] = frozenset()
    #: the rule reports imports that do not resolve: also run it where an import may not
    missing_imports: bool = False
    #: every site reads one of `names` as a value (a call, a `with` item, an alias): a file that
    #: only imports them, or names them only in annotations, holds none
    used_only: bool = False
    #: classes count too: every class a project module defines that has `__enter__`, `__aenter__`,
    #: `__exit__` or `__aexit__`, or whose bases mention one of `names` (e.g. a session subclass)
    context_classes: bool = False
    #: a second condition: the rule runs only where this one can be met as well (e.g. a call
    #: that spawns tasks AND a session to share between them)
    also: PrefilterNeeds | None = None
    #: a last look, where the file parses: given its `ast`, the identifiers in it that may stand
    #: for one of `names` or `words`, and those that may stand for one of `also`'s names (their
    #: spellings, project re-exports, and local aliases), can the rule have a site at all? It must
    #: answer True wherever the rule could act (a superset).
    sites: Callable[[ast.Module, frozenset[str], frozenset[str]], bool] | None = None
