"""SF013 concurrent-session: one session shared by concurrent tasks (report only)."""

from __future__ import annotations

import ast

import libcst as cst
import libcst.matchers as m
from libcst.metadata import ParentNodeProvider, ScopeProvider

from sessionfix.config import Settings
from sessionfix.index import ASYNC_SESSIONMAKERS, SESSIONMAKERS
from sessionfix.model import Applicability
from sessionfix.semantics import ASYNCCONTEXTMANAGER, CONTEXTMANAGER
from sessionfix.rule import Expect, Invalid, PrefilterNeeds, Rule, Valid

REPORT = Applicability.REPORT
_SESSIONS = frozenset({
    "sqlalchemy.orm.Session", "sqlalchemy.orm.session.Session",
    "sqlalchemy.ext.asyncio.AsyncSession", "sqlalchemy.ext.asyncio.session.AsyncSession",
})
_GATHER = frozenset({"asyncio.gather"})
_SPAWN = frozenset({"asyncio.create_task", "asyncio.ensure_future"})
_SPAWN_METHODS = frozenset({"create_task", "start_soon"})
_PROVIDER_KINDS = frozenset({"contextmanager", "asynccontextmanager", "sessionmaker", "sessionmaker.begin", "class"})


def may_share_a_session(tree: ast.Module, spawners_here: frozenset[str], sessions: frozenset[str]) -> bool:
    """Can the rule report in this module? Only if a call that gathers or spawns tasks (by a name
    among `spawners_here`, which the prefilter resolved, or its usual spelling) mentions a name
    the module binds in a way `_binds_session` can accept: `with ... as name`, `name = call(...)`,
    or a parameter whose annotation mentions one of `sessions` (identifiers that may stand for a
    session type). Where the name is bound, and by what, is left to the rule."""
    spawners = {name.rpartition(".")[2] for name in _GATHER | _SPAWN} | _SPAWN_METHODS | spawners_here
    calls: list[ast.Call] = []
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            calls.append(node)
        elif isinstance(node, ast.withitem) and isinstance(node.optional_vars, ast.Name):
            bound.add(node.optional_vars.id)
        elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            bound.update(target.id for target in node.targets if isinstance(target, ast.Name))
        elif isinstance(node, ast.arg) and node.annotation is not None and _mentions(node.annotation, sessions):
            bound.add(node.arg)
        elif isinstance(node, ast.ImportFrom):
            spawners.update(alias.asname for alias in node.names if alias.asname and alias.name in spawners)
    for call in calls:
        func = call.func
        called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if called in spawners and any(isinstance(n, ast.Name) and n.id in bound for n in ast.walk(call)):
            return True
    return False


def _mentions(annotation: ast.expr, identifiers: frozenset[str]) -> bool:
    for node in ast.walk(annotation):
        if isinstance(node, ast.Name) and node.id in identifiers:
            return True
        if isinstance(node, ast.Attribute) and node.attr in identifiers:
            return True
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and any(i in node.value for i in identifiers):
            return True
    return False


