"""The audit's own reading of a file: every place that touches a session, and what kind it is.

Rules report what is wrong and how to fix it; this visitor also names what is right (a type
hint, a helper-managed block, a session closed in `finally`), which no rule records. Names are
resolved through the project index, never matched as text: `Session` from requests is not a
site, `get_session` re-exported through a package is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import libcst as cst
import libcst.matchers as m
from libcst.metadata import ParentNodeProvider, PositionProvider, QualifiedNameProvider, QualifiedNameSource

from sessionfix.config import Settings
from sessionfix.metadata import Wrapper
from sessionfix.index import ASYNC_SESSIONMAKERS, SESSIONMAKERS, ProjectIndex, resolve_relative, dotted_name

#: SQLAlchemy's session classes, as imports spell them
SESSION_CLASSES = frozenset({
    "sqlalchemy.orm.Session", "sqlalchemy.orm.session.Session",
    "sqlalchemy.ext.asyncio.AsyncSession", "sqlalchemy.ext.asyncio.session.AsyncSession",
})
_MAKERS = SESSIONMAKERS | ASYNC_SESSIONMAKERS
_CLOSING = frozenset({"contextlib.closing", "contextlib.aclosing"})
_ENTER = frozenset({"enter_context", "enter_async_context"})


@dataclass(frozen=True)
class SiteCandidate:
    """One place the visitor classified: its span (1-based columns) and why."""

    start: tuple[int, int]
    end: tuple[int, int]
    category: str  # "type-hint", "helper-managed", "manual-correct", "raw-factory", ...
    detail: str

    def contains(self, line: int, column: int) -> bool:
        return self.start <= (line, column) <= self.end


@dataclass(frozen=True)
class Kind:
    """What a called name is: how it makes a session."""

    role: str  # "raw", "context", "factory", "maker", "session-class", "begin"
    name: str  # the dotted name, for messages


class SessionSites(cst.CSTVisitor):
    """Collects SiteCandidates for one module (run through a MetadataWrapper)."""

    METADATA_DEPENDENCIES = (PositionProvider, QualifiedNameProvider, ParentNodeProvider)

    def __init__(self, project: ProjectIndex, settings: Settings, module: str, package: str) -> None:
        super().__init__()
        self.project = project
        self.module = module
        self.package = package
        canon = project.canonical
        self.raw = frozenset(canon(n) for n in settings.raw_factories)
        self.contexts = frozenset(canon(n) for n in (settings.sync_context, settings.async_context) if n)
        self.factories = frozenset(canon(n) for n in (settings.sync_factory,) if n)
        self.sites: list[SiteCandidate] = []
        self.imports: set[str] = set()  # session-related dotted names the file imports
        self.other_imports: list[SiteCandidate] = []  # imports that bring in no session name
        self._handled: set[int] = set()  # id() of calls already classified through a `with`
        self._helper: str | None = None  # inside the definition of this configured helper
        self._depth = 0  # function nesting

    # -- names ------------------------------------------------------------------------------

    def _absolute(self, qualified: str) -> str:
        if not qualified.startswith("."):
            return qualified
        level = len(qualified) - len(qualified.lstrip("."))
        return resolve_relative(level, qualified[level:] or None, self.package) or qualified

    def names(self, node: cst.CSTNode) -> set[str]:
        """Canonical dotted names `node` may stand for; this module's own names get its prefix."""
        found = self.get_metadata(QualifiedNameProvider, node, set())
        names = set()
        for q in found:
            name = self._absolute(q.name)
            if q.source is QualifiedNameSource.LOCAL and self.module and "<locals>" not in name:
                name = f"{self.module}.{name}"
            names.add(self.project.canonical(name))
        return names

    def kind(self, func: cst.BaseExpression) -> Kind | None:
        names = self.names(func)
        if names:
            name = sorted(names)[0]
            if names <= self.raw:
                return Kind("raw", name)
            for role, group in (("context", self.contexts), ("factory", self.factories),
                                ("session-class", SESSION_CLASSES)):
                hit = names & group
                if hit:
                    return Kind(role, sorted(hit)[0])
            for candidate in sorted(names):
                if self.project.made_by(candidate) in _MAKERS:
                    return Kind("maker", candidate)
        if isinstance(func, cst.Attribute) and func.attr.value == "begin":
            inner = self.kind(func.value)
            if inner is not None and inner.role in ("maker", "raw"):
                return Kind("begin", f"{inner.name}.begin")
        return None

    def _session_related(self, dotted: str) -> bool:
        return (dotted in self.raw or dotted in self.contexts or dotted in self.factories
                or dotted in SESSION_CLASSES or self.project.made_by(dotted) in _MAKERS)

    # -- recording --------------------------------------------------------------------------

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if self._depth == 0 and self.module:
            dotted = self.project.canonical(f"{self.module}.{node.name.value}")
            if dotted in self.contexts or dotted in self.factories:
                self._helper = dotted
        self._depth += 1

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._helper = None

    def _add(self, node: cst.CSTNode, category: str, detail: str) -> None:
        if self._helper is not None and category not in ("type-hint", "helper-managed", "manual-correct"):
            category, detail = "manual-correct", f"the configured helper {self._helper} makes its sessions here"
        self._span(node, self.sites, category, detail)

    def _span(self, node: cst.CSTNode, into: list[SiteCandidate], category: str, detail: str) -> None:
        where = self.get_metadata(PositionProvider, node)
        into.append(SiteCandidate((where.start.line, where.start.column + 1),
                                  (where.end.line, where.end.column + 1), category, detail))

    def _line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(PositionProvider, node).start.line

    # -- imports and annotations ------------------------------------------------------------

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if isinstance(node.names, cst.ImportStar):
            return
        written = dotted_name(node.module) if node.module else None
        module = resolve_relative(len(node.relative), written, self.package)
        if module is None:
            return
        related = False
        for alias in node.names:
            dotted = self.project.canonical(f"{module}.{alias.evaluated_name}")
            if self._session_related(dotted):
                self.imports.add(dotted)
                related = True
        if not related:
            self._span(node, self.other_imports, "other", "")
        elif self.project.status(module) == "missing":
            self._add(node, "missing-import",
                      f"module {module} does not exist: this import raises ModuleNotFoundError when it runs")

    def visit_Import(self, node: cst.Import) -> None:
        self._span(node, self.other_imports, "other", "")

    def visit_Annotation(self, node: cst.Annotation) -> bool:
        for part in m.findall(node, m.Name() | m.Attribute()):
            hit = self.names(part) & SESSION_CLASSES
            if hit:
                self._add(node, "type-hint", f"{sorted(hit)[0]} used as a type hint only")
                break
        return False

    # -- with blocks ------------------------------------------------------------------------

    def visit_With(self, node: cst.With) -> None:
        for item in node.items:
            call = item.item
            if not isinstance(call, cst.Call):
                continue
            kind = self.kind(call.func)
            closer = self.names(call.func) & _CLOSING
            if kind is None and closer and call.args and isinstance(call.args[0].value, cst.Call):
                inner = call.args[0].value
                inner_kind = self.kind(inner.func)
                if inner_kind is not None:
                    self._handled.add(id(inner))
                    if inner_kind.role == "raw":
                        self._add(node, "raw-factory", f"{inner_kind.name} is a configured raw factory")
                    else:
                        self._add(node, "manual-correct", f"{sorted(closer)[0]}() closes the session from "
                                                          f"{inner_kind.name}() when the block ends")
                continue
            if kind is None:
                continue
            self._handled.add(id(call))
            self._add(node, *self._with_class(kind, call, "async with" if node.asynchronous else "with"))

    def _with_class(self, kind: Kind, call: cst.Call, keyword: str) -> tuple[str, str]:
        if kind.role == "raw":
            return "raw-factory", f"`{keyword} {kind.name}()`: a configured raw factory instead of the project's helper"
        if kind.role == "context":
            return "helper-managed", f"{kind.name}() opens, ends and closes the session"
        if kind.role == "begin":
            return "helper-managed", f"{kind.name}() commits on success, rolls back on error and closes"
        if kind.role == "session-class" and not call.args:
            return "unbound", f"{kind.name}() with no bind cannot run a query"
        return "manual-correct", f"the `with` closes the session from {kind.name}(); commits are the code's own"

    # -- bare calls -------------------------------------------------------------------------

    def visit_Call(self, node: cst.Call) -> None:
        if id(node) in self._handled:
            return
        kind = self.kind(node.func)
        if kind is None or kind.role == "begin":
            return
        if kind.role == "context":
            self._add(node, *self._bare_context(node, kind))
            return
        if kind.role == "session-class" and not node.args:
            self._add(node, "unbound", f"{kind.name}() with no bind cannot run a query")
            return
        category, detail = self._ownership(node, kind)
        if kind.role == "raw" and category in ("manual-correct", "raw-factory"):
            category, detail = "raw-factory", f"{kind.name}() is a configured raw factory ({detail})"
        elif kind.role == "raw":
            detail = f"{detail}; {kind.name} is also a configured raw factory"
        self._add(node, category, detail)

    def _parent(self, node: cst.CSTNode) -> cst.CSTNode | None:
        return self.get_metadata(ParentNodeProvider, node, None)

    def _bare_context(self, node: cst.Call, kind: Kind) -> tuple[str, str]:
        parent = self._parent(node)
        if isinstance(parent, cst.Arg):
            outer = self._parent(parent)
            if m.matches(outer, m.Call(func=m.Attribute(attr=m.OneOf(*(m.Name(n) for n in _ENTER))))):
                return "helper-managed", f"an ExitStack enters {kind.name}() and closes it"
        if isinstance(parent, cst.Return):
            return "helper-managed", f"{kind.name}() is handed to the caller, who enters it"
        return "bare-helper", (f"{kind.name}() is a context manager called without `with`: what it "
                               "returns is not a session, and nothing commits or closes one")

    def _ownership(self, node: cst.Call, kind: Kind) -> tuple[str, str]:
        """Who closes the session this call makes?"""
        parent = self._parent(node)
        if isinstance(parent, cst.Await):
            parent = self._parent(parent)
        if isinstance(parent, (cst.Return, cst.Yield)):
            return "manual-correct", "returned to the caller, who owns and closes it"
        if isinstance(parent, cst.Arg):
            outer = self._parent(parent)
            if isinstance(outer, cst.Call) and self.names(outer.func) & _CLOSING:
                return "manual-correct", "contextlib.closing() closes it"
            return "leaked", "passed straight into a call; nothing here closes it"
        fallback = False
        if isinstance(parent, (cst.BooleanOperation, cst.IfExp)):
            fallback = True
            parent = self._parent(parent)
        if isinstance(parent, (cst.Assign, cst.AnnAssign)):
            targets = [t.target for t in parent.targets] if isinstance(parent, cst.Assign) else [parent.target]
            if len(targets) == 1 and isinstance(targets[0], cst.Name):
                return self._named(targets[0].value, parent, kind, fallback)
            if len(targets) == 1 and isinstance(targets[0], cst.Attribute):
                return "manual-correct", "stored on an object, which owns it for its lifetime"
        return "leaked", f"the session from {kind.name}() is never closed here"

    def _named(self, name: str, assign: cst.CSTNode, kind: Kind, fallback: bool) -> tuple[str, str]:
        scope = self._enclosing_function(assign)
        if scope is None:
            return "leaked", f"module-level `{name}` lives as long as the process; nothing closes it"
        closed = self._closed_at(scope, name)
        if closed is not None:
            return "manual-correct", f"`{name}` is closed {closed}"
        if fallback or self._is_fallback(assign, scope, name):
            return "fallback", (f"`{name}` falls back to {kind.name}() when the caller passes none, "
                                "and this function never closes the session it made")
        if any(m.matches(r.value, m.Name(name)) for r in _own(scope, m.Return())):  # type: ignore[attr-defined]
            return "manual-correct", f"`{name}` is returned to the caller, who owns and closes it"
        if any(m.matches(a, m.Assign(targets=[m.AssignTarget(target=m.Attribute())], value=m.Name(name)))
               for a in _own(scope, m.Assign())):
            return "manual-correct", f"`{name}` is stored on an object, which owns it"
        return "leaked", f"no `finally` or `with` closes `{name}`"

    def _enclosing_function(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        current = self._parent(node)
        while current is not None and not isinstance(current, cst.FunctionDef):
            current = self._parent(current)
        return current

    def _closed_at(self, scope: cst.FunctionDef, name: str) -> str | None:
        close = m.Call(func=m.Attribute(value=m.Name(name), attr=m.Name("close")))
        for block in _own(scope, m.Try() | m.TryStar()):
            final = block.finalbody  # type: ignore[attr-defined]
            if final is not None and m.findall(final, close):
                return f"in `finally` (line {self._line(final)})"
        for with_ in _own(scope, m.With()):
            for item in with_.items:  # type: ignore[attr-defined]
                value = item.item
                if m.matches(value, m.Name(name)) or (
                    isinstance(value, cst.Call) and self.names(value.func) & _CLOSING
                    and value.args and m.matches(value.args[0].value, m.Name(name))
                ):
                    return f"by the `with` at line {self._line(with_)}"
        return None

    def _is_fallback(self, assign: cst.CSTNode, scope: cst.FunctionDef, name: str) -> bool:
        """`if name is None: name = F()` (or `if not name:`) for a parameter `name`."""
        params = {p.name.value for p in (*scope.params.params, *scope.params.kwonly_params,
                                         *scope.params.posonly_params)}
        if name not in params:
            return False
        current = self._parent(assign)
        while current is not None and current is not scope:
            if isinstance(current, cst.If) and (
                m.matches(current.test, m.Comparison(left=m.Name(name), comparisons=[
                    m.ComparisonTarget(operator=m.Is(), comparator=m.Name("None"))]))
                or m.matches(current.test, m.UnaryOperation(operator=m.Not(), expression=m.Name(name)))
            ):
                return True
            current = self._parent(current)
        return False


def _own(scope: cst.FunctionDef, matcher: m.BaseMatcherNode) -> Iterator[cst.CSTNode]:
    """Nodes matching `matcher` in `scope`'s body, not inside nested functions or classes."""
    pending: list[cst.CSTNode] = [scope.body]
    while pending:
        node = pending.pop()
        if m.matches(node, matcher):
            yield node
        for child in node.children:
            if not isinstance(child, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
                pending.append(child)


def collect_sites(tree: cst.Module, project: ProjectIndex, settings: Settings,
                  module: str, package: str) -> SessionSites:
    """Every session site in `tree` (`.sites`), the session names it imports, its other imports."""
    visitor = SessionSites(project, settings, module, package)
    Wrapper(tree, unsafe_skip_copy=True).visit(visitor)
    return visitor


def innermost(sites: Sequence[SiteCandidate], line: int, column: int) -> SiteCandidate | None:
    """The smallest site whose span holds (line, column)."""
    holding = [s for s in sites if s.contains(line, column)]
    return min(holding, key=lambda s: (s.end[0] - s.start[0], s.end[1] - s.start[1]), default=None)
