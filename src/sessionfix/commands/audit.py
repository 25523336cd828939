"""`sessionfix audit`: every session site classified, the compliance figure, and the fix plan.

Exit codes: 0 when the report was produced (whatever it says: an audit is a report, use
`sessionfix check` to fail a build), 2 on errors (bad configuration, a file that cannot be read
or parsed; the report is still printed for the other files).
"""

# No `from __future__ import annotations`: typer reads these annotations at run time, and the
# option types are imported inside register() (cli.py imports this module while it is loading).

import enum
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.console import Console

from sessionfix.errors import UserError

if TYPE_CHECKING:  # the audit reads every file with libcst: imported when it runs
    from sessionfix.audit import Audit


class AuditFormat(str, enum.Enum):
    table = "table"
    markdown = "markdown"
    json = "json"
    sarif = "sarif"


def default_format(output: Optional[Path]) -> AuditFormat:
    """A table on a terminal, Markdown when piped or written to a file."""
    return AuditFormat.table if output is None and sys.stdout.isatty() else AuditFormat.markdown


def register(app: typer.Typer) -> None:
    from sessionfix.cli import (AsyncContext, Debug, Exclude, NoColor, Paths, RawFactory, Select, SyncContext,
                                SyncFactory, Unsafe, _consoles, _fail, _overrides, _run)

    Format = Annotated[Optional[AuditFormat], typer.Option(
        "--format", help="table, markdown, json or sarif (default: table on a terminal, else markdown).")]
    Output = Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="Write the report to this file (default: standard output).")]

    @app.command(name="audit")
    def audit(
        paths: Paths = None,
        sync_context: SyncContext = None,
        sync_factory: SyncFactory = None,
        async_context: AsyncContext = None,
        raw_factory: RawFactory = None,
        exclude: Exclude = None,
        select: Select = None,
        unsafe: Unsafe = False,
        format: Format = None,
        output: Output = None,
        no_color: NoColor = False,
        debug: Debug = False,
    ) -> None:
        """Classify every session site and plan the fixes; change nothing.

        Exit 0 when the report was written (an audit never fails a build; see `check`), 2 on errors.
        """
        out, err = _consoles(no_color)
        try:
            run = _run(paths, _overrides(sync_context, sync_factory, async_context, raw_factory, exclude, unsafe),
                       select)
            results = list(run.process())
        except UserError as error:
            raise _fail(err, error, debug)
        from sessionfix.audit import build_audit
        from sessionfix.report.table import print_table

        report = build_audit(results, run.project, run.settings)
        chosen = format or default_format(output)
        if chosen is AuditFormat.table and output is None:
            print_table(out, report)
        else:
            text = render(chosen, report)
            if output is None:
                sys.stdout.write(text)
            else:
                try:
                    output.write_text(text, encoding="utf-8")
                except OSError as exc:
                    raise _fail(err, UserError(f"{output}: cannot write ({exc.strerror})"), debug)
        for error in report.errors:
            err.print(error, markup=False, style="bold red")
        raise typer.Exit(2 if report.errors else 0)


def render(chosen: AuditFormat, report: "Audit") -> str:
    from sessionfix.audit import audit_json
    from sessionfix.report.markdown import render_markdown
    from sessionfix.report.sarif import render_sarif
    from sessionfix.report.table import print_table

    """The report as text; a table is rendered without colour, 160 columns wide."""
    if chosen is AuditFormat.table:
        buffer = io.StringIO()
        print_table(Console(file=buffer, no_color=True, width=160), report)
        return buffer.getvalue()
    if chosen is AuditFormat.markdown:
        return render_markdown(report)
    data = audit_json(report) if chosen is AuditFormat.json else render_sarif(report)
    return json.dumps(data, indent=2) + "\n"
