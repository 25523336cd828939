"""The base every rule in `codemods/` builds on: options, project lookup, records, examples.

A rule is a libcst `VisitorBasedCodemodCommand`, so `python -m libcst.tool codemod` can run it
alone; sessionfix's runner runs all of them in order and collects their records.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import inspect
import textwrap
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterable, Iterator, Mapping, Sequence, TypeVar

import libcst as cst
from libcst._metadata_dependent import _UNDEFINED_DEFAULT
from libcst.codemod import Codemod, CodemodContext, VisitorBasedCodemodCommand
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata.base_provider import BaseMetadataProvider
from libcst.metadata import (
    CodeRange,
    ParentNodeProvider,
    PositionProvider,
    QualifiedName,
    QualifiedNameProvider,
    ScopeProvider,
)

from sessionfix.config import Settings, declared_dependencies, load_config
from sessionfix.cstfields import FIELDS, KINDS, NODE, OTHER, VISITED, children, fields, kind, visited_fields
from sessionfix.index import ProjectIndex, dotted_name, resolve_relative
from sessionfix.matcher_search import searching_once
from sessionfix.metadata import Wrapper
from sessionfix.model import Applicability, Change, Fact, Finding, HelperSemantics, Location
from sessionfix.needs import PrefilterNeeds

_T = TypeVar("_T")
_N = TypeVar("_N", bound=cst.CSTNode)


@dataclass(frozen=True)
class Expect:
    """A record an example must produce: rule, applicability ("report" for findings), reason fragment."""

    rule: str
    applicability: str
    reason: str


@dataclass(frozen=True)
class Valid:
    """Code the rule must leave byte-identical, with no Change."""

    id: str
    code: str
    files: Mapping[str, str] | None = None  # extra project files; None: the default project
    options: Mapping[str, object] = field(default_factory=dict)
    expect: tuple[Expect, ...] = ()  # findings it must still report


@dataclass(frozen=True)
class Invalid:
    """Code the rule rewrites (`after`) or reports (`after=None`: must stay byte-identical)."""

    id: str
    before: str
    after: str | None
    expect: tuple[Expect, ...]
    files: Mapping[str, str] | None = None
    options: Mapping[str, object] = field(default_factory=dict)


#: the project every example runs in unless it brings its own `files`
DEFAULT_PROJECT: Mapping[str, str] = {
    "pyproject.toml": textwrap.dedent(
        """\
        [tool.sessionfix]
        sync-context = "core.db.get_db_session_ctx"
        sync-factory = "core.db.get_session"
        async-context = "core.db.get_async_session"
        raw-factories = ["init.Session", "core.db.async_session"]
        """
    ),
    "core/__init__.py": "",
    "core/db.py": textwrap.dedent(
        """\
        from contextlib import asynccontextmanager, contextmanager

        from sqlalchemy import create_engine
        from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
        from sqlalchemy.orm import sessionmaker

        _factory = sessionmaker(bind=create_engine("sqlite://"))
        async_session = async_sessionmaker(create_async_engine("sqlite+aiosqlite://"))


        def get_session():
            return _factory()


        @contextmanager
        def get_db_session_ctx():
            session = get_session()
            try:
                yield session
                session.commit()
            except Exception:
                session.rollback()
                raise
            finally:
                session.close()


        @asynccontextmanager
        async def get_async_session():
            async with async_session() as session:
                try:
                    yield session
                    await session.commit()
                except Exception:
                    await session.rollback()
                    raise
        """
    ),
}


# -- shared analysis used by several rules -------------------------------------------------

_LOGGER_FACTORIES = frozenset(
    {"logging.getLogger", "structlog.get_logger", "structlog.getLogger", "loguru.logger"}
)
#: builtins that cannot reach a database when their arguments cannot
_PURE_BUILTINS = frozenset(
    f"builtins.{name}"
    for name in ("enumerate", "range", "zip", "len", "sorted", "reversed", "list", "tuple", "dict", "set",
                 "str", "repr", "int", "float", "bool", "min", "max", "sum", "abs", "round", "isinstance", "type")
)
_LOGGING_MODULE_CALLS = frozenset(
    f"logging.{level}" for level in ("debug", "info", "warning", "warn", "error", "exception", "critical", "log")
)


@dataclass(frozen=True)
class ImportPlan:
    """Where the replacement name comes from at one call site."""

    local_name: str
    module: str
    name: str
    #: insert `from module import name` after this statement (a function-local import of the raw
    #: factory); None means at module level through AddImportsVisitor; `needed=False`: reuse
    anchor: cst.SimpleStatementLine | None = None
    needed: bool = True


class BindingMixin:
    """Answers "what is this name bound to here?" for rules (needs Scope/QualifiedName/Parent)."""

    def import_target(self: Rule, assignment: object) -> str | None:  # type: ignore[misc]
        """Dotted name an import assignment binds, e.g. 'core.db.get_session'."""
        node = getattr(assignment, "node", None)
        name = getattr(assignment, "name", None)
        if isinstance(node, cst.ImportFrom) and not isinstance(node.names, cst.ImportStar):
            module = resolve_relative(
                len(node.relative), dotted_name(node.module) if node.module else None, self.package
            )
            for alias in node.names:
                local = alias.evaluated_alias or alias.evaluated_name
                if local == name and module:
                    return f"{module}.{alias.evaluated_name}"
        if isinstance(node, cst.Import):
            for alias in node.names:
                if (alias.evaluated_alias or alias.evaluated_name.split(".")[0]) == name:
                    return alias.evaluated_name if alias.evaluated_alias else name
        return None

    def is_pure_call(self: Rule, call: cst.Call) -> bool:  # type: ignore[misc]
        names = {q.name for q in self.get_metadata(QualifiedNameProvider, call.func, set())}
        return bool(names) and names <= _PURE_BUILTINS

    def is_log_call(self: Rule, call: cst.Call) -> bool:  # type: ignore[misc]
        """print(), logging.x(), or a method of a module-level logger: none can touch a session."""
        names = {q.name for q in self.get_metadata(QualifiedNameProvider, call.func, set())}
        if names and (names <= {"builtins.print"} or names <= _LOGGING_MODULE_CALLS):
            return True
        if not (isinstance(call.func, cst.Attribute) and isinstance(call.func.value, cst.Name)):
            return False
        receiver = call.func.value
        scope = self.get_metadata(ScopeProvider, call, None)
        if scope is None:
            return False
        assignments = list(scope[receiver.value])
        if not assignments:
            return False
        for assignment in assignments:
            target = self.import_target(assignment)
            if target is not None:
                if target not in _LOGGER_FACTORIES:
                    return False
                continue
            node = getattr(assignment, "node", None)
            parent = self.get_metadata(ParentNodeProvider, node, None) if node is not None else None
            grand = self.get_metadata(ParentNodeProvider, parent, None) if parent is not None else None
            if not (isinstance(parent, cst.AssignTarget) and isinstance(grand, cst.Assign)):
                return False
            value = grand.value
            if not isinstance(value, cst.Call):
                return False
            made_by = {self.absolute(q.name) for q in self.get_metadata(QualifiedNameProvider, value.func, set())}
            if not made_by or not made_by <= _LOGGER_FACTORIES:
                return False
        return True

    def plan_import(self: Rule, site: cst.CSTNode, raw_func: cst.BaseExpression, helper: str) -> ImportPlan | str:  # type: ignore[misc]
        """How `helper` becomes visible at `site`, or why it cannot (a one-line reason)."""
        module, _, name = helper.rpartition(".")
        scope = self.get_metadata(ScopeProvider, site, None)
        if scope is None:
            return "cannot determine the scope of this call"
        wanted = self.project.canonical(helper)
        visible = list(scope[name])
        if visible:
            targets = {self.import_target(a) for a in visible}
            if None not in targets and {self.project.canonical(t) for t in targets if t} == {wanted}:
                return ImportPlan(name, module, name, needed=False)
            return f"the name '{name}' is already bound to something else here; import {helper} by hand"
        anchor: cst.SimpleStatementLine | None = None
        base = raw_func
        while isinstance(base, cst.Attribute):
            base = base.value
        if isinstance(base, cst.Name):
            for assignment in scope[base.value]:
                node = getattr(assignment, "node", None)
                if isinstance(node, (cst.Import, cst.ImportFrom)) and not isinstance(
                    getattr(assignment, "scope", None), cst.metadata.GlobalScope
                ):
                    parent = self.get_metadata(ParentNodeProvider, node, None)
                    if isinstance(parent, cst.SimpleStatementLine):
                        anchor = parent
        return ImportPlan(name, module, name, anchor=anchor)


def import_line(module: str, name: str) -> cst.SimpleStatementLine:
    return cst.SimpleStatementLine(
        body=[cst.ImportFrom(module=cst.parse_expression(module), names=[cst.ImportAlias(cst.Name(name))])]  # type: ignore[arg-type]
    )


def helper_semantics(project: ProjectIndex, helper: str) -> HelperSemantics:
    """Read from the helper's code when sessionfix.semantics can; else the documented assumption."""
    try:
        from sessionfix.semantics import analyse_helper
    except ImportError:  # pragma: no cover - until the analysis lands
        assumed = Fact(True, "assumed: the configured helper commits, rolls back and closes")
        return HelperSemantics(helper, "assumed", assumed, assumed, assumed)
    return analyse_helper(project, helper)


