"""`sessionfix.visiting.walk` is libcst's traversal, and scopes computed through it are libcst's.

The runner computes every scope (and so what each rule thinks a name means) with libcst's own
scope visitor driven by `walk` instead of libcst's node-rebuilding traversal. Two things are
compared with libcst: the calls a visitor receives, hook by hook, for a visitor with a hook for
every node type and field; and everything scope analysis records (scopes, assignments,
accesses, their order indices and what each access refers to). On real code (this repository,
every rule example), on snippets for the cases that differ by node, and on random programs.
"""

from __future__ import annotations

import dataclasses
import inspect
import textwrap
from typing import Callable, Mapping

import hypothesmith
import libcst as cst
import pytest
from hypothesis import HealthCheck, given, reject, settings
from libcst.metadata import MetadataWrapper, ScopeProvider
from libcst.metadata.scope_provider import ScopeVisitor

from sessionfix import cstfields
from sessionfix.metadata import Wrapper
from sessionfix.visiting import can_walk, reading_visits, walk
from tests.engine.test_expression_context import SNIPPETS
from tests.engine.test_toplevel import _example_files, _repository_files

NODE_TYPES = [t for t in vars(cst).values()
              if inspect.isclass(t) and issubclass(t, cst.CSTNode) and not inspect.isabstract(t)]

SCOPE_SNIPPETS = {
    **SNIPPETS,
    "format_specs": 'f"{a:{width}} {b} {c!r:>{d}.{e}}"\nf"{x}" f"{y:z}"\n',
    "imports": "from a import *\nfrom . import (b, c as d)\nfrom .e import f\nimport g.h\n",
    "globals_and_nonlocals": """
        x = 1
        def outer():
            y = 2
            def inner():
                nonlocal y
                global x
                x = y = 3
            return inner
        class C:
            x = x
            def m(self):
                return x, __class__
        """,
    "annotations": """
        from __future__ import annotations
        from typing import TYPE_CHECKING, Literal
        if TYPE_CHECKING:
            from m import T
        def f(a: "T", b: "list[Undefined]", c: Literal["not_a_name"]) -> "T":
            v: "T" = a
            return v
        X = "T"
        """,
    "comprehension_scopes": """
        class K:
            ys = [1, 2]
            zs = [y for y in ys]
            d = {k: v for k, v in zip(ys, zs) if k}
        g = (a for a in range(3) for b in range(a))
        """,
    "deletes_and_rebinds": "a = 1\ndel a\na = 2\nprint(a)\nfor a in b: a += 1\n",
}


def _recorder(calls: list[tuple[str, int, str]], pruned: tuple[str, ...] = ()) -> cst.CSTVisitor:
    """A visitor with every hook `visit`/`walk` may call, each noting the call (and `visit_X`
    for `pruned` types saying "no children")."""
    methods: dict[str, Callable[..., object]] = {}

    def note(kind: str, prune: bool = False) -> Callable[..., object]:
        def hook(self: cst.CSTVisitor, node: cst.CSTNode) -> object:
            calls.append((kind, id(node), type(node).__name__))
            return False if prune else None
        return hook

    for node_type in NODE_TYPES:
        name = node_type.__name__
        methods[f"visit_{name}"] = note(f"visit_{name}", name in pruned)
        methods[f"leave_{name}"] = note(f"leave_{name}")
        for field in dataclasses.fields(node_type):
            methods[f"visit_{name}_{field.name}"] = note(f"visit_{name}_{field.name}")
            methods[f"leave_{name}_{field.name}"] = note(f"leave_{name}_{field.name}")
    return type("Recorder", (cst.CSTVisitor,), methods)()


def _same_calls(module: cst.Module, pruned: tuple[str, ...] = ()) -> None:
    expected: list[tuple[str, int, str]] = []
    got: list[tuple[str, int, str]] = []
    assert module.visit(_recorder(expected, pruned)) is module
    assert walk(module, _recorder(got, pruned)) is module
    assert got == expected


