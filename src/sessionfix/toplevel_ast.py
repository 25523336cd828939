"""The names a module binds at top level, read with Python's own `ast`.

The project index reads every module it consults; `sessionfix.toplevel.TopLevelNames` needs a
libcst parse and a positions pass for that, many times the cost of `ast.parse` (which gives line
numbers for free). For every file both can parse, this reader gives exactly the visitor's
answer (the same names in the same order, the same bindings, the same `open`) and never imports
libcst; where `ast` cannot tell what libcst would see, it answers None and the index asks the
visitor instead. A file only Python can parse (`(x): int = 1`, some mixes of tabs and spaces)
now has its names read, where the visitor, unable to parse it, claimed nothing about it.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
import unicodedata
import warnings
from typing import Iterator

from sessionfix.index import Binding, resolve_relative

Names = tuple[dict[str, Binding], bool]

#: a run of word or non-ASCII characters holding at least one non-ASCII one: CPython's tokenizer
#: reads exactly such a run as one name, so every non-ASCII identifier is one
_NON_ASCII_RUN = re.compile(r"[\w\u0080-\U0010ffff]*[\u0080-\U0010ffff][\w\u0080-\U0010ffff]*")
#: a line of nothing but a backslash: libcst drops it (and what it parses after it can shift)
_BACKSLASH_LINE = re.compile(rb"(?:^(?:\xef\xbb\xbf)?|[\r\n])[ \t\f]*\\[\r\n]")
_NEWLINE = re.compile(r"\r\n|\r|\n")  # CPython's and libcst's line breaks (not str.splitlines')
_TRY = (ast.Try, getattr(ast, "TryStar", ast.Try))  # `except*`: Python 3.11 on
_SKIPPED = frozenset({tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT})


def top_level_names(raw: bytes, package: str) -> Names | None:
    """(names, open) as `TopLevelNames(package)` would find them in `raw`; None when `ast`
    cannot say (a file it cannot parse, identifiers it would normalise, a line libcst drops)."""
    if _BACKSLASH_LINE.search(raw):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid escapes and the like: not ours to report
            module = ast.parse(raw)
        source = _Source(raw)
        if not source.identifiers_as_written():
            return None
        reader = _Reader(package, source)
        reader.block(module.body)
    except (_CannotTell, SyntaxError, ValueError, UnicodeError, LookupError, RecursionError, MemoryError,
            tokenize.TokenError):
        return None
    return reader.names, reader.open


class _CannotTell(Exception):
    """The text does not look the way the tree says it should: let libcst answer."""


class _Source:
    """The text behind the tree, decoded only when an answer needs it."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._text: str | None = None
        self._lines: list[str] | None = None

    @property
    def text(self) -> str:
        """As `ast` read it (utf-8-sig drops a BOM, as ast does)."""
        if self._text is None:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(self.raw).readline)
            self._text = self.raw.decode(encoding)
        return self._text

    @property
    def lines(self) -> list[str]:
        """The lines of `text` as ast counts them, without their line breaks."""
        if self._lines is None:
            self._lines = _NEWLINE.split(self.text)
        return self._lines

    def identifiers_as_written(self) -> bool:
        """False when `ast` may hold an identifier NFKC-normalised (U+FB01 LATIN SMALL LIGATURE
        FI read as `fi`): libcst keeps identifiers as written, so only it can answer then."""
        return self.raw.isascii() or not any(map(_normalises, _NON_ASCII_RUN.findall(self.text)))

    def position(self, line: int | None, offset: int | None) -> tuple[int, int]:
        """`ast`'s position (columns in UTF-8 bytes) as `tokenize` gives it (in characters)."""
        if line is None or offset is None:
            raise _CannotTell(f"no position: {line}:{offset}")
        return line, len(self.lines[line - 1].encode("utf-8")[:offset].decode("utf-8"))

    def tokens(self, line: int) -> Iterator[tokenize.TokenInfo]:
        """The tokens that matter from the start of `line` (where a statement starts) onward,
        their rows counted from the top of the file."""
        rest = (text + "\n" for text in self.lines[line - 1 :])
        for token in tokenize.generate_tokens(lambda: next(rest, "")):
            if token.type not in _SKIPPED:
                yield token._replace(start=(token.start[0] + line - 1, token.start[1]))