def _same_line(line: int) -> int:
    return line


@functools.lru_cache(maxsize=32)
def _project_for_root(root: Path, pyproject: Path | None) -> ProjectIndex:
    return ProjectIndex(root, declared=declared_dependencies(pyproject))


def _each_child(module: cst.Module, found: Callable[[cst.CSTNode, cst.CSTNode], bool | None],
                enter: Callable[[cst.CSTNode], bool] | None = None) -> bool:
    """Call `found(child, parent)` for every node under `module` (below the children `enter`
    turns down, none), read from the nodes' fields: asking a node for its `children` is a visit
    of its own. Stop early when `found` returns True."""
    stack: list[cst.CSTNode] = [module]
    push, pop = stack.append, stack.pop
    names_of, kinds = FIELDS, KINDS
    while stack:
        node = pop()
        for name in names_of.get(type(node)) or fields(type(node)):
            value = getattr(node, name)
            held = kinds.get(type(value)) or kind(type(value))
            if held == OTHER:
                continue
            for child in (value,) if held == NODE else value:
                if (kinds.get(type(child)) or kind(type(child))) == NODE:
                    if found(child, node):
                        return True
                    if enter is None or enter(child):
                        push(child)
    return False


class FastParentNodeProvider(BaseMetadataProvider[cst.CSTNode]):
    """ParentNodeProvider's answers in a fifth of its time (see `_each_child`)."""

    def _gen_impl(self, module: cst.Module) -> None:
        _each_child(module, self.set_metadata)


