"""SF011 raw-factory-import: imports of raw factories, and a raw factory wearing the helper's name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

import libcst as cst
import libcst.matchers as m
from libcst.metadata import ParentNodeProvider, ScopeProvider

from sessionfix.aliasing import ImportBinding, binding_of
from sessionfix.codemods.async_raw_factory import CLOSING_PROJECT
from sessionfix.codemods.with_raw_factory import WithRawFactory
from sessionfix.index import dotted_name, resolve_relative
from sessionfix.model import Applicability
from sessionfix.rule import Expect, ImportPlan, Invalid, Valid
from sessionfix.sessionblock import SessionBlockPlan, plan_session_block

SAFE, UNSAFE, REPORT = Applicability.SAFE, Applicability.UNSAFE, Applicability.REPORT


@dataclass
class _AliasFix:
    binding: ImportBinding
    helper: str
    plans: dict[cst.With, SessionBlockPlan] = field(default_factory=dict)
    blocked: list[tuple[cst.CSTNode, str, bool]] = field(default_factory=list)  # node, reason, unsafe-able


class RawFactoryImport(WithRawFactory):
    """
    ## What it does
    Keeps a file's imports true to what its code now calls. An import of a raw session factory
    (`from src.db import async_session`) that nothing uses any more, because SF002/SF010 moved
    every use to the helper they import, is removed, so `from src.db import async_session`
    effectively becomes `from src.db import get_session`. A raw factory imported under the
    helper's own name (`from src.db import async_session as get_session`) becomes a direct import
    of the real helper, once every use of that name can take the helper.

    ## Why is this bad?
    A raw factory wearing the helper's name is the most misleading line in the audit (seed 002's
    `src/mcp/tools.py`): every `async with get_session()` in the file reads as the helper and is
    the raw factory. A left-over import keeps the raw factory one keystroke away.

    ## Example
    {example}

    ## Fix safety
    A removed import had no use left in its scope, and the file imports the helper there, so the
    module is still imported: *safe*. Imports in a package `__init__.py` or listed in `__all__`
    are re-exports and stay. For an alias, the uses keep their spelling and change meaning, so
    each use is judged like SF002/SF010 judge a block (driven by what the helper does on exit) and
    the import changes only when every use may: *safe* when all are, *unsafe* when one is. A use
    that is not a `with`/`async with` of the right kind (a bare call, the name passed as a
    value), a call with arguments, or a name bound twice blocks the rewrite: *reported*, with the
    lines that block it. Which import binds a use is read from scopes, so a parameter or local
    of the same name (shadowing) is neither a use nor touched.
    """

    CODE = "SF011"
    NAME = "raw-factory-import"
    SUMMARY = "Import the project's session helper, not a raw factory (even under its name)"
    APPLICABILITIES = (SAFE, UNSAFE, REPORT)
    ORDER = 60
    PLANS_IN_VISIT_MODULE = True

    def visit_Module(self, node: cst.Module) -> None:
        self._plans: dict[cst.With, SessionBlockPlan] = {}
        self._removals: dict[cst.CSTNode, str] = {}
        self._unwrap: set[cst.CSTNode] = set()
        self._anchors: dict[cst.SimpleStatementLine, list[ImportPlan]] = {}
        self._renamed: dict[cst.ImportAlias, str] = {}  # alias -> helper short name, same module
        self._dropped: set[cst.ImportAlias] = set()
        helpers = {False: self.settings.sync_context, True: self.settings.async_context}
        for found in self.nodes_of(cst.ImportFrom):
            assert isinstance(found, cst.ImportFrom)
            if isinstance(found.names, cst.ImportStar) or not self._may_act_on(found, helpers.values()):
                continue
            scope = self.get_metadata(ScopeProvider, found, None)
            if scope is None:
                continue
            for alias in found.names:
                local = alias.evaluated_alias or alias.evaluated_name
                mine = [a for a in scope.assignments[local] if getattr(a, "node", None) is found]
                binding = binding_of(self, mine[0]) if len(mine) == 1 else None
                if binding is None:
                    continue
                target = self.project.canonical(f"{binding.module}.{binding.name}")
                if target not in self.raw_factories:
                    continue
                wearing = [h for h in helpers.values() if h and h.rpartition(".")[2] == local
                           and self.project.canonical(h) != target]
                if wearing:
                    self._alias(binding, scope, wearing[0])
                else:
                    self._dead(binding, scope)

    def _may_act_on(self, found: cst.ImportFrom, helpers: Iterable[str | None]) -> bool:
        """What the loop in visit_Module asks of each name, read from the statement alone: does
        it import a raw factory that wears a helper's name, or from a module that exists (else
        SF001 handles it)? Scopes cost more than the rest of this rule; most imports are neither."""
        written = dotted_name(found.module) if found.module is not None else None
        module = resolve_relative(len(found.relative), written, self.package)
        if module is None or isinstance(found.names, cst.ImportStar):
            return False
        for alias in found.names:
            if self.project.canonical(f"{module}.{alias.evaluated_name}") not in self.raw_factories:
                continue
            local = alias.evaluated_alias or alias.evaluated_name
            if any(h and h.rpartition(".")[2] == local for h in helpers) or self.project.status(module) != "missing":
                return True
        return False

    # -- `from M import raw` left without uses ------------------------------------------------

    def _dead(self, binding: ImportBinding, scope: cst.metadata.Scope) -> None:
        if self.project.status(binding.module) == "missing":
            return  # SF001's: a module that no longer exists
        if getattr(binding.assignment, "references", None):
            return
        if self._reexported(binding.local):
            return
        helper = self._helper_used_in(scope)
        if helper is None:
            return  # nothing here was rewritten to a helper: an unused import we did not cause
        self._drop(binding.alias)
        self.change(binding.statement, SAFE, f"removed the import of {binding.local}: nothing uses it any more, "
                                             f"its uses now go through {helper}")

    def _reexported(self, local: str) -> bool:
        filename = self.context.filename or ""
        if filename.endswith("__init__.py"):
            return True
        module = self.module
        for found in m.findall(module, m.Assign(targets=[m.AssignTarget(target=m.Name("__all__"))])):
            assert isinstance(found, cst.Assign)
            if isinstance(found.value, (cst.List, cst.Tuple)) and any(
                isinstance(e.value, cst.SimpleString) and e.value.evaluated_value == local
                for e in found.value.elements
            ):
                return True
        return False

    def _helper_used_in(self, scope: cst.metadata.Scope) -> str | None:
        """A configured helper imported in `scope` and used: evidence a rule moved code to it."""
        for helper in (self.settings.async_context, self.settings.sync_context, self.settings.sync_factory):
            if helper is None:
                continue
            wanted = self.project.canonical(helper)
            for assignment in scope.assignments[helper.rpartition(".")[2]]:
                binding = binding_of(self, assignment)
                if binding is not None and assignment.references and (
                    self.project.canonical(f"{binding.module}.{binding.name}") == wanted
                ):
                    return helper
        return None

    # -- `from M import raw as helper_name` ---------------------------------------------------

    def _alias(self, binding: ImportBinding, scope: cst.metadata.Scope, helper: str) -> None:
        fix = _AliasFix(binding, helper)
        if len(list(scope.assignments[binding.local])) != 1:
            fix.blocked.append((binding.alias, f"{binding.local} is bound more than once here", False))
        for reference in sorted(binding.assignment.references, key=lambda r: self.location(r.node)):  # type: ignore[attr-defined]
            self._use(fix, reference.node)
        raw = f"{binding.module}.{binding.name}"
        if fix.blocked:
            lines = ", ".join(str(self.location(n).line) for n, _, _ in fix.blocked if n is not binding.alias)
            why = "; ".join(reason for n, reason, _ in fix.blocked if n is binding.alias)
            self.finding(binding.alias, f"{binding.local} is the raw factory {raw}, not {helper}; left as is: "
                         + (why or f"the use(s) on line(s) {lines} cannot take the helper"), category="raw-factory")
            for node, reason, unsafe in fix.blocked:
                if node is not binding.alias:
                    self.finding(node, reason, category="raw-factory", fix=UNSAFE if unsafe else None)
            return
        worst = UNSAFE if any(p.applicability is UNSAFE for p in fix.plans.values()) else SAFE
        self.change(binding.alias, worst, f"{binding.local} was the raw factory {raw} wearing the helper's name; "
                                          f"now it imports {helper}")
        for with_node, plan in fix.plans.items():
            self.change(with_node.items[-1].item, plan.applicability, plan.reason)
            for removed, reason in plan.removals.items():
                self.change(removed, plan.applicability, reason)
                self._removals[removed] = reason
            self._unwrap |= plan.unwrap
            for unwrapped in plan.unwrap:
                self.change(unwrapped, plan.applicability, f"removed a try/except that only re-raised; {helper} "
                                                           "rolls back on error")
            plan.replacement = binding.local
            self._plans[with_node] = plan
        module, _, name = helper.rpartition(".")
        if self.project.canonical(binding.module) == self.project.canonical(module) or binding.module == module:
            self._renamed[binding.alias] = name
        else:
            self._drop(binding.alias)
            parent = self.get_metadata(ParentNodeProvider, binding.statement)
            self._anchors.setdefault(parent, []).append(ImportPlan(name, module, name))

    def _use(self, fix: _AliasFix, name: cst.CSTNode) -> None:
        """Judge one use of the aliased name: it must be `[async] with name() as s:`."""
        call = self.get_metadata(ParentNodeProvider, name, None)
        item = self.get_metadata(ParentNodeProvider, call, None) if isinstance(call, cst.Call) else None
        with_node = self.get_metadata(ParentNodeProvider, item, None) if isinstance(item, cst.WithItem) else None
        helper, local = fix.helper, fix.binding.local
        if not (isinstance(call, cst.Call) and call.func is name and isinstance(with_node, cst.With)):
            fix.blocked.append((name, f"{local} is used here other than as `with {local}() as s:`; "
                                      f"it would become {helper}", False))
            return
        wanted_async = fix.helper == self.settings.async_context
        if bool(with_node.asynchronous) != wanted_async:
            kind = "async with" if wanted_async else "with"
            fix.blocked.append((name, f"{helper} needs `{kind}`, this use is not", False))
            return
        if call.args or with_node.items[-1] is not item:
            fix.blocked.append((name, f"{local}() here has arguments or other context managers inside it", False))
            return
        target = item.asname  # type: ignore[union-attr]
        if target is not None and not isinstance(target.name, cst.Name):
            fix.blocked.append((name, f"the session from {local}() is unpacked", False))
            return
        session = target.name.value if target is not None else None  # type: ignore[union-attr]
        plan = plan_session_block(self, with_node.body, session, helper=helper, is_async=wanted_async)
        if plan.refusal:
            fix.blocked.append((name, plan.refusal, False))
        elif plan.applicability is UNSAFE and not self.settings.unsafe:
            fix.blocked.append((name, f"unsafe fix available with --unsafe: {plan.reason}", True))
        else:
            fix.plans[with_node] = plan

    # -- rewriting ----------------------------------------------------------------------------

    def edit_targets(self) -> list[cst.CSTNode]:
        return [*super().edit_targets(), *self._renamed, *self._dropped]

    def _drop(self, alias: cst.ImportAlias) -> None:
        self._dropped.add(alias)

    def leave_ImportFrom(
        self, original_node: cst.ImportFrom, updated_node: cst.ImportFrom
    ) -> cst.ImportFrom | cst.RemovalSentinel:
        if isinstance(original_node.names, cst.ImportStar) or isinstance(updated_node.names, cst.ImportStar):
            return updated_node
        names: list[cst.ImportAlias] = []
        for old, new in zip(original_node.names, updated_node.names):
            if old in self._dropped:
                continue
            if old in self._renamed:
                new = new.with_changes(name=cst.Name(self._renamed[old]), asname=None)
            names.append(new)
        if not names:
            return cst.RemoveFromParent()
        if len(names) != len(updated_node.names):
            names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
        return updated_node.with_changes(names=names)

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        result = super().leave_SimpleStatementLine(original_node, updated_node)
        if isinstance(result, cst.FlattenSentinel) and not updated_node.body:
            return cst.FlattenSentinel(list(result.nodes)[1:])  # the import it replaces is gone
        if isinstance(result, cst.SimpleStatementLine) and not result.body:
            return cst.RemoveFromParent()
        return result

    INVALID = [
        Invalid(
            id="raw-factory-wearing-the-helpers-name",
            before="""\
                from src.db import async_session as get_session


                async def list_tools(model):
                    async with get_session() as db:
                        return (await db.execute(model)).all()


                async def record(call):
                    async with get_session() as db:
                        db.add(call)
                        await db.commit()
                """,
            after="""\
                from src.db import get_session


                async def list_tools(model):
                    async with get_session() as db:
                        return (await db.execute(model)).all()


                async def record(call):
                    async with get_session() as db:
                        db.add(call)
                        await db.commit()
                """,
            expect=(
                Expect("SF011", "safe", "wearing the helper's name"),
                Expect("SF011", "safe", "does not commit on exit"),
                Expect("SF011", "safe", "does not commit on exit"),
            ),
            files=CLOSING_PROJECT,
        ),
        Invalid(
            id="alias-with-committing-helper-removes-commit",
            before="""\
                from core.db import async_session as get_async_session


                async def record(call):
                    async with get_async_session() as db:
                        db.add(call)
                        await db.commit()
                """,
            after="""\
                from core.db import get_async_session


                async def record(call):
                    async with get_async_session() as db:
                        db.add(call)
                """,
            expect=(
                Expect("SF011", "safe", "wearing the helper's name"),
                Expect("SF011", "safe", "ends with commit/rollback"),
                Expect("SF011", "safe", "removed db.commit()"),
            ),
        ),
        Invalid(
            id="alias-used-bare-is-reported",
            before="""\
                from src.db import async_session as get_session


                async def record(call):
                    async with get_session() as db:
                        db.add(call)
                        await db.commit()


                async def raw_session():
                    return get_session()
                """,
            after=None,
            expect=(
                Expect("SF011", "report", "cannot take the helper"),
                Expect("SF011", "report", "other than as `with get_session() as s:`"),
            ),
            files=CLOSING_PROJECT,
        ),
        Invalid(
            id="alias-with-uncommitted-write-is-unsafe",
            before="""\
                from core.db import async_session as get_async_session


                async def draft(call):
                    async with get_async_session() as db:
                        db.add(call)
                """,
            after="""\
                from core.db import get_async_session


                async def draft(call):
                    async with get_async_session() as db:
                        db.add(call)
                """,
            expect=(
                Expect("SF011", "unsafe", "wearing the helper's name"),
                Expect("SF011", "unsafe", "would commit it on exit"),
            ),
            options={"unsafe": True},
        ),
        Invalid(
            id="local-alias-is-renamed-and-its-import-goes",
            before="""\
                from src.db import async_session as make_db


                async def record(call):
                    async with make_db() as db:
                        db.add(call)
                        await db.commit()
                """,
            after="""\
                from src.db import get_session


                async def record(call):
                    async with get_session() as db:
                        db.add(call)
                        await db.commit()
                """,
            expect=(Expect("SF011", "safe", "removed the import of make_db"), Expect("SF010", "safe", "")),
            files=CLOSING_PROJECT,
        ),
    ]
    VALID = [
        Valid(
            id="raw-import-still-used-stays",
            code="""\
                from src.db import async_session


                async def open_raw():
                    return async_session()
                """,
            files=CLOSING_PROJECT,
        ),
        Valid(
            id="parameter-shadows-the-alias",
            code="""\
                async def record(get_session, call):
                    async with get_session() as db:
                        db.add(call)
                """,
            files=CLOSING_PROJECT,
        ),
        Valid(
            id="re-export-in-all-stays",
            code="""\
                from src.db import async_session, get_session

                __all__ = ["async_session", "get_session"]


                async def ping():
                    async with get_session() as db:
                        await db.commit()
                """,
            files=CLOSING_PROJECT,
        ),
    ]
