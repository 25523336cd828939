"""SF000 missing-import: report imports whose module, or name, does not exist (report only)."""

from __future__ import annotations

import libcst as cst
import libcst.matchers as m
from libcst.metadata import ParentNodeProvider

from sessionfix.config import Settings
from sessionfix.index import dotted_name, resolve_relative
from sessionfix.model import Applicability
from sessionfix.rule import Expect, Invalid, PrefilterNeeds, Rule, Valid

REPORT = Applicability.REPORT
_GUARDS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


class MissingImport(Rule):
    """
    ## What it does
    Reports `import M` and `from M import N` where the module M is neither in the project nor
    installed, or where M exists but defines no N. Modules are resolved as Python would
    (package before module, the project root and a `src/` layout on the path), without
    importing any of the project's code.

    ## Why is this bad?
    The statement raises `ImportError` when it runs. Inside a function or an `except` block that
    can be a long time after deployment, on exactly the path nobody tested.

    ## Example
    {example}

    ## Fix safety
    Report only: the fix depends on what the import was for. Imports of configured raw session
    factories are fixed through SF001-SF003. Imports guarded by `try: ... except ImportError:`
    are deliberate and not reported.
    """

    CODE = "SF000"
    NAME = "missing-import"
    SUMMARY = "Report imports of modules or names that do not exist"
    APPLICABILITIES = (REPORT,)
    ORDER = 100
    PLANS_IN_VISIT_MODULE = True  # a report: it changes nothing, so the tree is never walked

    @classmethod
    def prefilter_needs(cls, settings: Settings) -> PrefilterNeeds:
        """Only files with an import that may not resolve."""
        return PrefilterNeeds(missing_imports=True)

    def _guarded(self, node: cst.CSTNode) -> bool:
        current: cst.CSTNode | None = node
        while current is not None:
            parent = self.get_metadata(ParentNodeProvider, current, None)
            if isinstance(parent, cst.Try) and current is parent.body:
                for handler in parent.handlers:
                    if handler.type is None:
                        return True
                    types = handler.type.elements if isinstance(handler.type, cst.Tuple) else [handler.type]
                    for t in types:
                        name = t.value if isinstance(t, cst.Element) else t
                        if m.matches(name, m.Name()) and name.value in _GUARDS:  # type: ignore[union-attr]
                            return True
            current = parent
        return False

    def visit_Module(self, node: cst.Module) -> None:
        for statement in self.nodes_of(cst.Import):
            self._check_import(statement)
        for found in self.nodes_of(cst.ImportFrom):
            self._check_import_from(found)

    def _check_import(self, node: cst.Import) -> None:
        for alias in node.names:
            module = alias.evaluated_name
            if self.project.status(module) == "missing" and not self._guarded(node):
                self.finding(alias, f"module {module} is neither in the project nor installed",
                             category="missing-import")

    def _check_import_from(self, node: cst.ImportFrom) -> None:
        written = dotted_name(node.module) if node.module else None
        module = resolve_relative(len(node.relative), written, self.package)
        if module is None:
            self.finding(node, "relative import climbs above the top-level package", category="missing-import")
            return
        problems: list[tuple[cst.CSTNode, str]] = []
        if self.project.status(module) == "missing":
            problems.append((node, f"module {module} is neither in the project nor installed"))
        elif not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                found = self.project.lookup(module, alias.evaluated_name)
                if found.status == "missing-name":
                    where = self.project.display(found.module.path) if found.module and found.module.path else module
                    problems.append((alias, f"{where} defines no {alias.evaluated_name}"))
        if problems and not self._guarded(node):  # the guard is asked last: it needs every node's parent
            for site, message in problems:
                self.finding(site, message, category="missing-import")

    INVALID = [
        Invalid(
            id="module-missing",
            before="""\
                import legacy_settings
                """,
            after=None,
            expect=(Expect("SF000", "report", "module legacy_settings is neither"),),
        ),
        Invalid(
            id="name-missing",
            before="""\
                from core.db import get_engine
                """,
            after=None,
            expect=(Expect("SF000", "report", "core/db.py defines no get_engine"),),
        ),
        Invalid(
            id="package-shadows-module",
            before="""\
                from db import get_session
                """,
            after=None,
            expect=(Expect("SF000", "report", "db/__init__.py defines no get_session"),),
            files={
                "pyproject.toml": "[tool.sessionfix]\n",
                "db/__init__.py": "from .engine import engine\n",
                "db/engine.py": "engine = None\n",
                "db.py": "def get_session():\n    return None\n",
            },
        ),
    ]
    VALID = [
        Valid(
            id="guarded-import",
            code="""\
                try:
                    import ujson as json
                except ImportError:
                    import json
                """,
        ),
        Valid(
            id="installed-and-project-modules",
            code="""\
                import os.path
                from core.db import get_session
                from sqlalchemy.orm import Session
                """,
        ),
    ]