def node_index(module: cst.Module, *, unless_shared: bool = False) -> dict[type, list[cst.CSTNode]] | None:
    """Every node of `module` by type, each list in the order a visit meets them (so as
    `m.findall` lists them): one walk answers every rule's "all the `with` statements".

    With `unless_shared`, None when one node object stands in two places of `module`: a metadata
    wrapper over such a tree must copy it, or two places would share one answer. (The runner asks
    that of every rewrite; the same walk then gives the index the next rule reads.)
    """
    index: dict[type, list[cst.CSTNode]] = {}
    seen: set[int] | None = set() if unless_shared else None
    stack: list[cst.CSTNode] = [module]
    visited = VISITED
    while stack:
        node = stack.pop()
        if seen is not None:
            if id(node) in seen:
                return None
            seen.add(id(node))
        node_type = type(node)
        found = index.get(node_type)
        if found is None:
            found = index[node_type] = []
        found.append(node)
        stack.extend(reversed(children(node, visited.get(node_type) or visited_fields(node))))
    return index


def _parents_after(module: cst.Module, before: Mapping[cst.CSTNode, cst.CSTNode]) -> dict[cst.CSTNode, cst.CSTNode]:
    """Parents in `module`, a rewrite of the tree whose parents are `before`. A node object of
    the old tree is the same subtree in the new one (nodes never change), so only the new nodes
    are walked; each old node found under one just gets its (maybe new) parent."""
    parents = dict(before)
    _each_child(module, parents.__setitem__, lambda child: child not in before)
    return parents


class TreeWrapper(Wrapper):
    """The runner's wrapper: it also keeps the tree's `node_index` for every rule to share, and
    works out parents from those of the tree it was rewritten from (`derived_from`)."""

    __slots__ = ("node_index", "derived_from", "parents")

    def resolve(self, key: type[BaseMetadataProvider[_T]]) -> Mapping[cst.CSTNode, _T]:
        if key is not FastParentNodeProvider:
            return super().resolve(key)
        parents = getattr(self, "parents", None)
        if parents is None:
            earlier = getattr(self, "derived_from", None)
            known = getattr(earlier, "parents", None) if earlier is not None else None
            parents = _parents_after(self.module, known) if known is not None else super().resolve(key)
            self.parents = parents
            self.derived_from = None  # the older tree can go
        return parents  # type: ignore[return-value]


