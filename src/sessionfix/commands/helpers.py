"""`sessionfix helpers`: what each configured helper does on exit, and the line that shows it.

Rules strip a `commit()` only when the helper commits and a `rollback()` only when it rolls back;
this command prints those facts so a reviewer can check them against the code. Exit 0 once the
configuration loads (an unanalysable helper is shown with the reason, not an error), 2 on errors.
"""

# No `from __future__ import annotations`: typer reads these annotations at run time.

import json
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import typer
from rich.table import Table

from sessionfix.config import Settings, declared_dependencies, load_config
from sessionfix.index import ProjectIndex
from sessionfix.model import HelperSemantics

#: the configured helpers, as (option, Settings attribute)
HELPERS = (("sync-context", "sync_context"), ("sync-factory", "sync_factory"), ("async-context", "async_context"))


def derive(project: ProjectIndex, settings: Settings) -> List[Tuple[str, Optional[HelperSemantics]]]:
    from sessionfix.semantics import analyse_helper  # reads helpers with libcst: only when asked

    """(option, semantics or None when the option is not set) for every helper option."""
    out = []
    for option, attribute in HELPERS:
        dotted = getattr(settings, attribute)
        out.append((option, analyse_helper(project, dotted) if dotted else None))
    return out


def as_json(derived: List[Tuple[str, Optional[HelperSemantics]]]) -> Dict[str, Any]:
    helpers = []
    for option, semantics in derived:
        if semantics is None:
            helpers.append({"option": option, "name": None})
            continue
        helpers.append({
            "option": option,
            "name": semantics.name,
            "kind": semantics.kind,
            "location": semantics.location or None,
            "analysed": semantics.analysed,
            "facts": {
                key: {"value": fact.value, "evidence": fact.evidence}
                for key, fact in (("commits_on_exit", semantics.commits_on_exit),
                                  ("rolls_back_on_error", semantics.rolls_back_on_error),
                                  ("closes", semantics.closes),
                                  ("propagates_errors", semantics.propagates_errors))
            },
        })
    return {"helpers": helpers}


def as_table(derived: List[Tuple[str, Optional[HelperSemantics]]]) -> Table:
    table = Table("option", "helper", "fact", "value", "from")
    for option, semantics in derived:
        if semantics is None:
            table.add_row(option, "-", "-", "not configured", "-", end_section=True)
            continue
        from sessionfix.semantics import describe

        rows = describe(semantics)
        for index, (fact, value, evidence) in enumerate(rows):
            first = index == 0
            table.add_row(option if first else "", semantics.name if first else "", fact, value, evidence,
                          end_section=index == len(rows) - 1)
    return table


def register(app: typer.Typer) -> None:
    from sessionfix.cli import AsyncContext, Debug, Format, NoColor, OutputFormat, SyncContext, SyncFactory, _consoles, _fail
    from sessionfix.config import check_dotted_option
    from sessionfix.errors import UserError

    @app.command(name="helpers")
    def helpers(
        path: Optional[Path] = typer.Argument(None, help="The project (a directory or a file in it; default: the current directory)."),
        sync_context: SyncContext = None,
        sync_factory: SyncFactory = None,
        async_context: AsyncContext = None,
        no_color: NoColor = False,
        format: Format = OutputFormat.text,
        debug: Debug = False,
    ) -> None:
        """Show what each configured session helper does on exit, and the file:line that shows it.

        Exit 0 when the configuration loads (a helper that cannot be analysed says why), 2 on errors.
        """
        out, err = _consoles(no_color)
        try:
            target = path or Path.cwd()
            if not target.exists():
                raise UserError(f"{target}: no such file or directory")
            overrides = {"sync_context": sync_context, "sync_factory": sync_factory, "async_context": async_context}
            for key, value in overrides.items():
                if value is not None:
                    check_dotted_option(key.replace("_", "-"), value)
            config = load_config(target)
            settings = config.settings.with_overrides(**overrides)
            project = ProjectIndex(config.root, declared=declared_dependencies(config.pyproject))
            derived = derive(project, settings)
        except UserError as error:
            raise _fail(err, error, debug)
        if format is OutputFormat.json:
            sys.stdout.write(json.dumps(as_json(derived), indent=2) + "\n")
            return
        out.print(as_table(derived))
        if all(semantics is None for _, semantics in derived):
            err.print("no helper configured: set sync-context, sync-factory or async-context in "
                      "[tool.sessionfix]", markup=False)
