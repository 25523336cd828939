"""Reading, parsing, verifying and atomically writing Python files, byte for byte.

libcst keeps the encoding (PEP 263 cookie or BOM) and line endings of what it parses, so a
module's `.bytes` round-trips exactly; this module adds the checks and the atomic write.
"""

from __future__ import annotations

import ast
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import libcst as cst


class SourceError(Exception):
    """A file that cannot be read or parsed; `line` points at the problem."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass(frozen=True)
class SourceFile:
    path: Path
    raw: bytes
    tree: cst.Module


def parse(raw: bytes) -> cst.Module:
    """Parse with libcst's own (newest) grammar, whatever Python runs sessionfix."""
    import libcst as cst  # here, not at the top: a run answered from the cache never parses
    try:
        return cst.parse_module(raw)
    except cst.ParserSyntaxError as exc:
        # CPython's own parser pins the error more precisely when it can read the file.
        try:
            compile(raw, "<file>", "exec", flags=ast.PyCF_ONLY_AST, dont_inherit=True)
        except SyntaxError as py:
            raise SourceError(f"syntax error: {py.msg}", py.lineno or 1, py.offset or 1) from None
        except (ValueError, UnicodeDecodeError):
            pass
        message = exc.message.removeprefix("parser error: ")
        raise SourceError(f"syntax error: {message}", exc.raw_line, exc.raw_column + 1) from None
    except (UnicodeDecodeError, LookupError, SyntaxError, ValueError) as exc:
        raise SourceError(f"cannot decode: {exc}") from None


def read_python(path: Path) -> SourceFile:
    raw = path.read_bytes()
    return SourceFile(path, raw, parse(raw))


def compiles(raw: bytes, filename: str) -> bool:
    try:
        compile(raw, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return False
    return True


def verify_rewrite(original: bytes, new: bytes, filename: str) -> str | None:
    """Why `new` must not be written, or None when it is sound.

    The new text must parse again; it must also compile wherever the original compiled
    (a file using syntax newer than this interpreter is checked by re-parsing only).
    """
    try:
        parse(new)
    except SourceError as exc:
        return f"rewrite does not parse ({exc.message} at line {exc.line})"
    if compiles(original, filename) and not compiles(new, filename):
        try:
            compile(new, filename, "exec", dont_inherit=True)
        except SyntaxError as exc:
            return f"rewrite does not compile ({exc.msg} at line {exc.lineno})"
    return None


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` in one rename, keeping its permission bits (a new file gets
    the owner-only ones of a temporary file)."""
    try:
        mode: int | None = path.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = None
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".sessionfix", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
