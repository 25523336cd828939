"""SF012 bare-helper-call: `s = get_session()` on a context-manager helper -> `async with get_session() as s:`."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m
from libcst.metadata import ParentNodeProvider, ScopeProvider
from libcst.metadata.scope_provider import ComprehensionScope, GlobalScope

from sessionfix.codemods.async_raw_factory import CLOSING_PROJECT
from sessionfix.config import Settings
from sessionfix.model import Applicability, HelperSemantics
from sessionfix.rule import Expect, Invalid, PrefilterNeeds, Rule, Valid
from sessionfix.sessionblock import plan_session_block

SAFE, UNSAFE, REPORT = Applicability.SAFE, Applicability.UNSAFE, Applicability.REPORT

#: attributes the object a @(async)contextmanager function returns really has: a use of one of
#: these means the code meant the context manager, not a session
_CM_ATTRIBUTES = frozenset(
    {"gen", "func", "args", "kwds"}
    | set(dir(contextlib._GeneratorContextManager))
    | set(dir(contextlib._AsyncGeneratorContextManager))
)
_TASK_CALLS = frozenset({"asyncio.create_task", "asyncio.ensure_future", "asyncio.gather"})
_TASK_METHODS = frozenset({"create_task", "start_soon"})


@dataclass
class _Edit:
    line: cst.SimpleStatementLine
    session: str
    is_async: bool


class BareHelperCall(Rule):
    """
    ## What it does
    Finds a context-manager session helper called as if it returned a session
    (`session = get_session()` where `get_session` is an `@asynccontextmanager`) and puts the
    statements from there to the end of the block under it: `async with get_session() as
    session:` (or `with` for a `@contextmanager`). Which functions are context managers is read
    from their definitions (`sessionfix helpers`), not from their names.

    ## Why is this bad?
    The call returns a context manager, not a session: the first `session.execute(...)` raises
    `AttributeError`, and the session it would have opened is never opened, let alone closed
    (seed 002: "Session leak!").

    ## Example
    {example}

    ## Fix safety
    The old code could not have worked: every path that used the name as a session raised
    `AttributeError` there, and nothing it did before used the database through it. So the
    question is whether the fixed code does what the author evidently meant. When the helper
    only closes (it adds no commit, so work is kept exactly where the code commits), or when it
    commits on exit and every normal path already ends with `commit()`/`rollback()`, the answer
    is yes: *safe*. When the helper commits on exit and some path leaves work uncommitted, the
    helper would commit what the author never committed: *unsafe*, with the line. A helper that
    cannot be analysed is *unsafe* too. The name must stay inside the wrapped statements: a
    session that is returned, yielded, stored on an attribute or in another name, declared
    `global`, handed to `create_task`/`gather`, or captured by a nested function or lambda would
    outlive the `with`, so the site is *reported* with the reason, as is a module-level call, an
    async helper in a sync function, or a name bound twice. A use of the context manager itself
    (`async with cm as s`, `cm.gen`) means the bare call is deliberate and nothing is recorded.
    """

    CODE = "SF012"
    NAME = "bare-helper-call"
    SUMMARY = "Enter a context-manager session helper with `with`, don't call it bare"
    APPLICABILITIES = (SAFE, UNSAFE, REPORT)
    ORDER = 24
    PLANS_IN_VISIT_MODULE = True

    @classmethod
    def prefilter_needs(cls, settings: Settings) -> PrefilterNeeds:
        """Sites call a @contextmanager / @asynccontextmanager function of the project."""
        helpers = frozenset(h for h in (settings.sync_context, settings.async_context) if h)
        return PrefilterNeeds(names=helpers,
                              decorated_by=frozenset({"contextlib.contextmanager", "contextlib.asynccontextmanager"}),
                              used_only=True)

    def visit_Module(self, node: cst.Module) -> None:
        self._edits: dict[cst.SimpleStatementLine, _Edit] = {}
        pattern = m.SimpleStatementLine(body=[m.Assign(targets=[m.AssignTarget(m.Name())], value=m.Call())])
        for found in (line for line in self.nodes_of(cst.SimpleStatementLine) if m.matches(line, pattern)):
            assert isinstance(found, cst.SimpleStatementLine)
            self._consider(found)

    def _helper(self, call: cst.Call) -> tuple[str, HelperSemantics] | None:
        """The context-manager session helper `call` calls, with its semantics."""
        configured = {self.project.canonical(h) for h in (self.settings.sync_context, self.settings.async_context) if h}
        module = self.context.full_module_name or ""
        for name in sorted(self.canonical_names(call.func)):
            dotted = name if "." in name or not module else self.project.canonical(f"{module}.{name}")
            if self.project.definition(dotted) is None:
                continue
            semantics = self.helper_semantics(dotted)
            if semantics.kind not in ("contextmanager", "asynccontextmanager"):
                continue
            facts = (semantics.commits_on_exit.value, semantics.rolls_back_on_error.value, semantics.closes.value)
            if dotted in configured or True in facts:
                return dotted, semantics
        return None

    def _consider(self, line: cst.SimpleStatementLine) -> None:
        assign = line.body[0]
        assert isinstance(assign, cst.Assign) and isinstance(assign.value, cst.Call)
        target = assign.targets[0].target
        assert isinstance(target, cst.Name)
        found = self._helper(assign.value)
        if found is None:
            return
        dotted, semantics = found
        session, helper = target.value, dotted.rpartition(".")[2]
        is_async = semantics.kind == "asynccontextmanager"
        keyword = "async with" if is_async else "with"
        uses = self._uses(assign, session)
        if uses is None:
            return  # the context manager itself is used: deliberate
        block = self.get_metadata(ParentNodeProvider, line, None)
        problem = self._placement(line, block, assign, session, is_async)
        if problem is None:
            region = list(block.body[block.body.index(line) + 1:])  # type: ignore[union-attr]
            problem = self._escape(assign, session, region, uses)
        if problem is not None:
            self.finding(assign.value, f"{helper}() is a context manager, not a session; "
                                       f"not wrapped in `{keyword}`: {problem}", category="bare-helper")
            return
        plan = plan_session_block(self, cst.IndentedBlock(body=region), session, helper=dotted,
                                  is_async=is_async, semantics=semantics)
        if plan.refusal:
            self.finding(assign.value, plan.refusal, category="bare-helper")
            return
        before = f"`{session}` was a context manager, so its first use raised AttributeError"
        if plan.applicability is UNSAFE:
            reason = f"{before}; {plan.reason}"
            if not self.settings.unsafe:
                self.finding(assign.value, f"unsafe fix available with --unsafe: {reason}", category="bare-helper",
                             fix=UNSAFE)
                return
        elif semantics.commits_on_exit.value:
            reason = (f"{before}; now it is {helper}'s session, and every normal path already ends with "
                      f"commit/rollback, so {helper}'s commit on exit has nothing to do")
        else:
            reason = (f"{before}; now it is {helper}'s session, which {helper} only closes on exit: "
                      "work is kept exactly where the code commits")
        self.change(assign.value, plan.applicability, reason)
        self._edits[line] = _Edit(line, session, is_async)

    def _uses(self, assign: cst.Assign, session: str) -> list[cst.Name] | None:
        scope = self.get_metadata(ScopeProvider, assign, None)
        names: list[cst.Name] = []
        for assignment in scope.assignments[session] if scope is not None else ():
            for access in assignment.references:
                if not isinstance(access.node, cst.Name):
                    continue
                parent = self.get_metadata(ParentNodeProvider, access.node, None)
                if isinstance(parent, cst.WithItem) and parent.item is access.node:
                    return None
                if isinstance(parent, cst.Attribute) and parent.value is access.node and parent.attr.value in _CM_ATTRIBUTES:
                    return None
                names.append(access.node)
        return names

    def _placement(self, line: cst.SimpleStatementLine, block: cst.CSTNode | None, assign: cst.Assign,
                   session: str, is_async: bool) -> str | None:
        if len(line.body) != 1:
            return "the line holds other statements too"
        if not isinstance(block, cst.IndentedBlock):
            return "it is at module level, where no block can hold the session"
        scope = self.get_metadata(ScopeProvider, assign, None)
        if isinstance(scope, GlobalScope):
            return f"`{session}` is a global name, so the session would outlive the block"
        assignments = list(scope.assignments[session]) if scope is not None else []
        if len(assignments) != 1:
            return f"`{session}` is bound more than once in this function"
        function = self._function(line)
        if is_async and (function is None or function.asynchronous is None):
            return "the helper is async, but this is not an `async def`"
        return None

    def _function(self, node: cst.CSTNode) -> cst.FunctionDef | None:
        current = self.get_metadata(ParentNodeProvider, node, None)
        while current is not None and not isinstance(current, cst.FunctionDef):
            current = self.get_metadata(ParentNodeProvider, current, None)
        return current

    def _escape(self, assign: cst.Assign, session: str, region: list[cst.BaseStatement],
                uses: list[cst.Name]) -> str | None:
        """Why the session would outlive the wrapped statements, or None."""
        if not uses:
            return f"`{session}` is never used"
        inside = {id(n) for stmt in region for n in _walk(stmt)}
        scope = self.get_metadata(ScopeProvider, assign)
        accesses = {id(a.node): a for a in scope.assignments[session] for a in a.references}  # type: ignore[union-attr]
        for use in uses:
            where = self.location(use).line
            if id(use) not in inside:
                return f"`{session}` is used on line {where}, after the block that would hold it"
            access_scope = accesses[id(use)].scope if id(use) in accesses else scope
            if access_scope is not scope and not isinstance(access_scope, ComprehensionScope):
                return f"a nested function or lambda captures `{session}` (line {where}) and may run later"
            why = self._outlives(use, session)
            if why is not None:
                return f"{why} (line {where})"
        return None

    def _outlives(self, use: cst.Name, session: str) -> str | None:
        parent = self.get_metadata(ParentNodeProvider, use, None)
        if isinstance(parent, cst.Attribute) and parent.value is use:
            return None
        current: cst.CSTNode | None = parent
        while current is not None and not isinstance(current, cst.BaseStatement):
            if isinstance(current, cst.Call) and self._is_task(current):
                return f"`{session}` is handed to a task that may outlive the block"
            current = self.get_metadata(ParentNodeProvider, current, None)
        if isinstance(parent, cst.Return):
            return f"`{session}` is returned"
        if isinstance(parent, (cst.Yield, cst.Await)):
            return f"`{session}` is yielded" if isinstance(parent, cst.Yield) else f"`{session}` is awaited itself"
        if isinstance(parent, cst.Arg):
            return None  # handed to a callee for the duration of the call
        if isinstance(parent, (cst.Assign, cst.AnnAssign, cst.AugAssign, cst.Element, cst.DictElement,
                               cst.StarredElement, cst.NamedExpr)):
            return f"`{session}` is stored in an attribute, container or another name"
        return f"`{session}` is used as a value in a way sessionfix cannot follow"

    def _is_task(self, call: cst.Call) -> bool:
        if self.canonical_names(call.func) & _TASK_CALLS:
            return True
        return isinstance(call.func, cst.Attribute) and call.func.attr.value in _TASK_METHODS

    # -- rewriting ----------------------------------------------------------------------------

    def edit_targets(self) -> list[cst.CSTNode]:
        return list(self._edits)

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock) -> cst.IndentedBlock:
        marks = [i for i, stmt in enumerate(original_node.body) if stmt in self._edits]
        if not marks:
            return updated_node
        body = list(updated_node.body)
        for index in reversed(marks):
            edit = self._edits[original_node.body[index]]  # type: ignore[index]
            line = body[index]
            assert isinstance(line, cst.SimpleStatementLine)
            assign = line.body[0]
            assert isinstance(assign, cst.Assign)
            wrapped = cst.With(
                items=[cst.WithItem(item=assign.value, asname=cst.AsName(name=cst.Name(edit.session)))],
                body=cst.IndentedBlock(body=body[index + 1:], header=line.trailing_whitespace),
                asynchronous=cst.Asynchronous() if edit.is_async else None,
                leading_lines=line.leading_lines,
            )
            body[index:] = [wrapped]
        return updated_node.with_changes(body=body)

    INVALID = [
        Invalid(
            id="leak-becomes-async-with",
            before="""\
                from sqlalchemy import text

                from src.db import get_session


                async def whats_up(user_id):
                    session = get_session()  # a context manager, not a session
                    result = await session.execute(text("select 1"))
                    return {"user": user_id, "ok": result.scalar()}
                """,
            after="""\
                from sqlalchemy import text

                from src.db import get_session


                async def whats_up(user_id):
                    async with get_session() as session:  # a context manager, not a session
                        result = await session.execute(text("select 1"))
                        return {"user": user_id, "ok": result.scalar()}
                """,
            expect=(Expect("SF012", "safe", "only closes on exit"),),
            files=CLOSING_PROJECT,
        ),
        Invalid(
            id="committing-helper-and-explicit-commit",
            before="""\
                from core.db import get_async_session


                async def save(item):
                    if item is None:
                        return
                    session = get_async_session()
                    session.add(item)
                    await session.commit()
                """,
            after="""\
                from core.db import get_async_session


                async def save(item):
                    if item is None:
                        return
                    async with get_async_session() as session:
                        session.add(item)
                        await session.commit()
                """,
            expect=(Expect("SF012", "safe", "commit on exit has nothing to do"),),
        ),
        Invalid(
            id="sync-helper-gets-with",
            before="""\
                from core.db import get_db_session_ctx


                def rename(user, name):
                    session = get_db_session_ctx()
                    user.name = name
                    session.add(user)
                    session.commit()
                """,
            after="""\
                from core.db import get_db_session_ctx


                def rename(user, name):
                    with get_db_session_ctx() as session:
                        user.name = name
                        session.add(user)
                        session.commit()
                """,
            expect=(Expect("SF012", "safe", "nothing to do"),),
        ),
        Invalid(
            id="uncommitted-write-under-committing-helper",
            before="""\
                from core.db import get_async_session


                async def draft(item):
                    session = get_async_session()
                    session.add(item)
                """,
            after=None,
            expect=(Expect("SF012", "report", "would commit it on exit"),),
        ),
        Invalid(
            id="uncommitted-write-with-unsafe",
            before="""\
                from core.db import get_async_session


                async def draft(item):
                    session = get_async_session()
                    session.add(item)
                """,
            after="""\
                from core.db import get_async_session


                async def draft(item):
                    async with get_async_session() as session:
                        session.add(item)
                """,
            expect=(Expect("SF012", "unsafe", "would commit it on exit"),),
            options={"unsafe": True},
        ),
        Invalid(
            id="returned-session-is-reported",
            before="""\
                from src.db import get_session


                async def open_db():
                    session = get_session()
                    await session.execute("select 1")
                    return session
                """,
            after=None,
            expect=(Expect("SF012", "report", "`session` is returned"),),
            files=CLOSING_PROJECT,
        ),
        Invalid(
            id="session-handed-to-a-task-is-reported",
            before="""\
                import asyncio

                from src.db import get_session


                async def refresh(job):
                    session = get_session()
                    await session.execute("select 1")
                    asyncio.create_task(job(session))
                """,
            after=None,
            expect=(Expect("SF012", "report", "handed to a task"),),
            files=CLOSING_PROJECT,
        ),
        Invalid(
            id="used-after-the-block-is-reported",
            before="""\
                from src.db import get_session


                async def count(flag):
                    if flag:
                        session = get_session()
                        await session.execute("select 1")
                    return session.info
                """,
            after=None,
            expect=(Expect("SF012", "report", "after the block"),),
            files=CLOSING_PROJECT,
        ),
    ]
    VALID = [
        Valid(
            id="context-manager-entered-later",
            code="""\
                from src.db import get_session


                async def ping():
                    manager = get_session()
                    async with manager as session:
                        await session.execute("select 1")
                """,
            files=CLOSING_PROJECT,
        ),
        Valid(
            id="raw-factory-called-bare-is-a-session",
            code="""\
                from src.db import async_session


                async def ping():
                    session = async_session()
                    try:
                        await session.execute("select 1")
                    finally:
                        await session.close()
                """,
            files=CLOSING_PROJECT,
        ),
        Valid(
            id="plain-function-returning-a-session",
            code="""\
                from src.db import async_session


                def make():
                    return async_session()


                async def ping():
                    session = make()
                    try:
                        await session.execute("select 1")
                    finally:
                        await session.close()
                """,
            files=CLOSING_PROJECT,
        ),
    ]


def _walk(node: cst.CSTNode) -> list[cst.CSTNode]:
    out: list[cst.CSTNode] = []
    stack = [node]
    while stack:
        current = stack.pop()
        out.append(current)
        stack.extend(current.children)
    return out
