"""SF022 unbound-session: `sqlalchemy.orm.Session()` with no bind cannot run a query."""

from __future__ import annotations

import libcst as cst
from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor
from libcst.metadata import QualifiedNameProvider

from sessionfix.config import Settings
from sessionfix.model import Applicability
from sessionfix.ownership import ASYNC_SESSIONS, SESSIONS, has_bind
from sessionfix.rule import Expect, Invalid, PrefilterNeeds, Rule, Valid

UNSAFE, REPORT = Applicability.UNSAFE, Applicability.REPORT


class UnboundSession(Rule):
    """
    ## What it does
    Reports `Session()` (SQLAlchemy's class, called directly) with no `bind`, and suggests the
    project's session factory. With `--unsafe` and a configured `sync-factory`, a bare
    `Session()` becomes `<sync-factory>()`.

    ## Why is this bad?
    A session with no bind has no engine: its first query raises `UnboundExecutionError`. The
    class is meant for type hints; sessions come from a `sessionmaker` or the project's factory.

    ## Example
    {example}

    ## Fix safety
    Report only by default. The rewrite is *unsafe*: code that failed on its first query now
    reaches the database, and a session bound later (`session.bind = engine`) would now use the
    factory's engine until then. `Session(...)` with other arguments and `AsyncSession()` are
    reported with no fix, since the factory takes no arguments and makes sync sessions.
    """

    CODE = "SF022"
    NAME = "unbound-session"
    SUMMARY = "Report Session() made with no bind; suggest the project's factory"
    APPLICABILITIES = (UNSAFE, REPORT)
    ORDER = 35
    PLANS_IN_VISIT_MODULE = True

    @classmethod
    def prefilter_needs(cls, settings: Settings) -> PrefilterNeeds:
        """Sites call SQLAlchemy's Session / AsyncSession class."""
        return PrefilterNeeds(names=SESSIONS | ASYNC_SESSIONS, used_only=True)

    def visit_Module(self, node: cst.Module) -> None:
        self._replace: dict[cst.Call, str] = {}
        for call in self.nodes_of(cst.Call):
            assert isinstance(call, cst.Call)
            self._consider(call)

    def _consider(self, call: cst.Call) -> None:
        names = self.canonical_names(call.func)
        if not names or not (names <= SESSIONS or names <= ASYNC_SESSIONS) or has_bind(call) is not False:
            return
        shown = cst.Module([]).code_for_node(call.func)
        problem = f"{shown}() has no bind, so its first query raises UnboundExecutionError"
        factory = self.settings.sync_factory
        if names <= ASYNC_SESSIONS:
            self.finding(call, f"{problem}; make it with the project's async_sessionmaker", category="unbound")
            return
        if factory is None:
            self.finding(call, f"{problem}; make it with the project's session factory (set sync-factory "
                               "to have it suggested)", category="unbound")
            return
        if call.args:
            self.finding(call, f"{problem}; use {factory}() (it takes no arguments, so this is left for review)",
                         category="unbound")
            return
        reason = f"{problem}; {factory}() makes a bound one, so code that failed now reaches the database"
        if not self.settings.unsafe:
            self.finding(call, f"unsafe fix available with --unsafe: {reason}", category="unbound", fix=UNSAFE)
            return
        imported = self.plan_import(call, call.func, factory)
        if isinstance(imported, str):
            self.finding(call, f"{problem}; {imported}", category="unbound")
            return
        if imported.needed:
            AddImportsVisitor.add_needed_import(self.context, imported.module, imported.name)
        for written in self.get_metadata(QualifiedNameProvider, call.func, set()):
            module, _, name = written.name.rpartition(".")
            if module:
                RemoveImportsVisitor.remove_unused_import(self.context, module, name)
        self._replace[call] = imported.local_name
        self.change(call, UNSAFE, reason)

    def edit_targets(self) -> list[cst.CSTNode]:
        return list(self._replace)

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        name = self._replace.get(original_node)
        return updated_node.with_changes(func=cst.Name(name)) if name else updated_node

    INVALID = [
        Invalid(
            id="no-bind",
            before="""\
                from sqlalchemy.orm import Session


                def audit(entry):
                    with Session() as session:
                        session.add(entry)
                        session.commit()
                """,
            after=None,
            expect=(Expect("SF022", "report", "unsafe fix available with --unsafe: Session() has no bind"),),
        ),
        Invalid(
            id="no-bind-unsafe",
            before="""\
                from sqlalchemy.orm import Session


                def audit(entry):
                    with Session() as session:
                        session.add(entry)
                        session.commit()
                """,
            after="""\
                from core.db import get_session


                def audit(entry):
                    with get_session() as session:
                        session.add(entry)
                        session.commit()
                """,
            expect=(Expect("SF022", "unsafe", "core.db.get_session() makes a bound one"),),
            options={"unsafe": True},
        ),
        Invalid(
            id="type-hint-import-stays",
            before="""\
                import sqlalchemy.orm


                def audit(entry) -> sqlalchemy.orm.Session:
                    session = sqlalchemy.orm.Session(autoflush=False)
                    session.add(entry)
                    return session
                """,
            after=None,
            expect=(Expect("SF022", "report", "it takes no arguments, so this is left for review"),),
            options={"unsafe": True},
        ),
    ]
    VALID = [
        Valid(
            id="bound-session",
            code="""\
                from sqlalchemy import create_engine
                from sqlalchemy.orm import Session

                engine = create_engine("sqlite://")


                def audit(entry):
                    with Session(engine) as session, Session(bind=engine) as other:
                        session.add(entry)
                        other.add(entry)
                """,
        ),
        Valid(
            id="type-hint-only",
            code="""\
                from sqlalchemy.orm import Session


                def audit(session: Session, entry) -> None:
                    session.add(entry)
                """,
        ),
    ]