def _import_prefix(body: Sequence[cst.BaseStatement]) -> list[cst.BaseStatement]:
    """The module's statements up to the first one that is not an import (docstring aside):
    all of the module AddImportsVisitor reads."""
    for index, statement in enumerate(body):
        if index == 0:
            continue
        if not (isinstance(statement, cst.SimpleStatementLine) and statement.body
                and isinstance(statement.body[0], (cst.Import, cst.ImportFrom))):
            return list(body[:index + 1])
    return list(body)


class TopImportsVisitor(AddImportsVisitor):
    """AddImportsVisitor without walking the whole module.

    It reads and extends only the imports at the top of the module, and inserts new ones there,
    so it needs to see the module, its top-level simple statements and their imports; walking
    every expression of every function (twice, with its gatherer) is most of a rule's time.
    """

    def visit_Module(self, node: cst.Module) -> None:
        super().visit_Module(node.with_changes(body=_import_prefix(node.body)))

    def on_visit(self, node: cst.CSTNode) -> bool:
        super().on_visit(node)
        return isinstance(node, (cst.Module, cst.SimpleStatementLine))


#: rule classes with no `@m.visit`/`@m.leave`/`@m.call_if_inside` methods. libcst looks for
#: those on every new instance (a walk over dir() that cost a rule 6 ms per file); a class
#: found to have none the first time skips the search after that, so such methods belong in
#: the class body (a decorated method attached to the class later would go unseen).
_UNDECORATED: weakref.WeakSet[type] = weakref.WeakSet()


