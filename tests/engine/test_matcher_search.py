"""`searching_once`: libcst's search for decorated methods, skipped only where it found nothing."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m
import pytest
from libcst.matchers import _visitors

from sessionfix.matcher_search import searching_once

CODE = "def f():\n    g(1)\n    h(2)\n"


class _Decorated(m.MatcherDecoratableTransformer):
    def __init__(self, seen: list[str]) -> None:
        super().__init__()
        self.seen = seen

    @m.call_if_inside(m.FunctionDef())
    @m.visit(m.Call(func=m.Name("g")))
    def _g(self, node: cst.Call) -> None:
        self.seen.append("visit g")

    @m.leave(m.Call(func=m.Name("h")))
    def _h(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        self.seen.append("leave h")
        return updated.with_changes(func=cst.Name("k"))


class _Plain(m.MatcherDecoratableTransformer):
    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
        return updated.with_changes(value=updated.value.upper()) if updated.value == "g" else updated


def _counting(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in ("_gather_constructed_visit_funcs", "_gather_constructed_leave_funcs", "_gather_matchers"):
        real = getattr(_visitors, name)
        monkeypatch.setattr(_visitors, name, lambda obj, _real=real, _name=name: calls.append(_name) or _real(obj))
    return calls


def test_a_class_with_nothing_to_find_is_searched_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    module = cst.parse_module(CODE)
    with searching_once():
        first = module.visit(_Plain()).code
        assert len(calls) == 3  # all three searches, once
        second = _Plain()
        assert module.visit(second).code == first == CODE.replace("g(", "G(")
        assert len(calls) == 3
        assert second._matchers == {} and second._matchers is not _Plain()._matchers  # fresh dicts
    module.visit(_Plain())
    assert len(calls) == 6  # off again: libcst's own search every time


def test_a_class_with_decorated_methods_is_searched_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _counting(monkeypatch)
    module = cst.parse_module(CODE)
    with searching_once():
        for _ in range(2):
            seen: list[str] = []
            assert module.visit(_Decorated(seen)).code == CODE.replace("h(", "k(")
            assert seen == ["visit g", "leave h"]
    assert len(calls) == 6


def test_searching_once_puts_libcsts_searches_back() -> None:
    originals = [_visitors._gather_constructed_visit_funcs, _visitors._gather_constructed_leave_funcs,
                 _visitors._gather_matchers]
    with searching_once():
        assert _visitors._gather_matchers is not originals[2]
        with searching_once():
            pass
        assert _visitors._gather_matchers is not originals[2]  # only the outermost use puts back
    assert [_visitors._gather_constructed_visit_funcs, _visitors._gather_constructed_leave_funcs,
            _visitors._gather_matchers] == originals
    with pytest.raises(RuntimeError), searching_once():
        raise RuntimeError
    assert _visitors._gather_matchers is originals[2]
