"""Which files a run looks at: Python files under the given paths, minus excludes and
whatever git ignores. A file named explicitly on the command line is always included."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pathspec

from sessionfix.errors import UserError
from sessionfix.replay import PROBE

_ALWAYS_SKIPPED = frozenset(
    {".git", ".hg", ".svn", ".venv", "venv", "__pycache__", "node_modules", ".tox", ".nox",
     ".mypy_cache", ".pytest_cache", ".ruff_cache", ".sessionfix_cache", ".eggs"}
)


def _git_visible(root: Path, directory: Path) -> set[Path] | None:
    """Tracked and untracked-but-not-ignored files under `directory` (itself resolved, the
    files as written under it), or None outside git."""
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            capture_output=True, check=False, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return {directory / name for name in result.stdout.decode("utf-8", "surrogateescape").split("\0") if name}


def _walk(directory: Path) -> Iterator[tuple[Path, bool]]:
    """(path under `directory`, is a symlink) for every Python file, in sorted order, without
    following directory symlinks (as os.walk); one scandir per directory, no stat per file."""
    try:
        with os.scandir(directory) as scan:
            entries = sorted(scan, key=lambda e: e.name)
    except OSError:
        return
    subdirectories = []
    for entry in entries:
        name = entry.name
        try:
            if entry.is_dir():
                if not entry.is_symlink() and name not in _ALWAYS_SKIPPED and not name.endswith(".egg-info"):
                    subdirectories.append(entry)
                continue
            if name.endswith(".py") or name.endswith(".pyi"):
                yield Path(entry.path), entry.is_symlink()
        except OSError:
            continue
    for entry in subdirectories:
        yield from _walk(Path(entry.path))


def discover(paths: Sequence[Path], root: Path, exclude: Iterable[str] = ()) -> list[Path]:
    """Files to process, sorted, deduplicated, as absolute paths."""
    spec = pathspec.GitIgnoreSpec.from_lines(list(exclude))
    found: dict[Path, None] = {}
    for given in paths:
        sys.audit(PROBE, given)  # a symlink retargeted, a file turned directory: see sessionfix.replay
        if not given.exists():
            raise UserError(f"{given}: no such file or directory")
        path = given.resolve()
        if path.is_file():
            found[path] = None
            continue
        visible = _git_visible(root, path)
        for file, linked in _walk(path):
            if visible is not None and file not in visible:
                continue
            resolved = file.resolve() if linked else file  # under a resolved directory already
            try:
                relative = resolved.relative_to(root).as_posix()
            except ValueError:
                relative = resolved.as_posix()
            if spec.match_file(relative):
                continue
            found[resolved] = None
    return sorted(found)
