"""`sessionfix.expression_context` gives exactly libcst's ExpressionContextProvider answers.

Scopes are computed from these contexts, and through scopes every rule's idea of what a name
means: any difference would change what the rules do. Compared on real code (this repository,
every rule example), on snippets for each of libcst's special cases, and on random programs.
"""

from __future__ import annotations

import textwrap

import hypothesmith
import libcst as cst
import pytest
from hypothesis import HealthCheck, given, reject, settings
from libcst.metadata import ExpressionContextProvider, MetadataWrapper, ScopeProvider

from sessionfix.expression_context import expression_contexts
from sessionfix.metadata import Wrapper
from tests.engine.test_toplevel import _example_files, _repository_files

SNIPPETS = {
    "assignments": """
        a = b = c
        x, (y, *z) = [p, q] = f()
        obj.attr = obj.other[i] = 1
        m[k1][k2], n.o.p = 1, 2
        t: int = v
        u: List[int]
        w += 1
        s.t += 1
        d[e] += 1
        """,
    "walrus_and_comprehensions": """
        if (n := len(a)) > 10:
            pass
        [y for x in xs if (y := f(x)) for z, (q, *r) in y]
        {k: v for k, v in d.items()}
        (a for a in b)
        {s for s in t}
        """,
    "deletes": "del a, b.c, d[e], (f, [g])\ndel h[i:j]\n",
    "loops": """
        for i, (j, *k) in pairs:
            pass
        else:
            done = True
        async def f():
            async for a.b in c:
                pass
            async with d as (e, f), g as h[0]:
                pass
        while x:
            break
        """,
    "definitions": """
        @decorator(arg)
        class C(Base, metaclass=Meta):
            attr: int = 0
            def method(self, a: int = 1, *args: str, b, **kwargs) -> C:
                return lambda x, y=2, *z, **w: x
        async def g(a, /, b, *, c): ...
        def h[T](x: T) -> T: ...
        class K[U]: ...
        type Alias[V] = list[V]
        """,
    "imports_and_names": """
        import a.b.c as d
        from e import f as g, h
        from . import i
        global j
        try:
            pass
        except (E1, E2) as err:
            pass
        try:
            pass
        except* E3 as group:
            pass
        with open(p) as fh:
            pass
        """,
    "match": """
        match command:
            case [Point(x=0, y=y), *rest] if y > 0:
                pass
            case {"key": value, **others}:
                pass
            case Klass.CONST | 1 as alias:
                pass
        """,
    "subscripts_and_slices": "a[b:c, d] = e[f, g:h:i]\nx[y][z].w = q[...]\nprint(*args, **kw)\n",
    "strings": 'f"{a!r:>{width}} {b.c[d]}"\nx = f"{(y := 1)}"\n',
}


def _same(raw: bytes | str) -> None:
    module = cst.parse_module(raw)
    expected = dict(MetadataWrapper(module, unsafe_skip_copy=True).resolve(ExpressionContextProvider))
    assert dict(expression_contexts(module)) == expected


@pytest.mark.parametrize("raw", [*_repository_files(), *_example_files()])
def test_real_code_gets_libcsts_contexts(raw: bytes) -> None:
    _same(raw)


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_each_special_case_gets_libcsts_contexts(name: str) -> None:
    _same(textwrap.dedent(SNIPPETS[name]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(source=hypothesmith.from_grammar())
def test_random_programs_get_libcsts_contexts(source: str) -> None:
    try:
        cst.parse_module(source)
    except cst.ParserSyntaxError:
        reject()  # hypothesmith writes some programs only CPython's parser takes
    _same(source)


def test_scopes_read_the_wrappers_contexts() -> None:
    """The runner's wrapper hands scopes these contexts, and the scopes come out as libcst's."""
    code = textwrap.dedent(SNIPPETS["assignments"] + SNIPPETS["definitions"])
    module = cst.parse_module(code)
    wrapper = Wrapper(module, unsafe_skip_copy=True)
    scopes = wrapper.resolve(ScopeProvider)
    assert wrapper.resolve(ExpressionContextProvider) == expression_contexts(module)
    reference = MetadataWrapper(module, unsafe_skip_copy=True).resolve(ScopeProvider)
    assert {node: sorted(str(a.node) for a in scope.accesses) for node, scope in scopes.items()
            if isinstance(node, cst.Name)} == {node: sorted(str(a.node) for a in scope.accesses)
                                               for node, scope in reference.items() if isinstance(node, cst.Name)}
