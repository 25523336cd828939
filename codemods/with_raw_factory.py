"""SF002 with-raw-factory: `with Session() as s:` -> `with <sync-context>() as s:`."""

from __future__ import annotations

import libcst as cst
from libcst.codemod.visitors import AddImportsVisitor

from sessionfix.aliasing import inside_definition_of, wears_helper_name
from sessionfix.config import Settings
from sessionfix.model import Applicability
from sessionfix.rule import Expect, ImportPlan, Invalid, PrefilterNeeds, Rule, Valid, import_line
from sessionfix.sessionblock import SessionBlockPlan, plan_session_block

SAFE, UNSAFE, REPORT = Applicability.SAFE, Applicability.UNSAFE, Applicability.REPORT

#: a helper that rolls back and logs but never re-raises: the caller would see success
SWALLOWING_DB = """\
import logging
from contextlib import contextmanager

from sqlalchemy.orm import sessionmaker

SessionFactory = sessionmaker()
logger = logging.getLogger(__name__)


@contextmanager
def get_db_session_ctx():
    session = SessionFactory()
    try:
        yield session
        session.commit()
    except Exception as e:
        session.rollback()
        logger.error("swallowed %s", e)
    finally:
        session.close()
"""


class WithRawFactory(Rule):
    """
    ## What it does
    Replaces a raw session factory used as a context manager (`with Session() as s:`) by the
    project's session helper (`with get_db_session_ctx() as s:`), then removes the `commit()`
    and `rollback()` calls the helper makes redundant.

    ## Why is this bad?
    A raw factory is a second, unmanaged way to open sessions: it bypasses what the project's
    helper guarantees (commit on success, rollback on error, close), and when its module is
    deleted in a refactor every such block breaks at import time (`from init import Session`).

    ## Example
    {example}

    ## Fix safety
    The raw factory's context manager only closes; the helper also commits on a normal exit.
    The rewrite is *safe* when every normal path out of the block already ends with
    `commit()` or `rollback()` and does nothing with the database afterwards, so the helper's
    commit has nothing to do; exceptional exits are equivalent (rollback vs. close both discard).
    Only then are redundant calls removed: a `commit()` that is the last statement executed on
    its path, and a `rollback()` in an `except` that re-raises out of the block (a `try` left
    as a pure re-raise goes too). A commit inside a loop, followed by more work, or guarded by
    an `except` that swallows errors is kept, and so is the rollback of a swallowing `except`:
    without it the helper would commit the partial work.
    A block that can leave work uncommitted (writes, reads that load objects, calls that take
    the session) would now be committed and its objects expired: *unsafe*, applied only with
    `--unsafe`. The raw factory lets the block's exceptions reach the caller; a helper that
    swallows them (an `except` that does not re-raise, an `__exit__` that returns True) or
    replaces them (`raise DatabaseError(...) from e`) would change that, so any swap to it is
    *unsafe*, with the helper's file:line. A factory called with arguments, nested inside other
    context managers in the same `with`, or whose helper name is taken is *reported* only.

    ## Known problems
    Statements after the last commit count as harmless when they are logging calls whose
    arguments are names, constants and f-strings. Formatting an ORM object there can reload it
    (through its `__repr__`); the helper's commit on exit then expires it again, so reading its
    attributes after the `with` would raise `DetachedInstanceError` where it did not before.
    """

    CODE = "SF002"
    NAME = "with-raw-factory"
    SUMMARY = "Use the project's session helper instead of a raw factory in `with`"
    APPLICABILITIES = (SAFE, UNSAFE, REPORT)
    ORDER = 20
    PLANS_IN_VISIT_MODULE = True

    @classmethod
    def prefilter_needs(cls, settings: Settings) -> PrefilterNeeds:
        """Every site is a call or an import of a configured raw factory."""
        return PrefilterNeeds(names=frozenset(settings.raw_factories))

    IS_ASYNC = False

    def helper_name(self) -> str | None:
        return self.settings.sync_context

    def option_name(self) -> str:
        return "sync-context"

    def visit_Module(self, node: cst.Module) -> None:
        self._plans: dict[cst.With, SessionBlockPlan] = {}
        self._removals: dict[cst.CSTNode, str] = {}
        self._unwrap: set[cst.CSTNode] = set()
        self._anchors: dict[cst.SimpleStatementLine, list[ImportPlan]] = {}
        # Decide every site before transforming: an anchor import can precede its `with`.
        for found in self.nodes_of(cst.With):
            assert isinstance(found, cst.With)
            self._visit_with(found)

    def _visit_with(self, node: cst.With) -> None:
        if bool(node.asynchronous) != self.IS_ASYNC:
            return
        for position, item in enumerate(node.items):
            call = item.item
            if isinstance(call, cst.Call) and self.is_raw_factory(call.func):
                if not self._left_alone(node, call):
                    self._consider(node, position, call)
                return

    def _left_alone(self, node: cst.With, call: cst.Call) -> bool:
        """Sites that are not this rule's to change."""
        helper = self.helper_name()
        if wears_helper_name(self, call.func, helper) is not None:
            return True  # SF011 rewrites the import and every use together
        helpers = [helper, self.settings.sync_context, self.settings.async_context]
        if inside_definition_of(self, node, helpers) is not None:
            return True  # the helper's own body: the raw factory belongs there
        if helper is not None and self.project.canonical(helper) in self.canonical_names(call.func):
            return True  # already the helper
        return _yields(node.body)  # a session provider itself (a FastAPI `yield` dependency)

    def _consider(self, node: cst.With, position: int, call: cst.Call) -> None:
        raw = cst.Module([]).code_for_node(call.func)
        helper = self.helper_name()
        if helper is None:
            self.finding(call, f"{raw}() is a raw session factory; set {self.option_name()} to rewrite it",
                         category="raw-factory")
            return
        if call.args:
            self.finding(call, f"{raw}() is called with arguments; {helper}() takes none, so it is left for review",
                         category="raw-factory")
            return
        if position != len(node.items) - 1:
            self.finding(call, f"{raw}() is not the innermost context manager of this `with`; "
                               "the ones inside it could swallow errors before the helper sees them",
                         category="raw-factory")
            return
        target = node.items[position].asname
        if target is not None and not isinstance(target.name, cst.Name):
            self.finding(call, f"the session from {raw}() is unpacked; left for review", category="raw-factory")
            return
        session = target.name.value if target is not None else None  # type: ignore[union-attr]
        imported = self.plan_import(node, call.func, helper)
        if isinstance(imported, str):
            self.finding(call, imported, category="raw-factory")
            return
        plan = plan_session_block(self, node.body, session, helper=helper, is_async=self.IS_ASYNC)
        if plan.refusal:
            self.finding(call, plan.refusal, category="raw-factory")
            return
        if plan.applicability is UNSAFE and not self.settings.unsafe:
            self.finding(call, f"unsafe fix available with --unsafe: {plan.reason}", category="raw-factory", fix=UNSAFE)
            return
        self.change(call, plan.applicability, plan.reason)
        for removed, reason in plan.removals.items():
            self.change(removed, plan.applicability, reason)
            self._removals[removed] = reason
        self._unwrap |= plan.unwrap
        for unwrapped in plan.unwrap:
            self.change(unwrapped, plan.applicability, "removed a try/except that only re-raised; "
                        f"{helper} rolls back on error")
        self._plans[node] = plan
        if imported.needed:
            if imported.anchor is None:
                AddImportsVisitor.add_needed_import(self.context, imported.module, imported.name)
            else:
                self._anchors.setdefault(imported.anchor, []).append(imported)
        plan.replacement = imported.local_name

    # -- rewriting ----------------------------------------------------------------------------

    def edit_targets(self) -> list[cst.CSTNode]:
        return [*self._plans, *self._removals, *self._unwrap, *self._anchors]

    def leave_With(self, original_node: cst.With, updated_node: cst.With) -> cst.With:
        plan = self._plans.get(original_node)
        if plan is None:
            return updated_node
        last = updated_node.items[-1]
        call = last.item
        assert isinstance(call, cst.Call)
        new_call = call.with_changes(func=cst.Name(plan.replacement))
        return updated_node.with_changes(items=[*updated_node.items[:-1], last.with_changes(item=new_call)])

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        if original_node in self._removals:
            return cst.RemoveFromParent()
        extra = self._anchors.get(original_node)
        if extra:
            seen: list[cst.BaseStatement] = [updated_node]
            for plan in {(p.module, p.name): p for p in extra}.values():
                seen.append(import_line(plan.module, plan.name))
            return cst.FlattenSentinel(seen)
        return updated_node

    def leave_Try(self, original_node: cst.Try, updated_node: cst.Try) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement]:
        if original_node not in self._unwrap:
            return updated_node
        body = list(updated_node.body.body)
        if body:
            first = body[0]
            body[0] = first.with_changes(leading_lines=[*updated_node.leading_lines, *first.leading_lines])
        return cst.FlattenSentinel(body)

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock) -> cst.IndentedBlock:
        if updated_node.body:
            return updated_node
        return updated_node.with_changes(body=[cst.SimpleStatementLine(body=[cst.Pass()])])

    INVALID = [
        Invalid(
            id="commit-at-end",
            before="""\
                from init import Session


                def notify(text):
                    with Session() as session:
                        session.add(text)
                        session.commit()
                """,
            after="""\
                from core.db import get_db_session_ctx


                def notify(text):
                    with get_db_session_ctx() as session:
                        session.add(text)
                """,
            expect=(
                Expect("SF002", "safe", "ends with commit/rollback"),
                Expect("SF002", "safe", "removed session.commit()"),
                Expect("SF001", "safe", "init does not exist"),
            ),
        ),
        Invalid(
            id="swallowing-except-keeps-commit-and-rollback",
            before="""\
                import logging

                from init import Session

                logger = logging.getLogger(__name__)


                def monthly(work):
                    with Session() as session:
                        try:
                            session.add(work)
                            session.commit()
                        except Exception as e:
                            session.rollback()
                            logger.error(f"Error: {e}")
                """,
            after="""\
                import logging

                from core.db import get_db_session_ctx

                logger = logging.getLogger(__name__)


                def monthly(work):
                    with get_db_session_ctx() as session:
                        try:
                            session.add(work)
                            session.commit()
                        except Exception as e:
                            session.rollback()
                            logger.error(f"Error: {e}")
                """,
            expect=(
                Expect("SF002", "safe", "ends with commit/rollback"),
                Expect("SF001", "safe", "init does not exist"),
            ),
        ),
        Invalid(
            id="reraising-except-goes",
            before="""\
                from init import Session


                def strict(work):
                    with Session() as session:
                        try:
                            session.add(work)
                            session.commit()
                        except Exception:
                            session.rollback()
                            raise
                """,
            after="""\
                from core.db import get_db_session_ctx


                def strict(work):
                    with get_db_session_ctx() as session:
                        session.add(work)
                """,
            expect=(
                Expect("SF002", "safe", "ends with commit/rollback"),
                Expect("SF002", "safe", "removed session.rollback()"),
                Expect("SF002", "safe", "only re-raised"),
                Expect("SF002", "safe", "removed session.commit()"),
                Expect("SF001", "safe", "init does not exist"),
            ),
        ),
        Invalid(
            id="commit-in-loop-kept",
            before="""\
                from init import Session


                def import_rows(rows):
                    with Session() as session:
                        for row in rows:
                            session.add(row)
                            session.commit()
                """,
            after="""\
                from core.db import get_db_session_ctx


                def import_rows(rows):
                    with get_db_session_ctx() as session:
                        for row in rows:
                            session.add(row)
                            session.commit()
                """,
            expect=(Expect("SF002", "safe", "ends with commit/rollback"), Expect("SF001", "safe", "")),
        ),
        Invalid(
            id="commit-followed-by-logging-kept",
            before="""\
                import logging

                from init import Session

                log = logging.getLogger(__name__)


                def save(item):
                    with Session() as session:
                        session.add(item)
                        session.commit()
                        log.info("saved")
                """,
            after="""\
                import logging

                from core.db import get_db_session_ctx

                log = logging.getLogger(__name__)


                def save(item):
                    with get_db_session_ctx() as session:
                        session.add(item)
                        session.commit()
                        log.info("saved")
                """,
            expect=(Expect("SF002", "safe", "ends with commit/rollback"), Expect("SF001", "safe", "")),
        ),
        Invalid(
            id="writes-without-commit-is-unsafe",
            before="""\
                from init import Session


                def draft(item):
                    with Session() as session:
                        session.add(item)
                """,
            after=None,
            expect=(
                Expect("SF002", "report", "would commit it on exit"),
                Expect("SF001", "report", "still used"),
            ),
        ),
        Invalid(
            id="writes-without-commit-with-unsafe",
            before="""\
                from init import Session


                def draft(item):
                    with Session() as session:
                        session.add(item)
                """,
            after="""\
                from core.db import get_db_session_ctx


                def draft(item):
                    with get_db_session_ctx() as session:
                        session.add(item)
                """,
            expect=(Expect("SF002", "unsafe", "would commit it on exit"), Expect("SF001", "safe", "")),
            options={"unsafe": True},
        ),
        Invalid(
            id="returned-objects-would-expire",
            before="""\
                from init import Session


                def users(model):
                    with Session() as session:
                        return session.query(model).all()
                """,
            after=None,
            expect=(Expect("SF002", "report", "expire loaded objects"), Expect("SF001", "report", "")),
        ),
        Invalid(
            id="local-import-in-except-stays-local",
            before="""\
                def run(job):
                    try:
                        job()
                    except Exception:
                        from init import Session
                        with Session() as session:
                            session.add(job)
                            session.commit()
                        raise
                """,
            after="""\
                def run(job):
                    try:
                        job()
                    except Exception:
                        from core.db import get_db_session_ctx
                        with get_db_session_ctx() as session:
                            session.add(job)
                        raise
                """,
            expect=(
                Expect("SF002", "safe", "ends with commit/rollback"),
                Expect("SF002", "safe", "removed session.commit()"),
                Expect("SF001", "safe", "init does not exist"),
            ),
        ),
        Invalid(
            id="one-line-body",
            before="""\
                from init import Session


                def save(item):
                    with Session() as session: session.add(item); session.commit()
                """,
            after="""\
                from core.db import get_db_session_ctx


                def save(item):
                    with get_db_session_ctx() as session: session.add(item); session.commit()
                """,
            expect=(Expect("SF002", "safe", "ends with commit/rollback"), Expect("SF001", "safe", "")),
        ),
        Invalid(
            id="comments-keep-the-try",
            before="""\
                from init import Session


                def save(item):
                    with Session() as session:
                        try:
                            session.add(item)
                            session.commit()
                        except Exception:  # any failure
                            session.rollback()
                            raise
                """,
            after="""\
                from core.db import get_db_session_ctx


                def save(item):
                    with get_db_session_ctx() as session:
                        try:
                            session.add(item)
                            session.commit()
                        except Exception:  # any failure
                            raise
                """,
            expect=(
                Expect("SF002", "safe", "ends with commit/rollback"),
                Expect("SF002", "safe", "removed session.rollback()"),
                Expect("SF001", "safe", ""),
            ),
        ),
        Invalid(
            id="return-in-finally-is-unsafe",
            before="""\
                from init import Session


                def save(item):
                    with Session() as session:
                        try:
                            session.add(item)
                            session.commit()
                        finally:
                            return item
                """,
            after=None,
            expect=(Expect("SF002", "report", "can leave work uncommitted"), Expect("SF001", "report", "")),
        ),
        Invalid(
            id="swallowing-helper-is-unsafe",
            before="""\
                from core.db import SessionFactory as Session


                def strict(work):
                    with Session() as session:
                        try:
                            session.add(work)
                            session.commit()
                        except Exception:
                            session.rollback()
                            raise
                """,
            after=None,
            expect=(Expect("SF002", "report", "swallows the caller's exception: core/db.py:16"),),
            files={
                "pyproject.toml": '[tool.sessionfix]\nsync-context = "core.db.get_db_session_ctx"\n'
                                  'raw-factories = ["core.db.SessionFactory"]\n',
                "core/__init__.py": "",
                "core/db.py": SWALLOWING_DB,
            },
        ),
        Invalid(
            id="arguments-are-reported",
            before="""\
                from init import Session


                def tenant(engine):
                    with Session(bind=engine) as session:
                        session.commit()
                """,
            after=None,
            expect=(Expect("SF002", "report", "called with arguments"), Expect("SF001", "report", "")),
        ),
    ]
    VALID = [
        Valid(
            id="type-hint-only",
            code="""\
                from sqlalchemy.orm import Session


                def handler(session: Session) -> int:
                    return session.query(int).count()
                """,
        ),
        Valid(
            id="requests-session",
            code="""\
                import requests


                def fetch(url):
                    with requests.Session() as session:
                        return session.get(url)
                """,
        ),
        Valid(
            id="parameter-shadows-factory",
            code="""\
                def run(Session):
                    with Session() as session:
                        session.add(1)
                """,
        ),
        Valid(
            id="sessionmaker-begin-already-commits",
            code="""\
                from db import Session


                def save(item):
                    with Session.begin() as session:
                        session.add(item)
                """,
            files={
                "pyproject.toml": """\
                    [tool.sessionfix]
                    sync-context = "db.get_ctx"
                    raw-factories = ["db.Session"]
                    """,
                "db.py": """\
                    from contextlib import contextmanager

                    from sqlalchemy.orm import sessionmaker

                    Session = sessionmaker()


                    @contextmanager
                    def get_ctx():
                        with Session.begin() as s:
                            yield s
                    """,
            },
        ),
        Valid(
            id="yield-dependency-is-a-provider",
            code="""\
                from init import Session


                def get_db():
                    with Session() as session:
                        yield session
                """,
        ),
        Valid(
            id="already-the-helper",
            code="""\
                from core.db import get_db_session_ctx


                def save(item):
                    with get_db_session_ctx() as session:
                        session.add(item)
                """,
        ),
    ]


def _yields(body: cst.BaseSuite) -> bool:
    """A `yield` in the block, outside nested functions: the block hands its session out."""

    class Finder(cst.CSTVisitor):
        found = False

        def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
            return False

        def visit_Lambda(self, node: cst.Lambda) -> bool:
            return False

        def visit_Yield(self, node: cst.Yield) -> None:
            self.found = True

    finder = Finder()
    body.visit(finder)
    return finder.found
