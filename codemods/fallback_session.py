"""SF020 fallback-session: `if session is None: session = get_session()` that never closes its own."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from sessionfix.config import Settings
from sessionfix.flow import PathAnalysis
from sessionfix.model import Applicability
from sessionfix.ownership import (
    factory_prefilter_needs,
    ESCAPES,
    Flavour,
    accesses,
    close_line,
    closes_anywhere,
    factory_flavour,
    finally_closes,
    free_name,
    leaks,
    managed_by_with,
    node_ids,
    wrap_in_finally,
)
from sessionfix.rule import Expect, Invalid, PrefilterNeeds, Rule, Valid

SAFE, UNSAFE, REPORT = Applicability.SAFE, Applicability.UNSAFE, Applicability.REPORT


@dataclass
class _Edit:
    index: int  # the fallback statement in the function body
    session: str
    flag: str
    flavour: Flavour
    #: `if P is None:` form: where the creation sits in the if's body; None: a one-line form
    inner: int | None
    #: the one-line forms: the flag's initial value (`not P` or `P is None`)
    initial: cst.BaseExpression | None = None


class FallbackSession(Rule):
    """
    ## What it does
    Finds a parameter that defaults to `None` and is filled in by a session factory when the
    caller passes nothing (`if session is None: session = get_session()`, `session = session or
    get_session()`, `session = session if session else get_session()`, with the factory imported
    inside the function or not). It adds a flag that remembers whether this function made the
    session, and wraps the statements after the creation, to the end of the function, in
    `try/finally` that closes the session only when the function owns it.

    ## Why is this bad?
    Without the caller's session, every call opens a session nobody closes: its connection stays
    checked out until the garbage collector finds it. Closing it unconditionally would be worse,
    since it would close the caller's session too.

    ## Example
    {example}

    ## Fix safety
    The caller's session is never closed or committed, and returns, yields, generators and
    `async def` (`await session.close()`) run as before; the only difference is the close of a
    session the function made itself, which discards nothing that was not already lost when it was
    collected: *safe*. A value read through the session that is returned, yielded or stored outside
    the function (`return session.query(M).all()`, `found = session.get(M, k); return found`) would
    change: its ORM objects come back detached and a query or result returned unread can no longer
    be read. Without types a plain value cannot be told from an ORM object, so anything read through
    the session except `len()`/`str()`/`int()`/..., comparisons and `query.count()` makes the fix
    *unsafe*, as does a session passed into the value the function returns. A session that is
    returned, stored, put into a container, captured by a closure, rebound, or already closed by the
    function itself is *reported*.
    """

    CODE = "SF020"
    NAME = "fallback-session"
    SUMMARY = "Close a fallback session only when the function made it"
    APPLICABILITIES = (SAFE, UNSAFE, REPORT)
    ORDER = 45
    PLANS_IN_VISIT_MODULE = True

    @classmethod
    def prefilter_needs(cls, settings: Settings) -> PrefilterNeeds:
        """Sites call a plain session factory (see sessionfix.ownership.factory_flavour)."""
        return factory_prefilter_needs(settings)

    def visit_Module(self, node: cst.Module) -> None:
        self._edits: dict[cst.IndentedBlock, _Edit] = {}
        for function in (f for f in self.nodes_of(cst.FunctionDef) if isinstance(f.body, cst.IndentedBlock)):
            assert isinstance(function, cst.FunctionDef)
            self._consider(function)

    def _consider(self, function: cst.FunctionDef) -> None:
        optional = _optional_params(function)
        if not optional:
            return
        body = list(function.body.body)  # type: ignore[attr-defined]
        handled = False
        for index, stmt in enumerate(body):
            found = self._fallback(stmt, optional)
            if found is None:
                continue
            name, call, flavour, inner, initial = found
            if handled:
                self.finding(call, f"a second fallback session (`{name}`) in this function; close it by hand",
                             category="fallback")
                continue
            handled = self._decide(function, body, index, name, call, flavour, inner, initial)

    def _fallback(self, stmt: cst.BaseStatement, optional: set[str]) -> tuple[str, cst.Call, Flavour, int | None, cst.BaseExpression | None] | None:
        """(parameter, factory call, flavour, index in the if body, flag's initial value)."""
        if isinstance(stmt, cst.If) and stmt.orelse is None:
            name = _none_test(stmt.test)
            if name not in optional:
                return None
            lines = stmt.body.body if isinstance(stmt.body, cst.IndentedBlock) else [cst.SimpleStatementLine(stmt.body.body)]
            analysis = PathAnalysis(None, False, self.is_log_call, self.is_pure_call)
            creations = [i for i, line in enumerate(lines) if _assigns_call(line, name)]
            others = [line for i, line in enumerate(lines) if i not in creations]
            if len(creations) != 1 or analysis.touches(cst.IndentedBlock(body=others)) is not None:
                return None
            call = lines[creations[0]].body[0].value  # type: ignore[attr-defined]
            flavour = factory_flavour(self, call)
            return (name, call, flavour, creations[0], None) if flavour else None
        if not _assigns_call(stmt, None, any_value=True):
            return None
        assign = stmt.body[0]  # type: ignore[attr-defined]
        target = assign.targets[0].target.value
        if target not in optional:
            return None
        matched = _one_line_fallback(assign.value, target)
        if matched is None:
            return None
        call, initial = matched
        flavour = factory_flavour(self, call)
        return (target, call, flavour, None, initial) if flavour else None

    def _decide(self, function: cst.FunctionDef, body: list[cst.BaseStatement], index: int, name: str,
                call: cst.Call, flavour: Flavour, inner: int | None, initial: cst.BaseExpression | None) -> bool:
        raw = cst.Module([]).code_for_node(call.func)
        rest = body[index + 1:]
        if rest and (finally_closes(rest[0], name) or managed_by_with(self, rest[0], name, rest[1:])):
            return True  # already closes what it owns
        found = accesses(self, call, name)
        if found is None:
            return True
        scope, uses = found
        inside = node_ids(rest)
        kinds = [u.use for u in uses if id(u.node) in inside]
        problem = next((ESCAPES[k] for k in ("returned", "yielded", "stored", "contained", "captured", "handoff",
                                             "deleted", "other")
                        if k in kinds), None)
        if problem is None and any(id(a.node) in inside for a in scope.assignments[name]):
            problem = "it is rebound later in the function"
        if problem is None and closes_anywhere(rest, name):
            problem = "the function already closes it, on some path, whoever made it"
        if problem is None and not rest:
            problem = "nothing uses it after it is made"
        if problem is None and flavour == "async" and function.asynchronous is None:
            problem = "it is an AsyncSession, which a plain `def` cannot close"
        if problem is not None:
            self.finding(call, f"`{name}` falls back to {raw}() when the caller passes none, but {problem}; "
                               "left for review", category="fallback")
            return True
        flag = free_name(function, f"owns_{name}")
        reason = (f"`{name}` falls back to {raw}(), which nobody closed; `{flag}` remembers that this "
                  f"function made it, and `finally` closes only that one")
        created = self.location(call).line
        leak = next((k for k in leaks(self, function, name) if self.location(k.node).line > created), None)
        if "returned-inside" in kinds or leak is not None:
            reason += (", but the returned value was given the session and may use it after the close"
                       if "returned-inside" in kinds else f", but closing it is not safe: {leak.reason(name)}")
            if not self.settings.unsafe:
                self.finding(call, f"unsafe fix available with --unsafe: {reason}", category="fallback", fix=UNSAFE)
                return True
            self.change(call, UNSAFE, reason)
        else:
            self.change(call, SAFE, reason)
        self._edits[function.body] = _Edit(index, name, flag, flavour, inner, initial)  # type: ignore[index]
        return True

    # -- rewriting ----------------------------------------------------------------------------

    def edit_targets(self) -> list[cst.CSTNode]:
        return list(self._edits)

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock) -> cst.IndentedBlock:
        edit = self._edits.get(original_node)
        if edit is None:
            return updated_node
        body = list(updated_node.body)
        fallback = body[edit.index]
        flag = cst.Name(edit.flag)
        if edit.inner is None:
            assert edit.initial is not None
            first = _assign(flag, edit.initial).with_changes(leading_lines=fallback.leading_lines)
            new = [first, fallback.with_changes(leading_lines=[])]
        else:
            assert isinstance(fallback, cst.If)
            lines = list(fallback.body.body) if isinstance(fallback.body, cst.IndentedBlock) else [
                cst.SimpleStatementLine(fallback.body.body)]
            lines.insert(edit.inner + 1, _assign(flag, cst.Name("True")))
            first = _assign(flag, cst.Name("False")).with_changes(leading_lines=fallback.leading_lines)
            new = [first, fallback.with_changes(leading_lines=[], body=cst.IndentedBlock(body=lines))]
        rest = body[edit.index + 1:]
        guard = cst.If(test=flag, body=cst.IndentedBlock(body=[close_line(edit.session, edit.flavour)]))
        return updated_node.with_changes(body=[*body[:edit.index], *new, wrap_in_finally(rest, [guard])])

    INVALID = [
        Invalid(
            id="if-none-with-local-import",
            before="""\
                from sqlalchemy.orm import Session


                class UniversalSyncEngine:
                    def truncate(self, session: Session = None) -> int:
                        \"\"\"Delete every row of the table; how many there were.\"\"\"
                        if session is None:
                            from init import Session

                            session = Session()
                        total = session.query(self.model).count()
                        session.execute(self.table.delete())
                        session.commit()
                        return total
                """,
            after="""\
                from sqlalchemy.orm import Session


                class UniversalSyncEngine:
                    def truncate(self, session: Session = None) -> int:
                        \"\"\"Delete every row of the table; how many there were.\"\"\"
                        owns_session = False
                        if session is None:
                            from core.db import get_session

                            session = get_session()
                            owns_session = True
                        try:
                            total = session.query(self.model).count()
                            session.execute(self.table.delete())
                            session.commit()
                            return total
                        finally:
                            if owns_session:
                                session.close()
                """,
            expect=(
                Expect("SF020", "safe", "`session` falls back to get_session(), which nobody closed; `owns_session`"),
                Expect("SF003", "safe", ""),
                Expect("SF001", "safe", ""),
            ),
        ),
        Invalid(
            id="or-form",
            before="""\
                from core.db import get_session


                def count(model, session=None):
                    session = session or get_session()

                    return session.query(model).count()
                """,
            after="""\
                from core.db import get_session


                def count(model, session=None):
                    owns_session = not session
                    session = session or get_session()

                    try:
                        return session.query(model).count()
                    finally:
                        if owns_session:
                            session.close()
                """,
            expect=(Expect("SF020", "safe", "`finally` closes only that one"),),
        ),
        Invalid(
            id="conditional-expression-in-a-generator",
            before="""\
                from core.db import get_session


                def run_all(statements, *, db=None):
                    db = db if db is not None else get_session()
                    # one statement at a time, committing each
                    for statement in statements:
                        db.execute(statement)
                        db.commit()
                        yield statement
                """,
            after="""\
                from core.db import get_session


                def run_all(statements, *, db=None):
                    owns_db = db is None
                    db = db if db is not None else get_session()
                    try:
                        # one statement at a time, committing each
                        for statement in statements:
                            db.execute(statement)
                            db.commit()
                            yield statement
                    finally:
                        if owns_db:
                            db.close()
                """,
            expect=(Expect("SF020", "safe", "`owns_db` remembers"),),
        ),
        Invalid(
            id="async-def-awaits-close",
            before="""\
                from core.db import async_session


                async def save(item, session=None):
                    if not session: session = async_session()
                    await session.merge(item)
                    await session.commit()
                """,
            after="""\
                from core.db import async_session


                async def save(item, session=None):
                    owns_session = False
                    if not session:
                        session = async_session()
                        owns_session = True
                    try:
                        await session.merge(item)
                        await session.commit()
                    finally:
                        if owns_session:
                            await session.close()
                """,
            expect=(Expect("SF020", "safe", "falls back to async_session()"),),
        ),
        Invalid(
            id="flag-name-already-taken",
            before="""\
                from core.db import get_session

                owns_session = "a module global the function reads"


                def label(session=None):
                    if session is None:
                        session = get_session()
                    session.info["label"] = owns_session
                """,
            after="""\
                from core.db import get_session

                owns_session = "a module global the function reads"


                def label(session=None):
                    owns_session_2 = False
                    if session is None:
                        session = get_session()
                        owns_session_2 = True
                    try:
                        session.info["label"] = owns_session
                    finally:
                        if owns_session_2:
                            session.close()
                """,
            expect=(Expect("SF020", "safe", "`owns_session_2` remembers"),),
        ),
        Invalid(
            id="returned-value-keeps-session",
            before="""\
                from core.db import get_session


                def repository(factory, session=None):
                    session = session or get_session()
                    return factory(session)
                """,
            after=None,
            expect=(Expect("SF020", "report", "unsafe fix available with --unsafe"),),
        ),
        Invalid(
            id="returned-value-keeps-session-unsafe",
            before="""\
                from core.db import get_session


                def repository(factory, session=None):
                    session = session or get_session()
                    return factory(session)
                """,
            after="""\
                from core.db import get_session


                def repository(factory, session=None):
                    owns_session = not session
                    session = session or get_session()
                    try:
                        return factory(session)
                    finally:
                        if owns_session:
                            session.close()
                """,
            expect=(Expect("SF020", "unsafe", "may use it after the close"),),
            options={"unsafe": True},
        ),
        Invalid(
            id="returns-loaded-objects",
            before="""\
                from core.db import get_session


                def export(model, session=None):
                    if session is None:
                        session = get_session()
                    return session.query(model).all()
                """,
            after=None,
            expect=(Expect("SF020", "report", "it returns `session.query(model).all()`, read through `session`; "
                                              "after the close, ORM objects in it are detached"),),
        ),
        Invalid(
            id="returns-loaded-objects-unsafe",
            before="""\
                from core.db import get_session


                def users_by_id(model, keys, session=None):
                    session = session or get_session()
                    found = {key: session.get(model, key) for key in keys}
                    return found
                """,
            after="""\
                from core.db import get_session


                def users_by_id(model, keys, session=None):
                    owns_session = not session
                    session = session or get_session()
                    try:
                        found = {key: session.get(model, key) for key in keys}
                        return found
                    finally:
                        if owns_session:
                            session.close()
                """,
            expect=(Expect("SF020", "unsafe", "it returns `found`, loaded from `session` at line 6"),),
            options={"unsafe": True},
        ),
        Invalid(
            id="put-into-a-container",
            before="""\
                from core.db import get_session


                def register(registry, session=None):
                    if session is None:
                        session = get_session()
                    registry["db"] = session
                """,
            after=None,
            expect=(Expect("SF020", "report", "it is put into a container or onto an object"),),
        ),
        Invalid(
            id="closes-the-callers-session-too",
            before="""\
                from core.db import get_session


                def purge(model, session=None):
                    if session is None:
                        session = get_session()
                    session.query(model).delete()
                    session.commit()
                    session.close()
                """,
            after=None,
            expect=(Expect("SF020", "report", "already closes it, on some path, whoever made it"),),
        ),
        Invalid(
            id="returns-the-session",
            before="""\
                from core.db import get_session


                def ensure(session=None):
                    if session is None:
                        session = get_session()
                    return session
                """,
            after=None,
            expect=(Expect("SF020", "report", "it is returned to the caller"),),
        ),
    ]
    VALID = [
        Valid(
            id="already-remembers-ownership",
            code="""\
                from core.db import get_session


                def export(model, session=None):
                    close_session = False
                    if session is None:
                        session = get_session()
                        close_session = True

                    try:
                        return session.query(model).all()
                    finally:
                        if close_session:
                            session.close()
                """,
        ),
        Valid(
            id="caller-always-passes-one",
            code="""\
                def export(model, session):
                    return session.query(model).all()
                """,
        ),
        Valid(
            id="falls-back-to-the-context-helper",
            code="""\
                from core.db import get_db_session_ctx


                def export(model, session=None):
                    if session is None:
                        with get_db_session_ctx() as session:
                            return export(model, session)
                    return session.query(model).all()
                """,
        ),
    ]


