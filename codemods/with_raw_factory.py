"""SF002 with-raw-factory: `with Session() as s:` -> `with <sync-context>() as s:`."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m
from libcst.codemod.visitors import AddImportsVisitor

from sessionfix.flow import PathAnalysis, first_dirty_exit, session_method
from sessionfix.model import Applicability
from sessionfix.rule import Expect, ImportPlan, Invalid, Rule, Valid, import_line
from sessionfix.sessionblock import SessionBlockPlan, plan_session_block

SAFE, UNSAFE, REPORT = Applicability.SAFE, Applicability.UNSAFE, Applicability.REPORT


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
    `--unsafe`. A factory called with arguments, nested inside other context managers in the
    same `with`, or whose helper name is taken is *reported* only.
    """

    CODE = "SF002"
    NAME = "with-raw-factory"
    SUMMARY = "Use the project's session helper instead of a raw factory in `with`"
    APPLICABILITIES = (SAFE, UNSAFE, REPORT)

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
        for found in m.findall(node, m.With()):
            assert isinstance(found, cst.With)
            self._visit_with(found)

    def _visit_with(self, node: cst.With) -> None:
        if bool(node.asynchronous) != self.IS_ASYNC:
            return
        for position, item in enumerate(node.items):
            call = item.item
            if isinstance(call, cst.Call) and self.is_raw_factory(call.func):
                self._consider(node, position, call)
                return

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

    VALID = []
    INVALID = []
