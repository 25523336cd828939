"""Deciding what a block owned by a session helper may lose: shared by SF002 and SF010.

Given the body of `with <raw>() as s:` and what the helper does at exit, this works out whether
the swap is safe, and which `commit()` / `rollback()` calls and `try` wrappers become redundant.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Iterator, Sequence

import libcst as cst
import libcst.matchers as m

from sessionfix.flow import PathAnalysis, finally_exits, first_dirty_exit, session_method, tail_statements
from sessionfix.model import Applicability, Fact, HelperSemantics

if TYPE_CHECKING:
    from sessionfix.rule import Rule


@dataclass
class SessionBlockPlan:
    applicability: Applicability = Applicability.SAFE
    reason: str = ""
    refusal: str | None = None  # reported instead of rewritten
    removals: dict[cst.CSTNode, str] = field(default_factory=dict)
    unwrap: set[cst.CSTNode] = field(default_factory=set)
    replacement: str = ""


def _has_comment(node: cst.CSTNode) -> bool:
    for line in getattr(node, "leading_lines", ()):
        if line.comment is not None:
            return True
    trailing = getattr(node, "trailing_whitespace", None)
    return trailing is not None and trailing.comment is not None


def _comments(node: cst.CSTNode) -> int:
    return len(m.findall(node, m.Comment()))


def _reassigns(body: cst.CSTNode, name: str) -> bool:
    class Finder(cst.CSTVisitor):
        found = False

        def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
            self.found |= _binds(node.target, name)

        def visit_AugAssign(self, node: cst.AugAssign) -> None:
            self.found |= _binds(node.target, name)

        def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
            self.found |= _binds(node.target, name)

        def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
            self.found |= _binds(node.target, name)

        def visit_For(self, node: cst.For) -> None:
            self.found |= _binds(node.target, name)

        def visit_AsName(self, node: cst.AsName) -> None:
            self.found |= _binds(node.name, name)

        def visit_Del(self, node: cst.Del) -> None:
            self.found |= _binds(node.target, name)

    finder = Finder()
    body.visit(finder)
    return finder.found


def _binds(target: cst.CSTNode, name: str) -> bool:
    if isinstance(target, cst.Name):
        return target.value == name
    if isinstance(target, (cst.Tuple, cst.List)):
        return any(_binds(e.value, name) for e in target.elements)
    if isinstance(target, cst.StarredElement):
        return _binds(target.value, name)
    return False


def _uses(node: cst.CSTNode, name: str) -> bool:
    class Finder(cst.CSTVisitor):
        found = False

        def visit_Name(self, n: cst.Name) -> None:
            self.found |= n.value == name

    finder = Finder()
    node.visit(finder)
    return finder.found


def _first_line(node: cst.CSTNode) -> str:
    text = cst.Module([]).code_for_node(node).strip().splitlines()
    return text[0] if text else ""


def _handlers(stmts: Sequence[cst.BaseStatement], enclosed: bool) -> Iterator[tuple[cst.Try, bool]]:
    """Every try statement under `stmts` (not in nested defs), and whether another try or
    context manager inside the block encloses it (so a re-raise might not leave the block)."""
    for stmt in stmts:
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            continue
        if isinstance(stmt, cst.Try):
            yield stmt, enclosed or finally_exits(stmt)
            yield from _handlers(stmt.body.body, True)
            for handler in stmt.handlers:
                yield from _handlers(handler.body.body, True)
            if stmt.orelse:
                yield from _handlers(stmt.orelse.body.body, True)
            if stmt.finalbody:
                yield from _handlers(stmt.finalbody.body.body, True)
        elif isinstance(stmt, (cst.With, cst.TryStar)):
            yield from _handlers(stmt.body.body, True)  # type: ignore[arg-type]
        elif isinstance(stmt, (cst.If, cst.For, cst.While)):
            yield from _handlers(stmt.body.body, enclosed)  # type: ignore[arg-type]
            orelse = stmt.orelse
            if isinstance(orelse, cst.If):
                yield from _handlers([orelse], enclosed)
            elif orelse is not None:
                yield from _handlers(orelse.body.body, enclosed)  # type: ignore[arg-type]
        elif isinstance(stmt, cst.Match):
            for case in stmt.cases:
                yield from _handlers(case.body.body, enclosed)  # type: ignore[arg-type]


def _ends_in_raise(stmts: Sequence[cst.BaseStatement]) -> bool:
    if not stmts:
        return False
    last = stmts[-1]
    return isinstance(last, cst.SimpleStatementLine) and isinstance(last.body[-1], cst.Raise)


def _pure_reraise(handler: cst.ExceptHandler, kept: Sequence[cst.BaseStatement]) -> bool:
    if len(kept) != 1 or _has_comment(kept[0]) or handler.leading_lines and any(
        line.comment for line in handler.leading_lines
    ):
        return False
    line = kept[0]
    if not (isinstance(line, cst.SimpleStatementLine) and len(line.body) == 1):
        return False
    raise_ = line.body[0]
    if not isinstance(raise_, cst.Raise) or raise_.cause is not None:
        return False
    if raise_.exc is None:
        return True
    bound = handler.name.name if handler.name is not None else None
    return isinstance(raise_.exc, cst.Name) and isinstance(bound, cst.Name) and raise_.exc.value == bound.value


def _with_facts(semantics: HelperSemantics, *, commits: bool, rolls_back: bool) -> HelperSemantics:
    assumed = "assumed, because the helper could not be analysed"
    return replace(semantics, commits_on_exit=Fact(commits, assumed), rolls_back_on_error=Fact(rolls_back, assumed))


def plan_session_block(
    rule: Rule,
    body: cst.BaseSuite,
    session: str | None,
    *,
    helper: str,
    is_async: bool,
    semantics: HelperSemantics | None = None,
) -> SessionBlockPlan:
    """Decide the swap of a raw factory for `helper` around `body`, and what becomes redundant."""
    semantics = semantics or rule.helper_semantics(helper)
    short = helper.rpartition(".")[2]
    plan = SessionBlockPlan()
    if not isinstance(body, cst.IndentedBlock):
        body_stmts: Sequence[cst.BaseStatement] = []
        if not isinstance(body, cst.SimpleStatementSuite):
            return plan
    else:
        body_stmts = body.body
    if session is not None and _reassigns(body, session):
        plan.refusal = f"'{session}' is rebound inside the block; left for review"
        return plan
    passes = semantics.propagates_errors
    if passes.value is False or (passes.value is None and semantics.commits_on_exit.value is not None):
        # The raw factory lets the block's exceptions through; a helper that swallows or replaces
        # them changes what the caller sees, whatever else the swap does (an unanalysed helper
        # is made unsafe below). Plan as if it passed them on, and make every part of it unsafe.
        assumed = replace(semantics, propagates_errors=Fact(True, "assumed"))
        plan = plan_session_block(rule, body, session, helper=helper, is_async=is_async, semantics=assumed)
        if plan.refusal is None:
            verdict = "may not re-raise" if passes.value is None else "does not re-raise"
            why = (f"{short} {verdict} the block's exceptions unchanged ({passes.evidence}), "
                   "so they would no longer reach the caller as they are")
            plan.applicability = Applicability.UNSAFE
            plan.reason = f"{why}; {plan.reason}" if plan.reason else why
        return plan
    commits = semantics.commits_on_exit.value
    rolls_back = semantics.rolls_back_on_error.value
    if commits is None:
        # Plan as if the helper commits and rolls back, and make every part of it unsafe.
        evidence = semantics.commits_on_exit.evidence
        unknown = f"{short}'s behaviour on exit could not be analysed ({evidence}); review the swap by hand"
        assumed = _with_facts(semantics, commits=True, rolls_back=rolls_back is not False)
        plan = plan_session_block(rule, body, session, helper=helper, is_async=is_async, semantics=assumed)
        if plan.refusal is None:
            plan.applicability = Applicability.UNSAFE
            plan.reason = unknown if not plan.reason.startswith("line ") else f"{unknown}; {plan.reason}"
            plan.removals = {node: f"{why}, which is assumed: {short} could not be analysed ({evidence})"
                             for node, why in plan.removals.items()}
        return plan
    if not commits:
        plan.reason = f"{short} does not commit on exit, like the raw factory; nothing else changes"
        return plan

    analysis = PathAnalysis(session, is_async, rule.is_log_call, rule.is_pure_call)
    if isinstance(body, cst.SimpleStatementSuite):
        synthetic = cst.SimpleStatementLine(body=body.body)  # `with x() as s: a(); b()` on one line
        outcome = analysis.block([synthetic], None)
    else:
        synthetic = None
        outcome = analysis.block(body_stmts, None)
    clean, dirty = first_dirty_exit(outcome)
    if not clean:
        if dirty is synthetic:
            dirty = body  # positions exist only for nodes of the parsed tree
        where = rule.location(dirty).line if dirty is not None else 0
        what = _first_line(dirty) if dirty is not None else "the block"
        plan.applicability = Applicability.UNSAFE
        plan.reason = (f"line {where} (`{what}`) can leave work uncommitted at the end of the block; "
                       f"{short} would commit it on exit and expire loaded objects")
        return plan
    plan.reason = (f"every normal path out of the block ends with commit/rollback; "
                   f"{short}'s commit on exit has nothing to do")
    if session is None or not isinstance(body, cst.IndentedBlock):
        return plan

    # 1. rollbacks in an except that re-raises out of the block
    for try_, enclosed in _handlers(body_stmts, False):
        if enclosed or not rolls_back:
            continue
        if try_.finalbody is not None and analysis.touches(try_.finalbody) is not None:
            continue
        for handler in try_.handlers:
            stmts = list(handler.body.body)
            if not _ends_in_raise(stmts):
                continue
            for index, stmt in enumerate(stmts):
                if session_method(stmt, session, is_async=is_async) != "rollback" or _has_comment(stmt):
                    continue
                after = stmts[index + 1:]
                if all(analysis.touches(s) is None and not _uses(s, session) for s in after[:-1]):
                    plan.removals[stmt] = (f"removed {session}.rollback(): the except re-raises out of the "
                                           f"block and {short} rolls back on error")
        if try_.orelse is None and try_.finalbody is None and all(
            _pure_reraise(h, [s for s in h.body.body if s not in plan.removals]) for h in try_.handlers
        ) and isinstance(try_.body, cst.IndentedBlock) and _comments(try_) == sum(
            _comments(stmt) for stmt in try_.body.body
        ):
            plan.unwrap.add(try_)

    # 2. commits that are the last statement executed on their path
    for stmt in tail_statements(body_stmts, plan.unwrap):
        if session_method(stmt, session, is_async=is_async) == "commit" and not _has_comment(stmt):
            plan.removals[stmt] = (f"removed {session}.commit(): it is the last statement on its path "
                                   f"and {short} commits on exit")
    return plan