class ConcurrentSession(Rule):
    """
    ## What it does
    Reports one session given to several concurrent tasks: two or more arguments of
    `asyncio.gather(...)` that use the same session, a `gather(*[...])` that builds many tasks
    around one session, or `create_task(...)`/`ensure_future(...)` handed a session that the
    spawning code (or a loop spawning more tasks) keeps using.

    ## Why is this bad?
    An `AsyncSession` (like a `Session`) is not safe for concurrent use: tasks interleave at every
    `await`, so one task's flush, commit or rollback lands in the middle of another's work, and
    SQLAlchemy raises "This session is provisioning a new connection; concurrent operations are
    not permitted" or, worse, silently mixes transactions.

    ## Example
    {example}

    ## Fix safety
    Report only: the repair (one session per task, or running the tasks one after another) changes
    how many transactions there are, which only a human can decide. A name counts as a session when
    the project model says so: bound by `with`/`async with` on a session helper or factory, made
    by a raw factory or a sessionmaker, or a parameter annotated `Session`/`AsyncSession`.
    """

    CODE = "SF013"
    NAME = "concurrent-session"
    SUMMARY = "Report a session shared by concurrent tasks"
    APPLICABILITIES = (REPORT,)
    ORDER = 80
    PLANS_IN_VISIT_MODULE = True

    @classmethod
    def prefilter_needs(cls, settings: Settings) -> PrefilterNeeds:
        """Sites are asyncio.gather / create_task / ensure_future calls or a create_task/start_soon
        method, and a session must be in reach: every way `_binds_session` accepts one."""
        helpers = {h for h in (settings.sync_factory, settings.sync_context, settings.async_context) if h}
        sessions = PrefilterNeeds(
            names=_SESSIONS | frozenset(settings.raw_factories) | helpers,
            made_by=SESSIONMAKERS | ASYNC_SESSIONMAKERS,
            decorated_by=CONTEXTMANAGER | ASYNCCONTEXTMANAGER,
            context_classes=True,
        )
        return PrefilterNeeds(names=_GATHER | _SPAWN, words=_SPAWN_METHODS, used_only=True, also=sessions,
                              sites=may_share_a_session)

    def visit_Module(self, node: cst.Module) -> None:
        for found in self.nodes_of(cst.Call):
            assert isinstance(found, cst.Call)
            self._check(found)

    def _session_name(self, name: cst.Name) -> bool:
        """Is `name` (a reference) bound only as a session in its scope?"""
        scope = self.get_metadata(ScopeProvider, name, None)
        if scope is None:
            return False
        assignments = list(scope[name.value])
        return bool(assignments) and all(self._binds_session(a) for a in assignments)

    def _binds_session(self, assignment: object) -> bool:
        node = getattr(assignment, "node", None)
        if isinstance(node, cst.Name):
            parent = self.get_metadata(ParentNodeProvider, node, None)
            if isinstance(parent, cst.AsName):
                item = self.get_metadata(ParentNodeProvider, parent, None)
                return isinstance(item, cst.WithItem) and self._provides(item.item)
            if isinstance(parent, cst.AssignTarget):
                assign = self.get_metadata(ParentNodeProvider, parent, None)
                return isinstance(assign, cst.Assign) and self._makes(assign.value)
        if isinstance(node, cst.Param) and node.annotation is not None:
            return bool(self.canonical_names(node.annotation.annotation) & _SESSIONS)
        return False

    def _provides(self, expr: cst.BaseExpression) -> bool:
        """`expr` in `with expr as s:` hands out a session."""
        if not isinstance(expr, cst.Call):
            return False
        func = expr.func
        if m.matches(func, m.Attribute(attr=m.Name("begin"))):
            func = func.value  # type: ignore[attr-defined]
        for name in self.canonical_names(func):
            if name in self.raw_factories or self.project.made_by(name) in SESSIONMAKERS | ASYNC_SESSIONMAKERS:
                return True
            if self.project.definition(name) is not None:
                semantics = self.helper_semantics(name)
                if semantics.kind in _PROVIDER_KINDS and semantics.closes.value:
                    return True
        return False

    def _makes(self, expr: cst.BaseExpression) -> bool:
        """`s = expr` makes a session."""
        if not isinstance(expr, cst.Call):
            return False
        factory = self.settings.sync_factory
        for name in self.canonical_names(expr.func):
            if name in self.raw_factories or name in _SESSIONS:
                return True
            if self.project.made_by(name) in SESSIONMAKERS | ASYNC_SESSIONMAKERS:
                return True
            if factory is not None and name == self.project.canonical(factory):
                return True
        return False

    def _sessions_in(self, node: cst.CSTNode) -> set[str]:
        found: set[str] = set()
        for name in m.findall(node, m.Name()):
            assert isinstance(name, cst.Name)
            parent = self.get_metadata(ParentNodeProvider, name, None)
            if isinstance(parent, cst.Attribute) and parent.attr is name:
                continue
            if isinstance(parent, cst.Arg) and parent.keyword is name:
                continue
            if self._session_name(name):
                found.add(name.value)
        return found

    def _check(self, call: cst.Call) -> None:
        names = self.canonical_names(call.func)
        if names & _GATHER:
            self._gather(call)
        elif names & _SPAWN or (isinstance(call.func, cst.Attribute) and call.func.attr.value in _SPAWN_METHODS):
            self._spawn(call)

    def _gather(self, call: cst.Call) -> None:
        counts: dict[str, int] = {}
        for arg in call.args:
            if arg.keyword is not None:
                continue
            many = arg.star == "*" and bool(m.findall(arg.value, m.ListComp() | m.GeneratorExp() | m.SetComp()))
            for session in self._sessions_in(arg.value):
                counts[session] = counts.get(session, 0) + (2 if many else 1)
        for session, count in sorted(counts.items()):
            if count >= 2:
                self.finding(call, f"session `{session}` is used by several tasks that asyncio.gather runs "
                                   "concurrently; an AsyncSession is not safe for concurrent use: give each task "
                                   "its own session", category="concurrent-session")

    def _spawn(self, call: cst.Call) -> None:
        inside = {id(n) for n in m.findall(call, m.Name())}
        function = self._function(call)
        if function is None:
            return
        for session in sorted(self._sessions_in(call)):
            others = [n for n in m.findall(function.body, m.Name(session))
                      if id(n) not in inside and self._is_read(n) and self._session_name(n)]  # type: ignore[arg-type]
            looped = self._in_loop(call, function)
            if others or looped:
                where = "in a loop that starts more of them" if looped else \
                    f"while this code keeps using it (line {self.location(others[0]).line})"
                self.finding(call, f"session `{session}` is handed to a task {where}; an AsyncSession is not "
                                   "safe for concurrent use: give the task its own session",
                             category="concurrent-session")

    def _is_read(self, name: cst.CSTNode) -> bool:
        parent = self.get_metadata(ParentNodeProvider, name, None)
        return not isinstance(parent, (cst.AsName, cst.AssignTarget, cst.Param)) and not (
            isinstance(parent, cst.Attribute) and parent.attr is name
        )

    def _function(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        current = self.get_metadata(ParentNodeProvider, node, None)
        while current is not None and not isinstance(current, cst.FunctionDef):
            current = self.get_metadata(ParentNodeProvider, current, None)
        return current

    def _in_loop(self, node: cst.CSTNode, stop: cst.CSTNode) -> bool:
        current = self.get_metadata(ParentNodeProvider, node, None)
        while current is not None and current is not stop:
            if isinstance(current, (cst.For, cst.While, cst.ListComp, cst.GeneratorExp)):
                return True
            current = self.get_metadata(ParentNodeProvider, current, None)
        return False

    INVALID = [
        Invalid(
            id="gather-shares-one-session",
            before="""\
                import asyncio

                from core.db import get_async_session


                async def dashboard(load_users, load_orders):
                    async with get_async_session() as db:
                        return await asyncio.gather(load_users(db), load_orders(db))
                """,
            after=None,
            expect=(Expect("SF013", "report", "session `db` is used by several tasks"),),
        ),
        Invalid(
            id="gather-over-a-comprehension",
            before="""\
                import asyncio

                from sqlalchemy.ext.asyncio import AsyncSession


                async def refresh_all(session: AsyncSession, refresh, ids):
                    await asyncio.gather(*[refresh(session, i) for i in ids])
                """,
            after=None,
            expect=(Expect("SF013", "report", "asyncio.gather runs concurrently"),),
        ),
        Invalid(
            id="task-and-spawner-share-a-session",
            before="""\
                import asyncio

                from core.db import get_async_session


                async def handle(audit, item):
                    async with get_async_session() as db:
                        asyncio.create_task(audit(db, item))
                        db.add(item)
                        await db.commit()
                """,
            after=None,
            expect=(Expect("SF013", "report", "while this code keeps using it"),),
        ),
    ]
    VALID = [
        Valid(
            id="one-session-per-task",
            code="""\
                import asyncio

                from core.db import get_async_session


                async def load(query):
                    async with get_async_session() as db:
                        return await db.execute(query)


                async def dashboard(users, orders):
                    return await asyncio.gather(load(users), load(orders))
                """,
        ),
        Valid(
            id="sequential-awaits",
            code="""\
                from core.db import get_async_session


                async def dashboard(load_users, load_orders):
                    async with get_async_session() as db:
                        users = await load_users(db)
                        orders = await load_orders(db)
                        return users, orders
                """,
        ),
        Valid(
            id="not-a-session",
            code="""\
                import asyncio


                async def fan_out(client, fetch):
                    return await asyncio.gather(fetch(client, 1), fetch(client, 2))
                """,
        ),
    ]
