"""SF003 bare-raw-factory: `s = Session()` -> `s = <sync-factory>()`."""

from __future__ import annotations

import libcst as cst
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import ParentNodeProvider

from sessionfix.config import Settings
from sessionfix.index import ASYNC_SESSIONMAKERS
from sessionfix.model import Applicability
from sessionfix.rule import Expect, ImportPlan, Invalid, PrefilterNeeds, Rule, Valid, import_line

SAFE, REPORT = Applicability.SAFE, Applicability.REPORT


class BareRawFactory(Rule):
    """
    ## What it does
    Replaces a raw session factory called outside a `with` (`session = Session()`) by the
    project's plain factory (`session = get_session()`).

    ## Why is this bad?
    The raw factory bypasses the project's configured way of making sessions, and breaks
    outright when its module is removed (`from init import Session` after `init.py` is gone).

    ## Example
    {example}

    ## Fix safety
    Both calls return a new session that the caller must close, so ownership and behaviour are
    the same: *safe*. Whether the session is then closed on every path is a separate question,
    answered by the ownership rules. A factory called with arguments, or a project without a
    `sync-factory`, is *reported* only.
    """

    CODE = "SF003"
    NAME = "bare-raw-factory"
    SUMMARY = "Make sessions with the project's plain factory, not a raw one"
    APPLICABILITIES = (SAFE, REPORT)
    ORDER = 30
    PLANS_IN_VISIT_MODULE = True

    @classmethod
    def prefilter_needs(cls, settings: Settings) -> PrefilterNeeds:
        """Every site is a call or an import of a configured raw factory."""
        return PrefilterNeeds(names=frozenset(settings.raw_factories))

    def visit_Module(self, node: cst.Module) -> None:
        self._replace: dict[cst.Call, str] = {}
        self._anchors: dict[cst.SimpleStatementLine, list[ImportPlan]] = {}
        # Decide every site before transforming: an anchor import can precede its call.
        for found in self.nodes_of(cst.Call):
            assert isinstance(found, cst.Call)
            self._visit_call(found)

    def _visit_call(self, node: cst.Call) -> None:
        if not self.is_raw_factory(node.func):
            return
        parent = self.get_metadata(ParentNodeProvider, node, None)
        if isinstance(parent, cst.WithItem):
            return  # SF002 / SF010
        if isinstance(parent, cst.Await):
            return
        raw = cst.Module([]).code_for_node(node.func)
        helper = self.settings.sync_factory
        if helper is None:
            self.finding(node, f"{raw}() is a raw session factory; set sync-factory to rewrite it",
                         category="raw-factory")
            return
        if node.args:
            self.finding(node, f"{raw}() is called with arguments; {helper}() takes none, so it is left for review",
                         category="raw-factory")
            return
        if self._is_async_factory(node.func):
            self.finding(node, f"{raw}() makes an AsyncSession; {helper}() is a sync factory, so it is left "
                               "for review", category="raw-factory")
            return
        imported = self.plan_import(node, node.func, helper)
        if isinstance(imported, str):
            self.finding(node, imported, category="raw-factory")
            return
        self._replace[node] = imported.local_name
        if imported.needed:
            if imported.anchor is None:
                AddImportsVisitor.add_needed_import(self.context, imported.module, imported.name)
            else:
                self._anchors.setdefault(imported.anchor, []).append(imported)
        self.change(node, SAFE, f"{raw}() and {helper}() both return a new session the caller closes")

    def _is_async_factory(self, func: cst.BaseExpression) -> bool:
        return any(
            self.project.made_by(name) in ASYNC_SESSIONMAKERS
            for name in self.canonical_names(func)
        )

    def edit_targets(self) -> list[cst.CSTNode]:
        return [*self._replace, *self._anchors]

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.Call:
        name = self._replace.get(original_node)
        return updated_node.with_changes(func=cst.Name(name)) if name else updated_node

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement]:
        extra = self._anchors.get(original_node)
        if not extra:
            return updated_node
        lines: list[cst.BaseStatement] = [updated_node]
        lines += [import_line(p.module, p.name) for p in {(p.module, p.name): p for p in extra}.values()]
        return cst.FlattenSentinel(lines)

    INVALID = [
        Invalid(
            id="bare-call",
            before="""\
                from init import Session


                def load(key):
                    session = Session()
                    try:
                        return session.get(int, key)
                    finally:
                        session.close()
                """,
            after="""\
                from core.db import get_session


                def load(key):
                    session = get_session()
                    try:
                        return session.get(int, key)
                    finally:
                        session.close()
                """,
            expect=(Expect("SF003", "safe", "both return a new session"), Expect("SF001", "safe", "")),
        ),
        Invalid(
            id="arguments-are-reported",
            before="""\
                from init import Session


                def tenant(engine):
                    return Session(bind=engine)
                """,
            after=None,
            expect=(Expect("SF003", "report", "called with arguments"), Expect("SF001", "report", "")),
        ),
        Invalid(
            id="async-factory-is-reported",
            before="""\
                from core.db import async_session


                async def load():
                    return async_session()
                """,
            after=None,
            expect=(Expect("SF003", "report", "makes an AsyncSession"),),
        ),
    ]
    VALID = [
        Valid(
            id="already-the-factory",
            code="""\
                from core.db import get_session


                def load():
                    return get_session()
                """,
        ),
        Valid(
            id="requests-session",
            code="""\
                from requests import Session


                def client():
                    return Session()
                """,
        ),
    ]