class Rule(BindingMixin, VisitorBasedCodemodCommand):
    """Shared options and record keeping; subclasses hold one rule each."""

    CODE: ClassVar[str]
    NAME: ClassVar[str]
    SUMMARY: ClassVar[str]
    APPLICABILITIES: ClassVar[tuple[Applicability, ...]]
    #: position in the pipeline: call-site rewrites < 50 < import clean-up < reports
    ORDER: ClassVar[int] = 50
    #: the rule decides every site in visit_Module and records a Change for each rewrite, so
    #: when it planned none, walking the rest of the tree would change nothing: skip it
    PLANS_IN_VISIT_MODULE: ClassVar[bool] = False
    VALID: ClassVar[Sequence[Valid]] = ()
    INVALID: ClassVar[Sequence[Invalid]] = ()

    METADATA_DEPENDENCIES = (PositionProvider, ScopeProvider, QualifiedNameProvider, ParentNodeProvider)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "SUMMARY" in cls.__dict__:
            cls.DESCRIPTION = cls.SUMMARY

    def __init__(
        self,
        context: CodemodContext,
        sync_context: str | None = None,
        sync_factory: str | None = None,
        async_context: str | None = None,
        raw_factories: Sequence[str] | None = None,
        unsafe: bool = False,
        *,
        settings: Settings | None = None,
        project: ProjectIndex | None = None,
    ) -> None:
        self._given = dict(
            sync_context=sync_context,
            sync_factory=sync_factory,
            async_context=async_context,
            raw_factories=tuple(raw_factories or ()),
            unsafe=unsafe or None,
        )
        self._settings = settings
        self._project = project
        self.records: list[Change | Finding] = []
        self._raw: frozenset[str] | None = None
        #: input line -> line on disk; identity unless the runner says otherwise
        self.line_map: Callable[[int], int] = _same_line
        #: the tree's wrapper while the rule runs (metadata is resolved from it on first use)
        self._wrapper: cst.MetadataWrapper | None = None
        #: with `edit_targets`: the only nodes the transform walks (see on_visit)
        self._keep: set[cst.CSTNode] | None = None
        #: the wrapper of the tree parsed from the file, when earlier rules may have rewritten it
        self.origin: cst.MetadataWrapper | None = None
        #: `node_index` of a tree whose wrapper cannot keep it (under libcst.tool)
        self._own_index: tuple[cst.MetadataWrapper, dict[type, list[cst.CSTNode]]] | None = None
        if type(self) in _UNDECORATED:
            Codemod.__init__(self, context)  # what ContextAwareTransformer does, minus the search
            self._extra_visit_funcs, self._extra_leave_funcs, self._matchers = {}, {}, {}
            return
        super().__init__(context)
        if not (self._extra_visit_funcs or self._extra_leave_funcs or self._matchers):
            _UNDECORATED.add(type(self))

    def _instantiate_and_run(self, transform: type[Codemod], tree: cst.Module) -> cst.Module:
        with searching_once():  # libcst's helpers have no decorated methods to look for
            if transform is AddImportsVisitor:  # it needs no metadata: no wrapper, no copy of the tree
                return TopImportsVisitor(self.context).transform_module_impl(tree)
            return super()._instantiate_and_run(transform, tree)

    # -- metadata, computed when first asked for ----------------------------------------

    @contextlib.contextmanager
    def resolve(self, wrapper: cst.MetadataWrapper) -> Iterator[None]:
        """Unlike libcst's, resolves nothing yet: most rules decide from the tree's shape that
        a file holds nothing for them, and scopes, qualified names and positions cost far more
        than parsing. `get_metadata` computes a provider on first use; the wrapper keeps it for
        the next rule that reads the same tree."""
        self._wrapper = wrapper
        self.metadata = {}
        try:
            yield
        finally:
            self.metadata = {}
            self._wrapper = None

    def get_metadata(self, key: type[BaseMetadataProvider[_T]], node: cst.CSTNode,
                     default: _T = _UNDEFINED_DEFAULT) -> _T:  # type: ignore[assignment]
        wrapper = self._wrapper
        if key is QualifiedNameProvider and wrapper is not None:
            return self._qualified_names(node, default)  # type: ignore[return-value]
        if key not in self.metadata and wrapper is not None and key in self.get_inherited_dependencies():
            if key is ParentNodeProvider:
                self.metadata[key] = wrapper.resolve(FastParentNodeProvider)
            else:
                self.metadata.update(wrapper.resolve_many([key]))
        return super().get_metadata(key, node, default)

    def _qualified_names(self, node: cst.CSTNode, default: object) -> object:
        """QualifiedNameProvider's answer for one node. The provider walks the whole module to
        wrap every node's answer in a LazyValue; rules ask about a few call sites."""
        scope = self.get_metadata(ScopeProvider, node, None)
        if scope is not None:
            return scope.get_qualified_names_for(node)
        if node is self._wrapper.module or self.get_metadata(ParentNodeProvider, node, None) is not None:  # type: ignore[union-attr]
            return set()  # in the tree, outside any scope
        if default is _UNDEFINED_DEFAULT:
            raise KeyError(node)
        return default

    def nodes_of(self, kind: type[_N]) -> list[_N]:
        """Every `kind` node of the module being transformed, in the order `m.findall` gives
        them, from one walk that the rules reading the same tree share."""
        wrapper = self._wrapper
        assert wrapper is not None, "only while the rule runs"
        index = getattr(wrapper, "node_index", None) if isinstance(wrapper, TreeWrapper) else None
        if index is None:
            if self._own_index is None or self._own_index[0] is not wrapper:
                self._own_index = (wrapper, node_index(wrapper.module) or {})
            index = self._own_index[1]
            if isinstance(wrapper, TreeWrapper):
                wrapper.node_index = index
        return list(index.get(kind, ()))  # type: ignore[arg-type]

    def edit_targets(self) -> Iterable[cst.CSTNode] | None:
        """The nodes (of the tree planned on) whose leave_ hooks change something, once
        visit_Module has planned; the transform then walks only them and their ancestors, and
        leaves the rest of the tree as it is. None: walk the whole tree."""
        return None

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self._keep is not None and node not in self._keep:
            return False  # nothing planned in here: no hooks, no children, the node stays as it is
        descend = super().on_visit(node)
        if self.PLANS_IN_VISIT_MODULE and isinstance(node, cst.Module):
            if not any(isinstance(record, Change) for record in self.records):
                return False
            targets = self.edit_targets()
            if targets is not None:
                self._keep = self._with_ancestors(node, targets)
        return descend

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> object:
        if self._keep is not None and original_node not in self._keep:
            return updated_node
        return super().on_leave(original_node, updated_node)

    def _with_ancestors(self, module: cst.Module, targets: Iterable[cst.CSTNode]) -> set[cst.CSTNode]:
        keep: set[cst.CSTNode] = {module}
        for target in targets:
            node: cst.CSTNode | None = target
            while node is not None and node not in keep:
                keep.add(node)
                node = self.get_metadata(ParentNodeProvider, node, None)
        return keep

    # -- options, for `python -m libcst.tool codemod` -------------------------------------

    @staticmethod
    def add_args(arg_parser: argparse.ArgumentParser) -> None:
        arg_parser.add_argument("--sync-context", dest="sync_context", default=None,
                                help="dotted name of the sync context-manager helper (default: from pyproject)")
        arg_parser.add_argument("--sync-factory", dest="sync_factory", default=None,
                                help="dotted name of the plain session factory (default: from pyproject)")
        arg_parser.add_argument("--async-context", dest="async_context", default=None,
                                help="dotted name of the async context-manager helper (default: from pyproject)")
        arg_parser.add_argument("--raw-factories", dest="raw_factories", nargs="*", default=None,
                                help="dotted names of raw factories to replace (default: from pyproject)")
        arg_parser.add_argument("--unsafe", dest="unsafe", action="store_true",
                                help="also apply fixes that change behaviour (default: off)")

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            base = load_config(Path(self.context.filename or ".")).settings
            self._settings = base.with_overrides(**self._given)
        return self._settings

    @property
    def project(self) -> ProjectIndex:
        if self._project is None:
            config = load_config(Path(self.context.filename or "."))
            self._project = _project_for_root(config.root, config.pyproject)
        return self._project

    # -- locations and records ------------------------------------------------------------

    @property
    def display_path(self) -> str:
        filename = self.context.filename
        return self.project.display(Path(filename)) if filename else "<string>"

    def original_line(self, line: int) -> int:
        """A line of this rule's input, as a line of the file on disk.

        Earlier rules may have rewritten the module; the runner sets `line_map` so that every
        location (and every "line N" in a message) refers to the file the user has.
        """
        return self.line_map(line)

    def _parsed_range(self, node: cst.CSTNode) -> CodeRange | None:
        """Where `node` is in the file on disk, if it is a node the file was parsed into: a node
        that earlier rules left alone is that very object, so no new position pass over the
        rewritten tree is needed to place it."""
        origin = self.origin
        if origin is None or origin is self._wrapper:
            return None
        return origin.resolve(PositionProvider).get(node)

    def location(self, node: cst.CSTNode) -> Location:
        found = self._parsed_range(node)
        if found is not None:
            return Location(self.display_path, found.start.line, found.start.column + 1)
        position = self.get_metadata(PositionProvider, node).start
        return Location(self.display_path, self.original_line(position.line), position.column + 1)

    def last_line(self, node: cst.CSTNode) -> int:
        """The line on disk where `node` ends."""
        found = self._parsed_range(node)
        if found is not None:
            return found.end.line
        return self.original_line(self.get_metadata(PositionProvider, node).end.line)

    def change(self, node: cst.CSTNode, applicability: Applicability, reason: str) -> None:
        self.records.append(Change(self.CODE, self.location(node), applicability, reason))

    def finding(self, node: cst.CSTNode, message: str, *, category: str = "",
                fix: Applicability | None = None) -> None:
        self.records.append(Finding(self.CODE, self.location(node), message, category, fix))

    # -- what names mean ------------------------------------------------------------------

    @property
    def package(self) -> str:
        filename = self.context.filename
        if self.context.full_package_name is not None and self.context.full_module_name:
            return self.context.full_package_name
        return self.project.module_name_for(Path(filename))[1] if filename else ""

    def absolute(self, qualified: str) -> str:
        """Turn a QualifiedNameProvider name (maybe relative: '.db.x') into an absolute one."""
        if not qualified.startswith("."):
            return qualified
        level = len(qualified) - len(qualified.lstrip("."))
        rest = qualified[level:]
        return resolve_relative(level, rest or None, self.package) or qualified

    def canonical_names(self, node: cst.CSTNode) -> set[str]:
        """Every dotted name `node` may stand for, followed to where it is defined."""
        names: set[QualifiedName] = self.get_metadata(QualifiedNameProvider, node, set())
        return {self.project.canonical(self.absolute(q.name)) for q in names}

    @property
    def raw_factories(self) -> frozenset[str]:
        if self._raw is None:
            self._raw = frozenset(self.project.canonical(name) for name in self.settings.raw_factories)
        return self._raw

    def is_raw_factory(self, func: cst.BaseExpression) -> bool:
        names = self.canonical_names(func)
        return bool(names) and names <= self.raw_factories

    def helper_semantics(self, helper: str) -> HelperSemantics:
        """What `helper` does at the end of its block (see sessionfix.semantics)."""
        return helper_semantics(self.project, helper)

    @classmethod
    def prefilter_needs(cls, settings: Settings) -> PrefilterNeeds | None:
        """What a file must contain for this rule to act on it; None (the default): every file."""
        return None

    @classmethod
    def docs(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")
