"""SF021 unclosed-session: `s = get_session()` that some path never closes."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m
from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor
from libcst.metadata import ParentNodeProvider, QualifiedNameProvider

from sessionfix.config import Settings
from sessionfix.flow import PathAnalysis, session_method
from sessionfix.model import Applicability
from sessionfix.ownership import (
    factory_prefilter_needs,
    ESCAPES,
    Flavour,
    accesses,
    close_call,
    close_line,
    closes_anywhere,
    enclosing_function,
    factory_flavour,
    finally_closes,
    leaks,
    returns_in,
    statements,
    managed_by_with,
    node_ids,
    wrap_in_finally,
)
from sessionfix.rule import Expect, ImportPlan, Invalid, PrefilterNeeds, Rule, Valid, import_line
from sessionfix.sessionblock import plan_session_block

SAFE, UNSAFE, REPORT = Applicability.SAFE, Applicability.UNSAFE, Applicability.REPORT


@dataclass
class _Edit:
    start: int  # index of the creation in its block
    end: int  # one past the last statement wrapped
    session: str
    flavour: Flavour
    helper: str | None = None  # `with helper() as s:` instead of try/finally


class UnclosedSession(Rule):
    """
    ## What it does
    Finds `s = <factory>()` (the project's plain factory, a sessionmaker, `Session(bind=...)`)
    where some path never closes `s`: no `close()` at all, a `return` before the close, or an
    exception before it. The statements after the creation, to the end of their block, go into
    `try: ... finally: s.close()`. When the configured sync-context helper does exactly what the
    code did (it only closes, or it commits on exit and every normal path already ends with
    `commit()`/`rollback()`), the block becomes `with <sync-context>() as s:` instead.

    ## Why is this bad?
    An unclosed session keeps its connection checked out until the garbage collector finds it:
    the pool runs dry under load, and SQLite keeps its lock.

    ## Example
    {example}

    ## Fix safety
    Closing a session the function owns changes nothing else when nothing that outlives the
    function still needs it: uncommitted work is discarded, as it was when the session was
    collected. *Safe*, and the record says which form was chosen and why. A value read through the
    session that is returned, yielded or stored outside the function (`return s.get(...)`,
    `users = s.query(U).all(); return users`, `self.cache = s.get(...)`) would change: its ORM
    objects come back detached (lazy relationships raise `DetachedInstanceError`) and a query or
    result returned unread can no longer be read. Without types a plain value cannot be told from
    an ORM object, so only constants, names not read through the session, `len()`/`str()`/`int()`
    /..., comparisons and `query.count()` count as plain; anything else is *unsafe*, as is a session
    passed into the returned value (`return Repo(s)`). A session that is returned, stored on an
    object, or already closed in `finally` / by a `with` is correct and left alone; one put into a
    container (`bag.append(s)`, `d[k] = s`, `setattr`), captured by a closure, handed to a task or
    thread, yielded without a close, or used after its block is *reported*. Known problem: a callee
    that keeps the session or a value read through it is not detected.
    """

    CODE = "SF021"
    NAME = "unclosed-session"
    SUMMARY = "Close sessions from plain factories on every path"
    APPLICABILITIES = (SAFE, UNSAFE, REPORT)
    ORDER = 50
    PLANS_IN_VISIT_MODULE = True

    @classmethod
    def prefilter_needs(cls, settings: Settings) -> PrefilterNeeds:
        """Sites call a plain session factory (see sessionfix.ownership.factory_flavour)."""
        return factory_prefilter_needs(settings)

    def visit_Module(self, node: cst.Module) -> None:
        self._edits: dict[cst.IndentedBlock, list[_Edit]] = {}
        self._anchors: dict[cst.BaseStatement, list[ImportPlan]] = {}
        #: `s.close()` statements the new `finally` / `with` makes redundant
        self._drops: set[cst.BaseStatement] = set()
        pattern = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())], value=m.Call())])
        for line in (s for s in self.nodes_of(cst.SimpleStatementLine) if m.matches(s, pattern)):
            assert isinstance(line, cst.SimpleStatementLine)
            self._consider(line)

    def _consider(self, line: cst.SimpleStatementLine) -> None:
        assign = line.body[0]
        assert isinstance(assign, cst.Assign) and isinstance(assign.value, cst.Call)
        target = assign.targets[0].target
        assert isinstance(target, cst.Name)
        name, call = target.value, assign.value
        block = self.get_metadata(ParentNodeProvider, line, None)
        function = enclosing_function(self, line)
        if not isinstance(block, cst.IndentedBlock) or function is None:
            return
        flavour = factory_flavour(self, call)
        if flavour is None or _is_param(function, name):
            return
        found = accesses(self, assign, name)
        if found is None:
            return
        scope, uses = found
        if not any(a.node is target and a.scope is scope for a in scope.assignments[name]):
            return  # `global` / `nonlocal`: the session lives beyond this function
        body = list(block.body)
        start = body.index(line)
        end = next((i for i in range(start + 1, len(body)) if self._recreates(body[i], name)), len(body))
        rest = body[start + 1:end]
        if self._already_closed(line, rest, name):
            return
        raw = cst.Module([]).code_for_node(call.func)
        inside = node_ids(rest)
        created = self.last_line(line)
        renewed = node_ids(body[end:])  # after a new `s = F()`, uses belong to that session
        later = [u for u in uses if id(u.node) not in inside | renewed and self.location(u.node).line > created]
        if later:
            self.finding(call, f"`{name}` from {raw}() is used after the block it is made in "
                               f"(line {self.location(later[0].node).line}); close it by hand", category="leaked")
            return
        kinds = {u.use for u in uses if id(u.node) in inside}
        if "contained" in kinds:
            self.finding(call, f"`{name}` from {raw}() is not closed here, and {ESCAPES['contained']}; "
                               "left for review", category="leaked")
            return
        if kinds & {"returned", "stored"}:
            return  # handed over: the caller or the object owns it now
        closes = closes_anywhere(rest, name)
        blocking = [k for k in ("captured", "handoff", "deleted", "other") if k in kinds]
        if "yielded" in kinds and not closes:
            blocking.insert(0, "yielded")
        if blocking:
            self.finding(call, f"`{name}` from {raw}() is not closed on every path, but {ESCAPES[blocking[0]]}; "
                               "left for review", category="leaked")
            return
        rebound = [a for a in scope.assignments[name] if id(a.node) in inside]
        if rebound:
            self.finding(call, f"`{name}` is rebound after {raw}() (line {self.location(rebound[0].node).line}); "
                               "left for review", category="leaked")
            return
        if not rest:
            self.finding(call, f"`{name}` from {raw}() is never used or closed; remove it or close it",
                         category="leaked")
            return
        self._plan(call, raw, name, flavour, block, start, end, rest, closes, kinds)

    def _plan(self, call: cst.Call, raw: str, name: str, flavour: Flavour, block: cst.IndentedBlock,
              start: int, end: int, rest: list[cst.BaseStatement], closes: list[cst.CSTNode], kinds: set[str]) -> None:
        edit = _Edit(start, end, name, flavour)
        trailing = {rest[-1]} if close_call(rest[-1], name) else set()
        returned = self._unclosed_return(rest, closes)
        why = ("it is never closed" if not closes
               else f"the return at line {self.location(returned).line} can leave before the close" if returned
               else "an exception before the close leaves it open")
        function = enclosing_function(self, call)
        created = self.location(call).line
        leak = next((k for k in leaks(self, function, name) if self.location(k.node).line > created), None) \
            if function is not None else None
        applicability = UNSAFE if "returned-inside" in kinds or leak is not None else SAFE
        reason = f"`{name}` from {raw}() is not closed on every path ({why}); "
        helper = self._helper_for(call, name, flavour, rest, trailing, kinds) if applicability is SAFE else None
        if applicability is UNSAFE:
            reason += ("closing it in `finally` may break the returned value, which was given the session"
                       if "returned-inside" in kinds else f"closing it is not safe: {leak.reason(name)}")
            if not self.settings.unsafe:
                self.finding(call, f"unsafe fix available with --unsafe: {reason}", category="leaked", fix=UNSAFE)
                return
        elif helper is not None:
            edit.helper, detail = helper
            reason += f"`with {edit.helper}() as {name}:` closes it, and {detail}"
        else:
            reason += "closing it in `finally` changes nothing else"
        self.change(call, applicability, reason)
        self._edits.setdefault(block, []).append(edit)
        self._drops |= trailing if helper is not None else trailing | self._before_return(closes)

    def _unclosed_return(self, rest: list[cst.BaseStatement], closes: list[cst.CSTNode]) -> cst.CSTNode | None:
        """The first `return` with no close before it in its block or an enclosing one."""
        for node in returns_in(rest):
            current: cst.CSTNode | None = self.get_metadata(ParentNodeProvider, node, None)  # its line
            covered = False
            while current is not None and not covered:
                parent = self.get_metadata(ParentNodeProvider, current, None)
                if isinstance(parent, cst.IndentedBlock):
                    before = parent.body[:list(parent.body).index(current)]  # type: ignore[arg-type]
                    covered = any(s in closes for s in before)
                if current in rest:
                    break
                current = parent
            if not covered:
                return node
        return None

    def _before_return(self, closes: list[cst.CSTNode]) -> set[cst.BaseStatement]:
        """Closes followed only by `return <name or constant>`: `finally` closes right after that."""
        analysis = PathAnalysis(None, False, self.is_log_call, self.is_pure_call)
        found: set[cst.BaseStatement] = set()
        for close in closes:
            block = self.get_metadata(ParentNodeProvider, close, None)
            if not isinstance(block, cst.IndentedBlock):
                continue
            after = block.body[list(block.body).index(close) + 1:]
            if len(after) == 1 and m.matches(after[0], m.SimpleStatementLine(body=[m.Return()])):
                value = after[0].body[0].value  # type: ignore[attr-defined]
                if analysis.inert(value):
                    found.add(close)  # type: ignore[arg-type]
        return found

    def _helper_for(self, call: cst.Call, name: str, flavour: Flavour, rest: list[cst.BaseStatement],
                    trailing: set[cst.BaseStatement], kinds: set[str]) -> tuple[str, str] | None:
        """The sync-context helper's local name and why it fits, when it does what the code did."""
        helper = self.settings.sync_context
        if helper is None or flavour != "sync" or call.args or "yielded" in kinds:
            return None
        factory = self.project.canonical(self.settings.sync_factory) if self.settings.sync_factory else None
        if not self.canonical_names(call.func) <= self.raw_factories | {factory}:
            return None  # another factory: the helper might open a different database
        if not any(session_method(s, name, is_async=False) == "commit" for s in statements(rest)):
            return None  # the code never commits: keep its transactions as they are
        semantics = self.helper_semantics(helper)
        if semantics.closes.value is not True:
            return None
        kept = [s for s in rest if s not in trailing]
        plan = plan_session_block(self, cst.IndentedBlock(body=kept), name, helper=helper, is_async=False,
                                  semantics=semantics)
        if plan.refusal or plan.applicability is not SAFE:
            return None
        imported = self.plan_import(call, call.func, helper)
        if isinstance(imported, str):
            return None
        if imported.needed:
            if imported.anchor is None:
                AddImportsVisitor.add_needed_import(self.context, imported.module, imported.name)
            else:
                self._anchors.setdefault(imported.anchor, []).append(imported)
        for written in self.get_metadata(QualifiedNameProvider, call.func, set()):
            module, _, short = self.absolute(written.name).rpartition(".")
            if module:
                RemoveImportsVisitor.remove_unused_import(self.context, module, short)
        return imported.local_name, plan.reason

    def _recreates(self, stmt: cst.BaseStatement, name: str) -> bool:
        if not m.matches(stmt, m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name(name))],
                                                                    value=m.Call())])):
            return False
        value = stmt.body[0].value  # type: ignore[attr-defined]
        return factory_flavour(self, value) is not None

    def _already_closed(self, line: cst.SimpleStatementLine, rest: list[cst.BaseStatement], name: str) -> bool:
        if rest and (finally_closes(rest[0], name) or close_call(rest[0], name)
                     or managed_by_with(self, rest[0], name, rest[1:])):
            return True
        current: cst.CSTNode | None = line
        while current is not None and not isinstance(current, cst.FunctionDef):
            parent = self.get_metadata(ParentNodeProvider, current, None)
            if isinstance(parent, cst.Try) and current is parent.body and finally_closes(parent, name):
                return True
            current = parent
        return False

    # -- rewriting ----------------------------------------------------------------------------

    def edit_targets(self) -> list[cst.CSTNode]:
        return [*self._edits, *self._anchors, *self._drops]

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock) -> cst.IndentedBlock:
        edits = {e.start: e for e in self._edits.get(original_node, [])}
        pairs = list(zip(original_node.body, updated_node.body))
        if not edits and not any(o in self._anchors or o in self._drops for o, _ in pairs):
            return updated_node
        out: list[cst.BaseStatement] = []
        index = 0
        while index < len(pairs):
            original, updated = pairs[index]
            edit = edits.get(index)
            if edit is None:
                if original not in self._drops:
                    out.append(updated)
                for plan in {(p.module, p.name): p for p in self._anchors.get(original, [])}.values():
                    out.append(import_line(plan.module, plan.name))
                index += 1
                continue
            kept = [u for o, u in pairs[index + 1:edit.end] if o not in self._drops]
            kept = kept or [cst.SimpleStatementLine([cst.Pass()])]
            if edit.helper is not None:
                assert isinstance(updated, cst.SimpleStatementLine)
                call = updated.body[0].value  # type: ignore[attr-defined]
                item = cst.WithItem(call.with_changes(func=cst.Name(edit.helper)),
                                    asname=cst.AsName(cst.Name(edit.session)))
                kept[0] = kept[0].with_changes(leading_lines=[ln for ln in kept[0].leading_lines if ln.comment])
                out.append(cst.With(items=[item], body=cst.IndentedBlock(body=kept), leading_lines=updated.leading_lines))
            else:
                out.append(updated)
                out.append(wrap_in_finally(kept, [close_line(edit.session, edit.flavour)]))
            index = edit.end
        return updated_node.with_changes(body=out)

    INVALID = [
        Invalid(
            id="never-closed",
            before="""\
                from core.db import get_session


                def deactivate(model, cutoff):
                    session = get_session()
                    stale = session.query(model).filter(model.seen < cutoff)
                    total = stale.count()
                    stale.update({"active": False})
                    session.commit()
                    return total
                """,
            after="""\
                from core.db import get_db_session_ctx


                def deactivate(model, cutoff):
                    with get_db_session_ctx() as session:
                        stale = session.query(model).filter(model.seen < cutoff)
                        total = stale.count()
                        stale.update({"active": False})
                        session.commit()
                        return total
                """,
            expect=(Expect("SF021", "safe", "(it is never closed); `with get_db_session_ctx() as session:` closes it"),),
        ),
        Invalid(
            id="early-return-before-close",
            before="""\
                from core.db import get_session


                def has_orders(model, key):
                    session = get_session()

                    user = session.get(model, key)
                    if user is None:
                        return False
                    found = len(user.orders) > 0
                    session.close()
                    return found
                """,
            after="""\
                from core.db import get_session


                def has_orders(model, key):
                    session = get_session()

                    try:
                        user = session.get(model, key)
                        if user is None:
                            return False
                        found = len(user.orders) > 0
                        return found
                    finally:
                        session.close()
                """,
            expect=(Expect("SF021", "safe", "the return at line 9 can leave before the close"),),
        ),
        Invalid(
            id="commits-on-every-path-uses-the-helper",
            before="""\
                from init import Session


                def save(item):
                    session = Session()
                    session.add(item)
                    session.commit()
                    session.close()
                """,
            after="""\
                from core.db import get_db_session_ctx


                def save(item):
                    with get_db_session_ctx() as session:
                        session.add(item)
                        session.commit()
                """,
            expect=(
                Expect("SF021", "safe", "an exception before the close leaves it open); `with get_db_session_ctx()"),
                Expect("SF003", "safe", ""),
                Expect("SF001", "safe", ""),
            ),
        ),
        Invalid(
            id="reads-only-keeps-try-finally",
            before="""\
                from core.db import get_session


                def count(model):
                    session = get_session()
                    total = session.query(model).count()
                    session.close()
                    return total
                """,
            after="""\
                from core.db import get_session


                def count(model):
                    session = get_session()
                    try:
                        total = session.query(model).count()
                        return total
                    finally:
                        session.close()
                """,
            expect=(Expect("SF021", "safe", "(an exception before the close leaves it open); closing it in"),),
        ),
        Invalid(
            id="try-except-gains-finally",
            before="""\
                from core.db import get_session


                def order_count(model, key):
                    session = get_session()
                    try:
                        return len(session.get(model, key).orders)
                    except AttributeError:
                        return 0
                """,
            after="""\
                from core.db import get_session


                def order_count(model, key):
                    session = get_session()
                    try:
                        return len(session.get(model, key).orders)
                    except AttributeError:
                        return 0
                    finally:
                        session.close()
                """,
            expect=(Expect("SF021", "safe", "(it is never closed); closing it in `finally`"),),
        ),
        Invalid(
            id="sessionmaker-in-a-loop",
            before="""\
                from sqlalchemy import create_engine
                from sqlalchemy.orm import sessionmaker

                SessionLocal = sessionmaker(bind=create_engine("sqlite://"))


                def touch_all(items):
                    for item in items:
                        db = SessionLocal()
                        db.merge(item)
                        db.commit()
                """,
            after="""\
                from sqlalchemy import create_engine
                from sqlalchemy.orm import sessionmaker

                SessionLocal = sessionmaker(bind=create_engine("sqlite://"))


                def touch_all(items):
                    for item in items:
                        db = SessionLocal()
                        try:
                            db.merge(item)
                            db.commit()
                        finally:
                            db.close()
                """,
            expect=(Expect("SF021", "safe", "`db` from SessionLocal() is not closed"),),
        ),
        Invalid(
            id="dependency-without-finally",
            before="""\
                from core.db import get_session


                def get_db():
                    db = get_session()
                    yield db
                    db.close()
                """,
            after="""\
                from core.db import get_session


                def get_db():
                    db = get_session()
                    try:
                        yield db
                    finally:
                        db.close()
                """,
            expect=(Expect("SF021", "safe", "an exception before the close"),),
        ),
        Invalid(
            id="async-session-awaits-close",
            before="""\
                from core.db import async_session


                async def save(item):
                    session = async_session()
                    await session.merge(item)
                    await session.commit()
                """,
            after="""\
                from core.db import async_session


                async def save(item):
                    session = async_session()
                    try:
                        await session.merge(item)
                        await session.commit()
                    finally:
                        await session.close()
                """,
            expect=(Expect("SF021", "safe", "never closed"),),
        ),
        Invalid(
            id="returned-value-keeps-session",
            before="""\
                from core.db import get_session


                def repository(factory):
                    session = get_session()
                    return factory(session)
                """,
            after=None,
            expect=(Expect("SF021", "report", "unsafe fix available with --unsafe"),),
        ),
        Invalid(
            id="returned-value-keeps-session-unsafe",
            before="""\
                from core.db import get_session


                def repository(factory):
                    session = get_session()
                    return factory(session)
                """,
            after="""\
                from core.db import get_session


                def repository(factory):
                    session = get_session()
                    try:
                        return factory(session)
                    finally:
                        session.close()
                """,
            expect=(Expect("SF021", "unsafe", "may break the returned value"),),
            options={"unsafe": True},
        ),
        Invalid(
            id="returns-loaded-objects",
            before="""\
                from core.db import get_session


                def active_users(model):
                    session = get_session()
                    users = session.query(model).filter(model.active).all()
                    return users
                """,
            after=None,
            expect=(Expect("SF021", "report", "it returns `users`, loaded from `session` at line 6; after the close, "
                                              "ORM objects in it are detached"),),
        ),
        Invalid(
            id="returns-a-result-unsafe",
            before="""\
                from core.db import get_session


                def run(statement):
                    session = get_session()
                    return session.execute(statement)
                """,
            after="""\
                from core.db import get_session


                def run(statement):
                    session = get_session()
                    try:
                        return session.execute(statement)
                    finally:
                        session.close()
                """,
            expect=(Expect("SF021", "unsafe", "it returns `session.execute(statement)`, read through `session`"),),
            options={"unsafe": True},
        ),
        Invalid(
            id="put-into-a-container",
            before="""\
                from core.db import get_session


                def open_for(sessions):
                    session = get_session()
                    sessions.append(session)
                """,
            after=None,
            expect=(Expect("SF021", "report", "it is put into a container or onto an object"),),
        ),
        Invalid(
            id="captured-by-a-callback",
            before="""\
                from core.db import get_session


                def later(schedule, item):
                    session = get_session()
                    schedule(lambda: session.add(item))
                """,
            after=None,
            expect=(Expect("SF021", "report", "a nested function or lambda keeps it"),),
        ),
        Invalid(
            id="used-after-its-block",
            before="""\
                from core.db import get_session


                def load(flag, model):
                    if flag:
                        session = get_session()
                    return session.query(model).all()
                """,
            after=None,
            expect=(Expect("SF021", "report", "used after the block it is made in (line 7)"),),
        ),
    ]
    VALID = [
        Valid(
            id="try-finally-close",
            code="""\
                from core.db import get_session


                def load(model, key):
                    session = get_session()
                    try:
                        return session.get(model, key)
                    finally:
                        session.close()
                """,
        ),
        Valid(
            id="with-blocks",
            code="""\
                from contextlib import closing

                from core.db import get_session


                def load(model, key):
                    session = get_session()
                    with session:
                        return session.get(model, key)


                def load_closing(model, key):
                    session = get_session()
                    with closing(session):
                        return session.get(model, key)
                """,
        ),
        Valid(
            id="fastapi-dependency",
            code="""\
                from sqlalchemy import create_engine
                from sqlalchemy.orm import sessionmaker

                SessionLocal = sessionmaker(bind=create_engine("sqlite://"))


                def get_db():
                    db = SessionLocal()
                    try:
                        yield db
                    finally:
                        db.close()
                """,
        ),
        Valid(
            id="returned-to-the-caller",
            code="""\
                from core.db import get_session


                def new_session(tag):
                    session = get_session()
                    session.info["tag"] = tag
                    return session
                """,
        ),
        Valid(
            id="stored-on-self",
            code="""\
                from core.db import get_session


                class Repository:
                    def __init__(self):
                        self.session = get_session()

                    def open(self):
                        session = get_session()
                        self.other = session

                    def close(self):
                        self.session.close()
                """,
        ),
        Valid(
            id="begin-right-after-creation",
            code="""\
                from core.db import get_session


                def save(item):
                    session = get_session()
                    with session.begin():
                        session.add(item)
                    session.close()
                """,
        ),
        Valid(
            id="created-inside-try-closed-in-finally",
            code="""\
                from core.db import get_session


                def save(item):
                    session = None
                    try:
                        session = get_session()
                        session.add(item)
                        session.commit()
                    finally:
                        if session is not None:
                            session.close()
                """,
        ),
        Valid(
            id="not-a-database-session",
            code="""\
                import requests


                def fetch(url):
                    session = requests.Session()
                    return session.get(url).text
                """,
        ),
    ]


def _is_param(function: cst.FunctionDef, name: str) -> bool:
    params = function.params
    every = [*params.posonly_params, *params.params, *params.kwonly_params]
    for star in (params.star_arg, params.star_kwarg):
        if isinstance(star, cst.Param):
            every.append(star)
    return any(p.name.value == name for p in every)