class _Reader:
    """Walks statements the way `TopLevelNames` visits them: into every compound statement's
    blocks in source order, never into a def, a class or an expression."""

    def __init__(self, package: str, source: _Source) -> None:
        self.package = package
        self.source = source
        self.names: dict[str, Binding] = {}
        self.open = False

    def block(self, body: list[ast.stmt]) -> None:
        for statement in body:
            self.statement(statement)

    def statement(self, node: ast.stmt) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.names[node.name] = Binding("def", node.lineno)  # the `def` (or `async`) line
            if node.name == "__getattr__":
                self.open = True
        elif isinstance(node, ast.ClassDef):
            self.names[node.name] = Binding("class", node.lineno)
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                self.bind(target, node.value, node.lineno)
        elif isinstance(node, ast.AnnAssign):
            self.bind(node.target, node.value, node.lineno)
        elif isinstance(node, ast.Import):
            self.imported(node)
        elif isinstance(node, ast.ImportFrom):
            self.imported_from(node)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self.bind(node.target, None, node.lineno)
            self.block(node.body)
            self.block(node.orelse)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            self.with_items(node)
            self.block(node.body)
        elif isinstance(node, (ast.If, ast.While)):
            self.block(node.body)
            self.block(node.orelse)
        elif isinstance(node, _TRY):
            self.block(node.body)
            for handler in node.handlers:  # `except ... as name` binds nothing for the visitor
                self.block(handler.body)
            self.block(node.orelse)
            self.block(node.finalbody)
        elif isinstance(node, ast.Match):
            for case in node.cases:  # nor do the patterns' captures
                self.block(case.body)

    def bind(self, target: ast.expr, value: ast.expr | None, line: int) -> None:
        if isinstance(target, ast.Name):
            source = _dotted(value) if value is not None else None
            call = _dotted(value.func) if isinstance(value, ast.Call) else None
            self.names[target.id] = Binding("alias", line, source) if source else Binding("assign", line, call=call)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.bind(element, None, line)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, None, line)

    def imported(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname is not None:
                self.names[alias.asname] = Binding("module", node.lineno, alias.name)
            else:
                top = alias.name.split(".")[0]
                self.names[top] = Binding("module", node.lineno, top)

    def imported_from(self, node: ast.ImportFrom) -> None:
        module = resolve_relative(node.level or 0, node.module, self.package)
        if module is None:
            return
        if node.names[0].name == "*":
            self.open = True
            return
        for alias in node.names:
            self.names[alias.asname or alias.name] = Binding("import", node.lineno, f"{module}.{alias.name}")

    def with_items(self, node: ast.With | ast.AsyncWith) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self.bind(item.optional_vars, None, self.item_line(node, item.context_expr, item.optional_vars))

    def item_line(self, node: ast.With | ast.AsyncWith, expr: ast.expr, target: ast.expr) -> int:
        """The line libcst starts a with-item on: at the first parenthesis of its expression.

        `ast` keeps no position for an item, and its expression's starts inside the parentheses
        around it; as many of the `(` just before the expression are the item's as there are `)`
        between the expression and `as` (any others open the statement's list of items).
        """
        start = self.source.position(expr.lineno, expr.col_offset)
        end = self.source.position(expr.end_lineno, expr.end_col_offset)
        until = self.source.position(target.lineno, target.col_offset)
        before: list[tokenize.TokenInfo] = []
        closing = 0
        for token in self.source.tokens(node.lineno):
            if token.start >= until:
                break
            if token.start < start:
                before.append(token)
            elif token.start >= end and token.string == ")":
                closing += 1
        if closing == 0:
            return expr.lineno
        opening = before[-closing:]
        if len(opening) != closing or any(token.string != "(" for token in opening):
            raise _CannotTell(f"{closing} `)` after the item at line {expr.lineno}, not as many `(` before")
        return opening[0].start[0]


def _normalises(run: str) -> bool:
    """Whether `run` could be an identifier that Python reads otherwise than it is written
    (runs that could not, like an ellipsis in a comment, are no reason to ask libcst)."""
    normal = unicodedata.normalize("NFKC", run)
    return normal != run and normal.isidentifier()


def _dotted(node: ast.expr) -> str | None:
    """`a.b.c` for a Name/Attribute chain; None for anything else (as `index.dotted_name`)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant) and any(node.value is name for name in (None, True, False)):
        return repr(node.value)  # libcst reads the three as names
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None
