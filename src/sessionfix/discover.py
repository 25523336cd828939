"""Which files a run looks at: Python files under the given paths, minus excludes and
whatever git ignores. A file named explicitly on the command line is always included."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import pathspec

from sessionfix.errors import UserError

_ALWAYS_SKIPPED = frozenset(
    {".git", ".hg", ".svn", ".venv", "venv", "__pycache__", "node_modules", ".tox", ".nox",
     ".mypy_cache", ".pytest_cache", ".ruff_cache", ".sessionfix_cache", ".eggs"}
)


def _git_visible(root: Path, directory: Path) -> set[Path] | None:
    """Tracked and untracked-but-not-ignored files under `directory`, or None outside git."""
    try:
        result = subprocess.run(
            ["git", "-C", str(directory), "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            capture_output=True, check=False, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return {(directory / name).resolve() for name in result.stdout.decode("utf-8", "surrogateescape").split("\0") if name}


def _walk(directory: Path) -> Iterator[Path]:
    for current, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d not in _ALWAYS_SKIPPED and not d.endswith(".egg-info"))
        for name in sorted(files):
            if name.endswith(".py") or name.endswith(".pyi"):
                yield Path(current) / name


def discover(paths: Sequence[Path], root: Path, exclude: Iterable[str] = ()) -> list[Path]:
    """Files to process, sorted, deduplicated, as absolute paths."""
    spec = pathspec.GitIgnoreSpec.from_lines(list(exclude))
    found: dict[Path, None] = {}
    for given in paths:
        if not given.exists():
            raise UserError(f"{given}: no such file or directory")
        path = given.resolve()
        if path.is_file():
            found[path] = None
            continue
        visible = _git_visible(root, path)
        for file in _walk(path):
            resolved = file.resolve()
            if visible is not None and resolved not in visible:
                continue
            try:
                relative = resolved.relative_to(root).as_posix()
            except ValueError:
                relative = resolved.as_posix()
            if spec.match_file(relative):
                continue
            found[resolved] = None
    return sorted(found)
