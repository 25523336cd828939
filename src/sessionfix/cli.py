"""The `sessionfix` command line (typer + rich).

Exit codes: 0 clean / applied, 1 changes or findings pending, 2 error (bad input, a file that
does not parse, an internal error). Errors are one line; `--debug` shows tracebacks.
"""

from __future__ import annotations

import dataclasses
import os
import enum
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Iterator, List, Optional, Sequence

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

from sessionfix import __version__
from sessionfix.config import check_dotted_option
from sessionfix.errors import DEBUG_ENV, UserError
from sessionfix.model import FileResult
from sessionfix.report.diff import print_diff, unified_diff
from sessionfix.report.records import record_line, results_json, summary_counts
from sessionfix.session import Run, prepare, prepare_all
from sessionfix.source import write_atomic

if TYPE_CHECKING:
    from sessionfix.rule import Rule

app = typer.Typer(
    name="sessionfix",
    help="Find and repair SQLAlchemy session anti-patterns, keeping every comment and byte.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class OutputFormat(str, enum.Enum):
    text = "text"
    json = "json"


class GroupBy(str, enum.Enum):
    file = "file"
    directory = "directory"


Paths = Annotated[Optional[List[Path]], typer.Argument(help="Files or directories (default: the current directory).")]
SyncContext = Annotated[Optional[str], typer.Option("--sync-context", help="Dotted name of the sync context-manager helper (default: from pyproject).")]
SyncFactory = Annotated[Optional[str], typer.Option("--sync-factory", help="Dotted name of the plain session factory (default: from pyproject).")]
AsyncContext = Annotated[Optional[str], typer.Option("--async-context", help="Dotted name of the async context-manager helper (default: from pyproject).")]
RawFactory = Annotated[Optional[List[str]], typer.Option("--raw-factory", help="Dotted name of a raw factory to replace; repeatable (default: raw-factories from pyproject).")]
Exclude = Annotated[Optional[List[str]], typer.Option("--exclude", help="Glob of paths to skip; repeatable (default: exclude from pyproject).")]
Select = Annotated[Optional[List[str]], typer.Option("--select", help="Only run these rules (code or name); repeatable (default: all).")]
Unsafe = Annotated[bool, typer.Option("--unsafe", help="Also apply fixes that change behaviour (default: off).")]
NoColor = Annotated[bool, typer.Option("--no-color", help="Never colour the output (default: colour on a terminal).")]
Format = Annotated[OutputFormat, typer.Option("--format", help="Output format (default: text).")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors (default: off).")]
Jobs = Annotated[Optional[int], typer.Option("--jobs", "-j", min=1, help="Worker processes (default: the number of cores).")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write .sessionfix_cache/ at the project root (default: use it).")]


def _overrides(sync_context: str | None, sync_factory: str | None, async_context: str | None,
               raw_factory: list[str] | None, exclude: list[str] | None, unsafe: bool) -> dict[str, object]:
    for option, value in (("sync-context", sync_context), ("sync-factory", sync_factory),
                          ("async-context", async_context)):
        if value is not None:
            check_dotted_option(option, value)
    for value in raw_factory or ():
        check_dotted_option("raw-factory", value)
    return dict(sync_context=sync_context, sync_factory=sync_factory, async_context=async_context,
                raw_factories=tuple(raw_factory or ()), exclude=tuple(exclude or ()), unsafe=unsafe or None)


def _consoles(no_color: bool) -> tuple[Console, Console]:
    out = Console(no_color=no_color or None, highlight=False, soft_wrap=True)
    err = Console(stderr=True, no_color=no_color or None, highlight=False, soft_wrap=True)
    return out, err


def _fail(err: Console, error: UserError | Exception, debug: bool) -> typer.Exit:
    if debug:
        raise error
    err.print(f"sessionfix: error: {error}", markup=False)
    return typer.Exit(2)


def _selected(select: list[str] | None) -> Sequence[type[Rule]] | None:
    """The rules `--select` names; None for all of them (imported only if a file needs them)."""
    if not select:
        return None
    from sessionfix.registry import select_rules

    return select_rules(select)


def _run(paths: list[Path] | None, overrides: dict[str, object], select: list[str] | None,
         debug: bool = False) -> Run:
    if debug:
        os.environ[DEBUG_ENV] = "1"  # worker processes inherit it
    return prepare(list(paths or []), overrides, _selected(select))


def _runs(paths: list[Path] | None, overrides: dict[str, object], select: list[str] | None,
          debug: bool = False, no_cache: bool = True) -> list[Run]:
    """diff/fix: one run per project under the given paths (see session.prepare_all)."""
    if debug:
        os.environ[DEBUG_ENV] = "1"
    return prepare_all(list(paths or []), overrides, _selected(select), cache=not no_cache)


def _process_all(runs: list[Run], err: Console, jobs: int | None, no_cache: bool, show: bool) -> list[FileResult]:
    return [result for run in runs for result in _processed(_engine(run, err, jobs, no_cache), err, show)]


def _engine(run: Run, err: Console, jobs: int | None, no_cache: bool) -> Run:
    """diff/fix: the prefilter, worker processes, the cache, and no bytes kept for unchanged files."""
    from sessionfix.parallel import default_jobs

    run.prefilter = True
    run.jobs = jobs or default_jobs()
    run.use_cache = not no_cache
    run.keep_original = False
    run.warn = lambda message: err.print(message, markup=False, style="yellow")
    return run


def _processed(run: Run, err: Console, show: bool) -> Iterator[FileResult]:
    from sessionfix.progress import with_progress

    return with_progress(run.process(), len(run.files), err, enabled=show)


def _vouch(runs: list[Run], results: list[FileResult], paths: list[Path] | None, overrides: dict[str, object],
           select: list[str] | None) -> None:
    """Tell the run's recorder (see sessionfix.replay) whether the cache alone gives `results`:
    the cache is asked again, exactly as the next run will ask it, while the recorder watches
    what that consults. If it gives the same results, the next run can be a replay."""
    from sessionfix.replay import current

    recorder = current()
    if recorder is None or recorder.written() or any(r.error for r in results):
        return  # a warning already written is not something the cache would say again
    if not all(run.use_cache and run.rules is None for run in runs):
        return  # the cache cannot answer on its own (see Run._light_key)
    recorder.watch()
    warnings: list[str] = []
    again = prepare_all(list(paths or []), overrides, _selected(select), cache=True)
    fresh: list[FileResult] = []
    for run in again:
        run.prefilter, run.use_cache, run.keep_original, run.warn = True, True, False, warnings.append
        answered = run.cached_answer()
        if answered is None:
            return
        fresh.extend(answered)
    if warnings or _shown(fresh) != _shown(results):
        return
    recorder.answered_by_cache([str(run.config.root) for run in again])


def _shown(results: list[FileResult]) -> list[tuple[object, ...]]:
    """What `diff` prints of each result."""
    return [(r.display_path, r.new_source if r.changed else None, r.changes, r.findings, r.error) for r in results]


def _summary(err: Console, results: list[FileResult], verb: str) -> None:
    counts = summary_counts(results)
    err.print(
        f"{counts['changed_files']} file(s) {verb}, {counts['changes']} change(s), "
        f"{counts['findings']} finding(s) for review, {counts['errors']} error(s) "
        f"in {counts['files']} file(s) checked",
        markup=False,
    )


def _print_findings(err: Console, results: list[FileResult]) -> None:
    for result in results:
        if result.error:
            err.print(result.error, markup=False, style="bold red")
        for finding in result.findings:
            err.print(record_line(finding), markup=False, style="yellow")


@app.command()
def diff(
    paths: Paths = None,
    sync_context: SyncContext = None,
    sync_factory: SyncFactory = None,
    async_context: AsyncContext = None,
    raw_factory: RawFactory = None,
    exclude: Exclude = None,
    select: Select = None,
    unsafe: Unsafe = False,
    no_color: NoColor = False,
    format: Format = OutputFormat.text,
    debug: Debug = False,
    jobs: Jobs = None,
    no_cache: NoCache = False,
) -> None:
    """Show the fixes as a unified diff; change nothing.

    Exit 0 when nothing would change, 1 when changes are pending, 2 on errors.
    """
    out, err = _consoles(no_color)
    try:
        overrides = _overrides(sync_context, sync_factory, async_context, raw_factory, exclude, unsafe)
        runs = _runs(paths, overrides, select, debug, no_cache)
        results = _process_all(runs, err, jobs, no_cache, format is OutputFormat.text)
        _vouch(runs, results, paths, overrides, select)
    except UserError as error:
        raise _fail(err, error, debug)
    diffs = {r.display_path: unified_diff(r) for r in results if r.changed}
    if format is OutputFormat.json:
        sys.stdout.write(json.dumps(results_json(results, diffs), indent=2) + "\n")
    else:
        for result in results:
            if result.changed:
                print_diff(out, diffs[result.display_path])
                for change in result.changes:
                    err.print(record_line(change), markup=False, style="dim")
        _print_findings(err, results)
        _summary(err, results, "would change")
    if any(r.error for r in results):
        raise typer.Exit(2)
    raise typer.Exit(1 if any(r.changed for r in results) else 0)


@app.command()
def fix(
    paths: Paths = None,
    sync_context: SyncContext = None,
    sync_factory: SyncFactory = None,
    async_context: AsyncContext = None,
    raw_factory: RawFactory = None,
    exclude: Exclude = None,
    select: Select = None,
    unsafe: Unsafe = False,
    no_color: NoColor = False,
    format: Format = OutputFormat.text,
    debug: Debug = False,
    branch_per_file: Annotated[bool, typer.Option(
        "--branch-per-file", help="Commit each fixed file to its own git branch instead of writing in place "
        "(default: off). The working tree, index and HEAD are left as they are.")] = False,
    branch_prefix: Annotated[str, typer.Option("--branch-prefix", help="Prefix of branch names (default: sessionfix/).")] = "sessionfix/",
    base: Annotated[str, typer.Option("--base", help="Commit the branches start from (default: HEAD).")] = "HEAD",
    group_by: Annotated[GroupBy, typer.Option("--group-by", help="One branch per file or per top-level directory (default: file).")] = GroupBy.file,
    force: Annotated[bool, typer.Option("--force", help="Replace existing branches whose content differs (default: off).")] = False,
    jobs: Jobs = None,
    no_cache: NoCache = False,
) -> None:
    """Apply the safe fixes in place (with --unsafe, the unsafe ones too).

    Exit 0 when nothing is left, 1 when findings remain for a human, 2 on errors.
    """
    out, err = _consoles(no_color)
    try:
        runs = _runs(paths, _overrides(sync_context, sync_factory, async_context, raw_factory, exclude, unsafe), select,
                     debug, no_cache)
        results = []
        streamed = (result for run in runs
                    for result in _processed(_engine(run, err, jobs, no_cache), err, format is OutputFormat.text))
        for result in streamed:
            if result.changed and result.new_source is not None and not branch_per_file:
                try:
                    write_atomic(result.path, result.new_source)
                except OSError as exc:
                    result.error = f"{result.display_path}: cannot write ({exc.strerror}); file left unchanged"
                    result.new_source = None
            results.append(result)
        if branch_per_file:
            _branches(out, err, runs[0], results, base=base, prefix=branch_prefix, group_by=group_by.value,
                      force=force, as_json=format is OutputFormat.json)
    except UserError as error:
        raise _fail(err, error, debug)
    if branch_per_file:
        if format is not OutputFormat.json:
            _print_findings(err, results)
        if any(r.error for r in results):
            raise typer.Exit(2)
        raise typer.Exit(1 if any(r.findings for r in results) else 0)
    if format is OutputFormat.json:
        sys.stdout.write(json.dumps(results_json(results), indent=2) + "\n")
    else:
        for result in results:
            if result.changed:
                out.print(f"fixed {result.display_path}", markup=False, style="green")
                for change in result.changes:
                    out.print("  " + record_line(change), markup=False)
        _print_findings(err, results)
        _summary(err, results, "fixed")
    if any(r.error for r in results):
        raise typer.Exit(2)
    raise typer.Exit(1 if any(r.findings for r in results) else 0)


def _branches(out: Console, err: Console, run: Run, results: list[FileResult], *, base: str, prefix: str,
              group_by: str, force: bool, as_json: bool) -> None:
    from sessionfix.branches import create_branches

    if any(r.error for r in results):
        raise UserError("some files could not be processed (see above); no branch created")
    outcomes = create_branches(run.config.root, results, base=base, prefix=prefix, group_by=group_by, force=force)  # type: ignore[arg-type]
    if as_json:
        manifest = [{**dataclasses.asdict(o), "files": list(o.files)} for o in outcomes]
        sys.stdout.write(json.dumps({"branches": manifest}, indent=2) + "\n")
        return
    table = Table("branch", "files", "changes", "status")
    for outcome in outcomes:
        table.add_row(outcome.branch, ", ".join(outcome.files), str(outcome.changes), outcome.status)
    out.print(table)
    err.print(f"{len(outcomes)} branch(es); your working tree, index and HEAD were not touched", markup=False)


@app.command()
def rules(
    rule: Annotated[Optional[str], typer.Argument(help="A rule code or name to show its full docs.")] = None,
    no_color: NoColor = False,
) -> None:
    """List the rules, or print one rule's documentation."""
    from sessionfix.registry import RULES, find_rule

    out, err = _consoles(no_color)
    if rule is None:
        table = Table("code", "name", "summary", "fixes")
        for item in sorted(RULES, key=lambda r: r.CODE):
            table.add_row(item.CODE, item.NAME, item.SUMMARY, ", ".join(a.value for a in item.APPLICABILITIES))
        out.print(table)
        return
    try:
        found = find_rule(rule)
    except UserError as error:
        raise _fail(err, error, False)
    from sessionfix.docs import render_docs

    out.print(Markdown(render_docs(found)))


@app.command()
def version() -> None:
    """Print the sessionfix version."""
    typer.echo(__version__)


from sessionfix.commands import register_all  # noqa: E402  (commands need `app`)

register_all(app)


def main() -> None:
    app()
