"""libcst's search for matcher-decorated methods, made once per class.

Every new `MatcherDecoratableTransformer`/`Visitor` looks through all its attributes (some 700
`visit_*`/`leave_*` stubs) three times for `@m.visit`, `@m.leave` and `@m.call_if_inside`
methods. The helpers libcst runs after a rule that adds an import (AddImportsVisitor and the
gatherer it starts) have none, and the three searches were most of their cost: 1.8 s of a
`--jobs 1` run on the benchmark. While `searching_once` is on, a search that found nothing for
a class is not made again for that class; a class with decorated methods is searched every
time, as libcst does. Decorated methods are class attributes, so one search answers for every
instance (a class given decorated methods after its first instance would go unseen: they
belong in the class body, as for `rule._UNDECORATED`).
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Callable, Iterator

from libcst.matchers import _visitors

_SEARCHES = ("_gather_constructed_visit_funcs", "_gather_constructed_leave_funcs", "_gather_matchers")
#: search name -> the classes it found nothing in
_FOUND_NOTHING: dict[str, weakref.WeakSet[type]] = {name: weakref.WeakSet() for name in _SEARCHES}


#: the searches libcst's visitors call while `searching_once` is on, and how deep it is
_ORIGINALS: dict[str, Callable[[object], dict]] = {}
_depth = 0


def _once(name: str, search: Callable[[object], dict]) -> Callable[[object], dict]:
    nothing = _FOUND_NOTHING[name]

    def search_once(obj: object) -> dict:
        if type(obj) in nothing:
            return {}  # a new dict each time: the visitor fills in its matchers' state
        found = search(obj)
        if not found:
            nothing.add(type(obj))
        return found

    return search_once


@contextmanager
def searching_once() -> Iterator[None]:
    """While on, libcst's three searches run at most once per class that has nothing to find.
    (It swaps functions in `libcst.matchers._visitors` for the whole process: meant for a
    single-threaded stretch; only the outermost use swaps them back.)"""
    global _depth
    if _depth == 0:
        for name in _SEARCHES:
            _ORIGINALS[name] = getattr(_visitors, name)
            setattr(_visitors, name, _once(name, _ORIGINALS[name]))
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            for name in _SEARCHES:
                setattr(_visitors, name, _ORIGINALS.pop(name))