def _describe(scopes: Mapping[cst.CSTNode, object], module: cst.Module) -> list[object]:
    """Everything scope analysis recorded, nodes named by their place in a visit (nodes outside
    the tree, such as parsed string annotations, by their code and when they were met)."""
    order: dict[int, int] = {}

    class Number(cst.CSTVisitor):
        def on_visit(self, node: cst.CSTNode) -> bool:
            order[id(node)] = len(order)
            return True

    module.visit(Number())
    outside: dict[int, tuple[object, ...]] = {}
    scope_keys: dict[int, tuple[object, ...]] = {}

    def key(node: object) -> object:
        if node is None or id(node) in order:
            return None if node is None else order[id(node)]
        return outside.setdefault(id(node), (type(node).__name__, module.code_for_node(node), len(outside)))

    def scope_key(scope: object) -> object:
        if scope is None:
            return None
        return scope_keys.setdefault(id(scope), (type(scope).__name__, key(getattr(scope, "node", None)), len(scope_keys)))

    def assignment(a: object) -> tuple[object, ...]:
        return (type(a).__name__, a.name, scope_key(a.scope), key(getattr(a, "node", None)),
                getattr(a, "_Assignment__index", None), key(getattr(a, "as_name", None)))

    def access(a: object) -> tuple[object, ...]:
        return (key(a.node), scope_key(a.scope), a.is_annotation, a.is_type_hint, a._Access__index,
                sorted(map(assignment, a.referents), key=repr))

    found = [sorted(((key(node), scope_key(scope)) for node, scope in scopes.items()), key=repr)]
    every: dict[int, object] = {}
    for scope in scopes.values():
        while scope is not None and id(scope) not in every:
            every[id(scope)] = scope
            scope = scope.parent if scope.parent is not scope else None
    for scope in sorted(every.values(), key=lambda s: repr(scope_key(s))):
        found.append((
            scope_key(scope), scope_key(scope.parent), scope_key(scope.globals), getattr(scope, "name", None),
            scope._name_prefix, scope._assignment_count,
            {name: scope_key(s) for name, s in getattr(scope, "_scope_overwrites", {}).items()},
            {name: sorted(((assignment(a), sorted(map(access, a.references), key=repr)) for a in held), key=repr)
             for name, held in sorted(scope._assignments.items()) if held},
            {name: sorted(map(access, held), key=repr) for name, held in sorted(scope._accesses_by_name.items()) if held},
            sorted(((key(node), sorted(map(access, held), key=repr))
                    for node, held in scope._accesses_by_node.items() if held), key=repr),
        ))
    return found


def _same_scopes(module: cst.Module) -> None:
    expected = MetadataWrapper(module, unsafe_skip_copy=True).resolve(ScopeProvider)
    got = Wrapper(module, unsafe_skip_copy=True).resolve(ScopeProvider)
    assert _describe(got, module) == _describe(expected, module)


@pytest.mark.parametrize("raw", [*_repository_files(), *_example_files()])
def test_real_code_gets_libcsts_calls_and_scopes(raw: bytes) -> None:
    module = cst.parse_module(raw)
    _same_calls(module)
    _same_scopes(module)


@pytest.mark.parametrize("name", sorted(SCOPE_SNIPPETS))
def test_each_special_case_gets_libcsts_calls_and_scopes(name: str) -> None:
    module = cst.parse_module(textwrap.dedent(SCOPE_SNIPPETS[name]))
    _same_calls(module)
    _same_calls(module, pruned=("FunctionDef", "Attribute", "FormattedStringExpression"))
    _same_scopes(module)


def test_a_node_type_visited_differently_node_by_node_is_read_node_by_node() -> None:
    """A format spec's fields are visited only when it has one: whichever comes first, the
    other is still visited as libcst visits it."""
    for code in ('f"{a:{b}}"\nf"{c}"\n', 'f"{c}"\nf"{a:{b}}"\n'):
        cstfields.VISITED.pop(cst.FormattedStringExpression, None)
        _same_calls(cst.parse_module(code))
    assert cst.FormattedStringExpression not in cstfields.VISITED


