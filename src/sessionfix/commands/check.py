"""`sessionfix check`: one line per finding and per pending fix, for CI and pre-commit.

Exit codes: 0 clean, 1 when there is any finding or pending fix, 2 on errors (bad
configuration, a file that cannot be read or parsed). Lines go to standard output as
`path:line:col: SFxxx message` (path relative to the current directory); errors and a one-line
summary go to standard error.

Paths are grouped by the project they belong to (the nearest pyproject.toml), so a pre-commit
run that passes files from two projects of a monorepo checks each with its own configuration.
"""

# No `from __future__ import annotations`: typer reads these annotations at run time.

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Dict, List, Optional, Sequence

import pathspec
import typer

from sessionfix.config import find_pyproject
from sessionfix.model import FileResult
from sessionfix.report.records import record_line
from sessionfix.session import Run


def group_by_project(paths: Sequence[Path]) -> List[List[Path]]:
    """The given paths, grouped by their nearest pyproject.toml, in first-seen order."""
    groups: Dict[Optional[Path], List[Path]] = {}
    for path in paths:
        groups.setdefault(find_pyproject(path) if path.exists() else None, []).append(path)
    return list(groups.values())


def apply_excludes(run: Run) -> None:
    """Drop files the configured excludes match, even when they were named explicitly."""
    spec = pathspec.GitIgnoreSpec.from_lines(list(run.settings.exclude))
    kept = []
    for file in run.files:
        try:
            relative = file.relative_to(run.config.root).as_posix()
        except ValueError:
            relative = file.as_posix()
        if not spec.match_file(relative):
            kept.append(file)
    run.files = kept


def shown_path(path: Path) -> str:
    """The path as editors and CI logs want it: relative to the current directory."""
    try:
        return Path(os.path.relpath(path, Path.cwd())).as_posix()
    except ValueError:  # another drive on Windows
        return path.as_posix()


def check_lines(results: Sequence[FileResult]) -> List[str]:
    """Every finding and every pending fix, sorted by file and position, paths from the cwd.

    Runs over several projects name files relative to different roots; the current directory
    is the one root every line can share.
    """
    lines = []
    for result in sorted(results, key=lambda r: shown_path(r.path)):
        if result.error is None:
            path = shown_path(result.path)
            lines += [record_line(replace(record, location=replace(record.location, path=path)))
                      for record in result.records]
    return lines


def register(app: typer.Typer) -> None:
    from sessionfix.cli import (AsyncContext, Debug, Exclude, NoColor, Paths, RawFactory, Select, SyncContext,
                                SyncFactory, Unsafe, _consoles, _fail, _overrides, _run)
    from sessionfix.errors import UserError

    ForceExclude = Annotated[bool, typer.Option(
        "--force-exclude", help="Apply the excludes to files named on the command line too, as pre-commit "
                                "passes them (default: off; a named file is always checked).")]

    @app.command(name="check")
    def check(
        paths: Paths = None,
        sync_context: SyncContext = None,
        sync_factory: SyncFactory = None,
        async_context: AsyncContext = None,
        raw_factory: RawFactory = None,
        exclude: Exclude = None,
        select: Select = None,
        unsafe: Unsafe = False,
        force_exclude: ForceExclude = False,
        no_color: NoColor = False,
        debug: Debug = False,
    ) -> None:
        """Report every finding and pending fix as path:line:col lines; change nothing.

        Exit 0 when clean, 1 when there is any finding or pending fix, 2 on errors.
        """
        _, err = _consoles(no_color)
        results: List[FileResult] = []
        try:
            overrides = _overrides(sync_context, sync_factory, async_context, raw_factory, exclude, unsafe)
            for group in group_by_project(list(paths or [])) or [[]]:
                run = _run(group, overrides, select)
                if force_exclude:
                    apply_excludes(run)
                results += run.process()
        except UserError as error:
            raise _fail(err, error, debug)
        lines = check_lines(results)
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        errors = [r.error for r in results if r.error]
        for error in errors:
            err.print(error, markup=False, style="bold red")
        err.print(f"{len(lines)} finding(s) and pending fix(es), {len(errors)} error(s) "
                  f"in {len(results)} file(s) checked", markup=False)
        raise typer.Exit(2 if errors else 1 if lines else 0)
