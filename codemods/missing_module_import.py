"""SF001 missing-module-import: drop `from init import Session` once nothing uses it."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m
from libcst.codemod.visitors import RemoveImportsVisitor
from pathlib import Path
from typing import Sequence

from libcst.metadata import ParentNodeProvider, ScopeProvider

from sessionfix.config import Settings
from sessionfix.index import dotted_name, resolve_relative
from sessionfix.model import Applicability
from sessionfix.rule import Expect, Invalid, PrefilterNeeds, Rule, Valid

SAFE, REPORT = Applicability.SAFE, Applicability.REPORT


class MissingModuleImport(Rule):
    """
    ## What it does
    Removes an import of a configured raw session factory from a module that no longer exists
    (`from init import Session` after `init.py` was deleted), once the other rules have
    rewritten every use of it to the project's helpers; the helpers' imports are added where
    the rewritten code needs them (a function-local import stays function-local).

    ## Why is this bad?
    The import fails with `ModuleNotFoundError` the moment it runs: at import time for a module
    level import, on the first call for one inside a function, and, worst, only on the error
    path for one inside an `except` block.

    ## Example
    {example}

    ## Fix safety
    The import is removed only when no use of the name is left, so nothing can refer to it:
    *safe*. When a use remains that no rule could rewrite (an unsafe block without `--unsafe`, a
    call with arguments, the name passed as a value), the import stays and each remaining use is
    *reported* with its line.
    """

    CODE = "SF001"
    NAME = "missing-module-import"
    SUMMARY = "Remove imports of raw session factories from modules that no longer exist"
    APPLICABILITIES = (SAFE, REPORT)
    ORDER = 90
    PLANS_IN_VISIT_MODULE = True

    @classmethod
    def prefilter_needs(cls, settings: Settings) -> PrefilterNeeds:
        """Every site is an import of a configured raw factory."""
        return PrefilterNeeds(names=frozenset(settings.raw_factories))

    def visit_Module(self, node: cst.Module) -> None:
        self._dead_lines: set[cst.CSTNode] = set()
        for found in self.nodes_of(cst.ImportFrom):
            self._consider(found)

    def edit_targets(self) -> list[cst.CSTNode]:
        return list(self._dead_lines)

    def _consider(self, node: cst.ImportFrom) -> None:
        if isinstance(node.names, cst.ImportStar):
            return
        module = resolve_relative(
            len(node.relative), dotted_name(node.module) if node.module else None, self.package
        )
        if module is None or self.project.status(module) != "missing":
            return
        scope = self.get_metadata(ScopeProvider, node, None)
        dead = []
        for alias in node.names:
            dotted = f"{module}.{alias.evaluated_name}"
            if self.project.canonical(dotted) not in self.raw_factories:
                continue
            local = alias.evaluated_alias or alias.evaluated_name
            assignments = [a for a in (scope.assignments[local] if scope else ()) if getattr(a, "node", None) is node]
            uses = [ref.node for a in assignments for ref in a.references]
            if not uses and self._exported(node, local, scope):
                self.finding(
                    alias,
                    f"{local} ({dotted}, whose module is missing) is not used here, but this module "
                    "re-exports it (a package __init__ or __all__); other modules may import it from "
                    "here, so it stays for review",
                    category="missing-import",
                )
                continue
            if uses:
                for use in uses:
                    self.finding(
                        use,
                        f"{local} ({dotted}, whose module is missing) is still used here and no rule "
                        "rewrote this use; its import stays",
                        category="missing-import",
                    )
                continue
            dead.append(alias)
            self.change(alias, SAFE, f"{module} does not exist and nothing uses {local} any more")
        line = self.get_metadata(ParentNodeProvider, node, None)
        if len(dead) == len(node.names) and isinstance(line, cst.SimpleStatementLine) and len(line.body) == 1:
            # Removed here rather than by RemoveImportsVisitor, which would drop the blank line or
            # comment above the statement along with it.
            self._dead_lines.add(line)
            return
        for alias in dead:
            RemoveImportsVisitor.remove_unused_import(self.context, module, alias.evaluated_name, alias.evaluated_alias)

    def _exported(self, node: cst.ImportFrom, local: str, scope: object) -> bool:
        """Module-level name that other modules may import from here."""
        if not isinstance(scope, cst.metadata.GlobalScope):
            return False
        if Path(self.context.filename or "").name == "__init__.py":
            return True
        listed = m.Assign(targets=[m.AssignTarget(target=m.Name("__all__"))])
        for listing in (a for a in self.nodes_of(cst.Assign) if m.matches(a, listed)):
            value = listing.value  # type: ignore[attr-defined]
            if isinstance(value, (cst.List, cst.Tuple)) and any(
                isinstance(e.value, cst.SimpleString) and e.value.evaluated_value == local for e in value.elements
            ):
                return True
        return False

    def _without_dead(
        self, body: Sequence[cst.BaseStatement], originals: Sequence[cst.BaseStatement], *, in_block: bool
    ) -> list[cst.BaseStatement]:
        kept: list[cst.BaseStatement] = []
        carried: list[cst.EmptyLine] = []
        trim = False  # a dead first statement of a block: its follower must not start with blank lines
        for original, updated in zip(originals, body):
            if original in self._dead_lines:
                carried += list(original.leading_lines)  # type: ignore[attr-defined]
                trim = trim or (in_block and not kept)
                continue
            if (carried or trim) and hasattr(updated, "leading_lines"):
                lines = [*carried, *updated.leading_lines]  # type: ignore[attr-defined]
                if trim:
                    while lines and lines[0].comment is None:
                        lines.pop(0)
                updated = updated.with_changes(leading_lines=lines)
                carried, trim = [], False
            kept.append(updated)
        return kept

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        if not self._dead_lines:
            return updated_node
        return updated_node.with_changes(body=self._without_dead(updated_node.body, original_node.body, in_block=False))

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock) -> cst.IndentedBlock:
        if not any(stmt in self._dead_lines for stmt in original_node.body):
            return updated_node
        body = self._without_dead(updated_node.body, original_node.body, in_block=True)
        return updated_node.with_changes(body=body or [cst.SimpleStatementLine([cst.Pass()])])

    INVALID = [
        Invalid(
            id="dead-import-goes",
            before="""\
                from init import Session
                from core.db import get_session


                def load():
                    session = Session()
                    return session
                """,
            after="""\
                from core.db import get_session


                def load():
                    session = get_session()
                    return session
                """,
            expect=(Expect("SF001", "safe", "init does not exist"), Expect("SF003", "safe", "")),
        ),
        Invalid(
            id="other-names-stay",
            before="""\
                from init import Session, engine


                def load():
                    return Session(), engine
                """,
            after="""\
                from init import engine
                from core.db import get_session


                def load():
                    return get_session(), engine
                """,
            expect=(Expect("SF001", "safe", "nothing uses Session"), Expect("SF003", "safe", "")),
        ),
        Invalid(
            id="local-import-first-in-block",
            before="""\
                def report(error):
                    try:
                        raise error
                    except ValueError:
                        from init import Session

                        session = Session()
                        return session
                """,
            after="""\
                def report(error):
                    try:
                        raise error
                    except ValueError:
                        from core.db import get_session

                        session = get_session()
                        return session
                """,
            expect=(Expect("SF001", "safe", "nothing uses Session"), Expect("SF003", "safe", "")),
        ),
        Invalid(
            id="re-export-in-all-stays",
            before="""\
                from init import Session

                __all__ = ["Session"]
                """,
            after=None,
            expect=(Expect("SF001", "report", "re-exports it"),),
        ),
        Invalid(
            id="remaining-use-keeps-import",
            before="""\
                from init import Session


                def is_session(value):
                    return isinstance(value, Session)
                """,
            after=None,
            expect=(Expect("SF001", "report", "no rule rewrote this use"),),
        ),
    ]
    VALID = [
        Valid(
            id="init-module-exists",
            code="""\
                from init import Session


                def load():
                    with Session() as session:
                        return session
                """,
            files={
                "pyproject.toml": "[tool.sessionfix]\n",
                "init.py": "from sqlalchemy.orm import sessionmaker\n\nSession = sessionmaker()\n",
            },
        ),
    ]
