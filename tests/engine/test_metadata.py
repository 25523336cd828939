"""The runner's cheaper metadata gives exactly libcst's answers.

Rules ask for parents, qualified names and new imports through `sessionfix.rule`, which computes
parents from node fields, qualified names per node on demand, and adds imports without walking
the module. Each is compared with the libcst original on real code: this repository's sources
and the example projects.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import libcst as cst
import libcst.matchers as m
import pytest
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import BatchableMetadataProvider, MetadataWrapper, ParentNodeProvider, PositionProvider, QualifiedNameProvider, ScopeProvider

from sessionfix.metadata import Wrapper
from sessionfix.rule import _UNDECORATED, FastParentNodeProvider, Rule, TopImportsVisitor, TreeWrapper, node_index
from sessionfix.runner import _wrap

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted([*REPO.glob("src/sessionfix/*.py"), *REPO.glob("codemods/*.py"), *REPO.glob("examples/**/*.py")])


class _Probe(Rule):
    CODE = "SF999"
    NAME = "probe"
    SUMMARY = "asks for metadata"
    APPLICABILITIES = ()


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_parents_and_qualified_names_match_libcst(path: Path) -> None:
    wrapper = MetadataWrapper(cst.parse_module(path.read_bytes()), unsafe_skip_copy=True)
    parents = wrapper.resolve(ParentNodeProvider)
    assert dict(wrapper.resolve(FastParentNodeProvider)) == dict(parents)
    qualified = wrapper.resolve(QualifiedNameProvider)
    probe = _Probe(CodemodContext())
    with probe.resolve(wrapper):
        for node in [wrapper.module, *parents]:
            expected = qualified[node]
            expected = expected if isinstance(expected, (set, frozenset)) else expected()  # a LazyValue
            assert set(probe.get_metadata(QualifiedNameProvider, node)) == set(expected)
        assert probe.get_metadata(QualifiedNameProvider, cst.Name("elsewhere"), "default") == "default"
        with pytest.raises(KeyError):
            probe.get_metadata(QualifiedNameProvider, cst.Name("elsewhere"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_node_index_lists_what_findall_finds_in_its_order(path: Path) -> None:
    module = cst.parse_module(path.read_bytes())
    every: list[cst.CSTNode] = []

    class Every(cst.CSTVisitor):
        def on_visit(self, node: cst.CSTNode) -> bool:
            every.append(node)
            return True

    module.visit(Every())  # every node, in the order a visit meets them
    index = node_index(module)
    assert sum(len(nodes) for nodes in index.values()) == len(every)
    for kind, nodes in index.items():
        assert nodes == [node for node in every if type(node) is kind], kind.__name__
    wrapper = TreeWrapper(module, unsafe_skip_copy=True)
    probe = _Probe(CodemodContext())
    with probe.resolve(wrapper):
        assert probe.nodes_of(cst.Call) == m.findall(module, m.Call())
        assert wrapper.node_index is probe.nodes_of.__self__._own_index[1]  # kept for the next rule


@pytest.mark.parametrize("path", SOURCES[:12], ids=lambda p: p.relative_to(REPO).as_posix())
def test_parents_of_a_rewrite_are_worked_out_from_the_old_trees(path: Path) -> None:
    """A rewrite that changes a few names (and so shares most subtrees with the old tree)."""
    old = cst.parse_module(path.read_bytes())
    before = TreeWrapper(old, unsafe_skip_copy=True)
    before.resolve(FastParentNodeProvider)

    class Rename(cst.CSTTransformer):
        def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
            return updated.with_changes(value="renamed") if original.value == "self" else updated

    new = old.visit(Rename())
    after = TreeWrapper(new, unsafe_skip_copy=True)
    after.derived_from = before
    expected = MetadataWrapper(new, unsafe_skip_copy=True).resolve(ParentNodeProvider)
    got = after.resolve(FastParentNodeProvider)
    assert {node: got[node] for node in expected} == dict(expected)


@pytest.mark.parametrize("source", [
    "x = 1\n",
    '"""Doc."""\nfrom core.db import other\n\nx = 1\n',
    "from __future__ import annotations\nimport os\nfrom core.db import other as o\n\n\ndef f():\n"
    "    from core.db import local\n    return local\n",
    "import os\nx = 1\nfrom core.db import late\n",
    "if True:\n    from core.db import nested\n",
    "from core.db import *\n",
    "from .db import relative\n",
    "",
])
def test_top_imports_visitor_matches_add_imports_visitor(source: str) -> None:
    def run(visitor: type[AddImportsVisitor]) -> str:
        context = CodemodContext(full_module_name="core.app", full_package_name="core")
        AddImportsVisitor.add_needed_import(context, "core.db", "get_session")
        AddImportsVisitor.add_needed_import(context, "contextlib")
        module = cst.parse_module(textwrap.dedent(source))
        return visitor(context).transform_module(module).code

    assert run(TopImportsVisitor) == run(AddImportsVisitor)


@pytest.mark.parametrize("path", SOURCES[:12], ids=lambda p: p.relative_to(REPO).as_posix())
def test_wrapper_gives_libcsts_answers_and_walks_only_for_a_batch(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = cst.parse_module(path.read_bytes())
    expected = MetadataWrapper(module, unsafe_skip_copy=True)
    wrapper = Wrapper(module, unsafe_skip_copy=True)
    batches: list[int] = []
    real = Wrapper.visit_batched
    monkeypatch.setattr(Wrapper, "visit_batched", lambda self, visitors: batches.append(len(list(visitors))) or real(self, visitors))
    assert dict(wrapper.resolve(PositionProvider)) == dict(expected.resolve(PositionProvider))
    assert dict(wrapper.resolve(FastParentNodeProvider)) == dict(expected.resolve(ParentNodeProvider))
    assert batches == []  # neither is batchable: no walk with nothing to compute in it
    scopes = wrapper.resolve(ScopeProvider)  # batchable, but all its work is at the module
    assert batches == []
    assert {type(s).__name__ for s in scopes.values()} == {type(s).__name__ for s in expected.resolve(ScopeProvider).values()}
    assert dict(wrapper.resolve(_NameCount)) == dict(expected.resolve(_NameCount))
    assert batches == [1]  # a provider that works node by node still gets libcst's batch


class _NameCount(BatchableMetadataProvider[int]):
    """Works node by node, so only libcst's batched walk computes it."""

    def visit_Name(self, node: cst.Name) -> None:
        self.set_metadata(node, len(node.value))