def _optional_params(function: cst.FunctionDef) -> set[str]:
    params = function.params
    return {
        p.name.value
        for p in (*params.posonly_params, *params.params, *params.kwonly_params)
        if p.default is not None and m.matches(p.default, m.Name("None"))
    }


def _none_test(test: cst.BaseExpression) -> str | None:
    """`P is None` or `not P`: the name tested."""
    if m.matches(test, m.Comparison(left=m.Name(), comparisons=[m.ComparisonTarget(m.Is(), m.Name("None"))])):
        return test.left.value  # type: ignore[attr-defined]
    if m.matches(test, m.UnaryOperation(operator=m.Not(), expression=m.Name())):
        return test.expression.value  # type: ignore[attr-defined]
    return None


def _assigns_call(stmt: cst.BaseStatement, name: str | None, any_value: bool = False) -> bool:
    target = m.Name(name) if name is not None else m.Name()
    value = m.DoNotCare() if any_value else m.Call()
    return m.matches(stmt, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(target)], value=value)]))


def _one_line_fallback(value: cst.BaseExpression, name: str) -> tuple[cst.Call, cst.BaseExpression] | None:
    """`P or F()`, `P if P else F()`, `P if P is not None else F()`, `F() if P is None else P`, ...:
    the factory call and what the flag starts as (`not P` or `P is None`)."""
    p = m.Name(name)
    not_p = cst.UnaryOperation(operator=cst.Not(), expression=cst.Name(name))
    is_none = cst.Comparison(left=cst.Name(name), comparisons=[cst.ComparisonTarget(cst.Is(), cst.Name("None"))])
    if m.matches(value, m.BooleanOperation(left=p, operator=m.Or(), right=m.Call())):
        return value.right, not_p  # type: ignore[attr-defined, return-value]
    if not isinstance(value, cst.IfExp):
        return None
    if m.matches(value.body, p) and isinstance(value.orelse, cst.Call):
        if m.matches(value.test, p):
            return value.orelse, not_p
        if m.matches(value.test, m.Comparison(left=p, comparisons=[m.ComparisonTarget(m.IsNot(), m.Name("None"))])):
            return value.orelse, is_none
    if m.matches(value.orelse, p) and isinstance(value.body, cst.Call):
        tested = _none_test(value.test)
        if tested == name:
            return value.body, is_none if isinstance(value.test, cst.Comparison) else not_p
    return None


def _assign(target: cst.Name, value: cst.BaseExpression) -> cst.SimpleStatementLine:
    return cst.SimpleStatementLine(body=[cst.Assign(targets=[cst.AssignTarget(target)], value=value)])