def test_straight_line_tells_the_node_types_that_vary() -> None:
    varying = {t.__name__ for t in NODE_TYPES if not cstfields.straight_line(t)}
    assert {"FormattedStringExpression", "ImportFrom"} <= varying
    assert not varying & {"Name", "FunctionDef", "Module", "Call", "ClassDef"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(source=hypothesmith.from_grammar())
def test_random_programs_get_libcsts_calls_and_scopes(source: str) -> None:
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError:
        reject()  # hypothesmith writes some programs only CPython's parser takes
    _same_calls(module)
    _same_scopes(module)


class _OwnAttributeHook(cst.CSTVisitor):
    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        pass


def test_reading_visits_routes_only_the_chosen_visitors_and_puts_visit_back() -> None:
    original = cst.CSTNode.visit
    module = cst.parse_module("def f(x):\n    return x\n")
    with reading_visits(ScopeVisitor):
        assert cst.CSTNode.visit is not original
        with reading_visits(ScopeVisitor):
            pass
        assert cst.CSTNode.visit is not original  # only the outermost use puts it back
        rebuilt: list[cst.Name] = []
        real = cst.Name._visit_and_replace_children
        cst.Name._visit_and_replace_children = lambda self, v: rebuilt.append(self) or real(self, v)  # type: ignore[method-assign]
        try:
            module.visit(_recorder([]))  # not chosen: libcst's own traversal
        finally:
            cst.Name._visit_and_replace_children = real  # type: ignore[method-assign]
        assert rebuilt
    assert cst.CSTNode.visit is original
    with pytest.raises(RuntimeError), reading_visits(ScopeVisitor):
        raise RuntimeError
    assert cst.CSTNode.visit is original
    assert not can_walk(_OwnAttributeHook)
    with pytest.raises(TypeError):
        with reading_visits(_OwnAttributeHook):
            pass


def test_scopes_come_without_libcsts_batch_walk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The batch would walk the whole tree again for nothing: scopes do all their work when the
    batch meets the module."""
    import libcst.metadata.wrapper as libcst_wrapper

    def no_batch(*args: object) -> None:
        raise AssertionError("batched walk")

    monkeypatch.setattr(libcst_wrapper, "_gen_batchable", no_batch)
    module = cst.parse_module("import a\ndef f(b):\n    return a.c(b)\n")
    scopes = Wrapper(module, unsafe_skip_copy=True).resolve(ScopeProvider)
    assert {type(scope).__name__ for scope in scopes.values()} == {"GlobalScope", "FunctionScope"}
    assert not walked_by_libcst(module)


def walked_by_libcst(module: cst.Module) -> bool:
    """Does computing scopes go through libcst's rebuilding traversal? (Spotted by a node type
    whose traversal is counted.)"""
    counted = []
    original = cst.Name._visit_and_replace_children

    def counting(self: cst.Name, visitor: object) -> cst.Name:
        counted.append(self)
        return original(self, visitor)

    cst.Name._visit_and_replace_children = counting  # type: ignore[method-assign]
    try:
        Wrapper(module, unsafe_skip_copy=True).resolve(ScopeProvider)
    finally:
        cst.Name._visit_and_replace_children = original  # type: ignore[method-assign]
    return bool(counted)


def test_the_scope_modules_assignment_check_is_the_builtins_and_is_put_back() -> None:
    from libcst.metadata import scope_provider

    from sessionfix.metadata import _ASSIGNMENT_LIKE, _assignments_told_by_type, _isinstance

    module = cst.parse_module(textwrap.dedent(SCOPE_SNIPPETS["definitions"]) + SCOPE_SNIPPETS["imports"])
    nodes: list[cst.CSTNode] = []

    class Every(cst.CSTVisitor):
        def on_visit(self, node: cst.CSTNode) -> bool:
            nodes.append(node)
            return True

    module.visit(Every())
    assert any(isinstance(node, _ASSIGNMENT_LIKE) for node in nodes)
    for _ in range(2):  # answered, then remembered
        assert [_isinstance(n, _ASSIGNMENT_LIKE) for n in nodes] == [isinstance(n, _ASSIGNMENT_LIKE) for n in nodes]
    assert _isinstance(cst.Name("x"), (cst.Name, cst.Attribute)) and not _isinstance(1, (cst.Name,))
    assert "isinstance" not in vars(scope_provider)
    with pytest.raises(RuntimeError), _assignments_told_by_type():
        assert scope_provider.isinstance is _isinstance
        with _assignments_told_by_type():
            pass
        assert scope_provider.isinstance is _isinstance  # only the outermost use takes it away
        raise RuntimeError
    assert "isinstance" not in vars(scope_provider)
