"""Unified diffs of rewritten files (difflib), plain or coloured with rich."""

from __future__ import annotations

import difflib
import io
import tokenize

from rich.console import Console
from rich.text import Text

from sessionfix.model import FileResult


def _decode(data: bytes) -> str:
    """The text as Python reads it (BOM or PEP 263 cookie, as libcst does), without parsing."""
    try:
        encoding = tokenize.detect_encoding(io.BytesIO(data).readline)[0]
    except SyntaxError:  # an unknown or malformed cookie: show it as UTF-8 with replacements
        encoding = "utf-8"
    return data.decode(encoding, errors="replace").lstrip("\ufeff")


def unified_diff(result: FileResult) -> str:
    if result.new_source is None:
        return ""
    before = _decode(result.original).splitlines(keepends=True)
    after = _decode(result.new_source).splitlines(keepends=True)
    lines = []
    for line in difflib.unified_diff(before, after, f"a/{result.display_path}", f"b/{result.display_path}"):
        if not line.endswith("\n"):
            line += "\n\\ No newline at end of file\n"
        lines.append(line)
    return "".join(lines)


_STYLES = (("+++", "bold"), ("---", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))


def print_diff(console: Console, text: str) -> None:
    if not text:
        return
    if console.no_color or console.color_system is None:
        console.file.write(text if text.endswith("\n") else text + "\n")  # as is: rich has nothing to add
        return
    styled = Text()
    for line in text.splitlines(keepends=True):
        styled.append(line, style=next((s for prefix, s in _STYLES if line.startswith(prefix)), ""))
    console.print(styled, soft_wrap=True, highlight=False, end="")