def test_a_rule_searches_for_matcher_decorated_methods_once_per_class() -> None:
    code = "def f():\n    g(1)\n    h(2)\n"
    seen: list[str] = []

    class Decorated(_Probe):
        @m.visit(m.Call(func=m.Name("g")))
        def _g(self, node: cst.Call) -> None:
            seen.append("g")

    for _ in range(2):  # the second instance of each class takes what the first one found
        _Probe(CodemodContext()).transform_module(cst.parse_module(code))
        Decorated(CodemodContext()).transform_module(cst.parse_module(code))
    assert seen == ["g", "g"]
    plain = _Probe(CodemodContext())
    assert (plain._extra_visit_funcs, plain._extra_leave_funcs, plain._matchers) == ({}, {}, {})
    assert _Probe in _UNDECORATED and Decorated not in _UNDECORATED


@pytest.mark.parametrize("path", SOURCES[:6], ids=lambda p: p.relative_to(REPO).as_posix())
def test_a_modules_code_comes_with_its_positions(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Positions are computed by writing the code out; the runner reuses that code (to compare
    with the file, and to map lines) instead of writing the module out again."""
    module = cst.parse_module(path.read_bytes())
    expected_code = module.code
    expected_positions = dict(MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider))
    written: list[cst.Module] = []
    real = cst.Module._codegen_impl
    monkeypatch.setattr(cst.Module, "_codegen_impl", lambda self, state: written.append(self) or real(self, state))
    wrapper = Wrapper(module, unsafe_skip_copy=True)
    assert dict(wrapper.resolve(PositionProvider)) == expected_positions
    assert wrapper.code == expected_code
    assert wrapper.code == expected_code
    assert len(written) == 1
    other = Wrapper(module, unsafe_skip_copy=True)
    assert other.code == expected_code and len(written) == 2  # no positions: written out once
    assert dict(other.resolve(PositionProvider)) == expected_positions and other.code == expected_code


def test_the_index_of_a_tree_with_a_node_in_two_places_is_refused() -> None:
    module = cst.parse_module("a = 1\nb = 2\n")
    index = node_index(module, unless_shared=True)
    assert index is not None and index == node_index(module)
    twice = module.with_changes(body=[module.body[0], module.body[0]])
    assert node_index(twice, unless_shared=True) is None
    assert node_index(twice)[cst.SimpleStatementLine] == [module.body[0], module.body[0]]
    wrapper = _wrap(twice)
    assert wrapper.module is not twice and wrapper.module.body[0] is not wrapper.module.body[1]  # a copy
    alone = _wrap(module)
    assert alone.module is module and alone.node_index == node_index(module)
