"""Tell from a file's bytes that a name is only imported and named in signatures.

A project that injects sessions (`def handle(session: Session)`) spells `Session` in many
files that never make one. No rule has a site there: a rule that matches calls (`used_only`)
has nothing to do with an annotation that calls nothing. `prefilter.References` finds that out
from Python's parse, which is most of what such a file costs a cold run. `annotation_only`
finds it from the bytes when every occurrence of every spelled name is one of

- text in a comment or a plain string literal (not an f-string, whose fields are code);
- a name in a one-line `from M import a, b` that renames nothing (so it binds the name itself,
  to `M.name`);
- inside a parameter annotation or a return annotation of a `def` header that calls nothing
  and reads no attribute (`session: Session | None = None`, `-> list[Session]:`), as a plain
  name;

and there is no star import. Then `References` would read each of them as exactly that: the
only bindings of the name are those imports (any other binding spells the name where none of the
above is), and every read of it is in an annotation that calls nothing. Anything else, or
quoting the lexer cannot follow, gives up (None) and the file is parsed as before.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from sessionfix.prefilter import _LEXEME, _continued, _line_start, _occurrences, _star_import

#: `from M import a, b` on one physical line, optionally with a comment: nothing renamed, no
#: brackets, no `;`, no continuation
_FROM_IMPORT = re.compile(
    rb"[ \t\f]*from[ \t\f]+(\.*)[ \t\f]*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)?[ \t\f]+"
    rb"import[ \t\f]+([A-Za-z_][A-Za-z0-9_]*(?:[ \t\f]*,[ \t\f]*[A-Za-z_][A-Za-z0-9_]*)*)[ \t\f]*(?:#[^\r\n]*)?"
)
#: the start of a `def` header, up to its opening bracket
_DEF = re.compile(rb"^[ \t\f]*(?:async[ \t\f]+)?def[ \t\f]+[A-Za-z_][A-Za-z0-9_]*[ \t\f]*\(", re.MULTILINE)
#: what a header scan stops at
_MARK = re.compile(rb"->|[()\[\]{},:=#\"']")
#: what may stand between tokens inside brackets: spaces, line breaks, continuations, and
#: comments (each running to the line's end, so that no `x:` is read inside one)
_GAP = rb"(?:[ \t\f\r\n]|\\\r?\n|#[^\r\n]*(?![^\r\n]))*"
#: a parameter up to its annotation: `name:`, `*args:`, `**kwargs:`
_PARAMETER = re.compile(_GAP + rb"(?:\*\*?" + _GAP + rb")?[A-Za-z_][A-Za-z0-9_]*" + _GAP + rb":")
#: words that make an expression bind names (lambda parameters, comprehension targets)
_BINDS = re.compile(rb"(?<![A-Za-z0-9_])(?:lambda|for)(?![A-Za-z0-9_])")
_ARROW = re.compile(_GAP + rb"->")


class _Lexed:
    """Where a file's comments and string literals are (from `prefilter._LEXEME`)."""

    def __init__(self, raw: bytes) -> None:
        self.spans: list[tuple[int, int, int]] = []  # (start, end, kind): 0 comment, 1 string, 2 f-string
        self.valid = True
        for found in _LEXEME.finditer(raw):
            start, end = found.span()
            if raw[start] == 35:  # "#"
                self.spans.append((start, end, 0))
                continue
            if end - start == 1:
                self.valid = False  # a quote that no string closes
                return
            fstring = b"f" in raw[max(0, start - 2):start].lower()
            if fstring and not _fields_closed(raw, start, end):
                self.valid = False  # a field holding its own quotes (Python 3.12): the spans are wrong
                return
            self.spans.append((start, end, 2 if fstring else 1))
        self.starts = [span[0] for span in self.spans]

    def at(self, position: int) -> tuple[int, int, int] | None:
        """The comment or string that holds `position` (from its first byte on), if any."""
        index = bisect.bisect_right(self.starts, position) - 1
        if index >= 0 and self.spans[index][0] <= position < self.spans[index][1]:
            return self.spans[index]
        return None


def _fields_closed(raw: bytes, start: int, end: int) -> bool:
    """Does every replacement field of the f-string at raw[start:end] close inside it?"""
    depth = 0
    index = start
    while index < end:
        char = raw[index]
        if char == 123:  # "{"
            if depth == 0 and raw[index + 1:index + 2] == b"{":
                index += 2
                continue
            depth += 1
        elif char == 125:  # "}"
            if depth == 0:
                if raw[index + 1:index + 2] != b"}":
                    return False
                index += 2
                continue
            depth -= 1
        index += 1
    return depth == 0


@dataclass
class Named:
    """How a file spells one token, when `annotation_only` could tell."""

    #: `(level, module)` of each `from module import token` (what binds it)
    imports: list[tuple[int, str | None]] = field(default_factory=list)
    #: read in some annotation
    annotated: bool = False


def annotation_only(raw: bytes, tokens: Iterable[bytes]) -> dict[bytes, Named] | None:
    """How each token is spelled, when the bytes show that every occurrence is text, a plain
    import, or a read in a signature's annotation (see the module docstring); None when they
    cannot show that."""
    if not raw.isascii():
        return None  # an identifier NFKC turns into the token would not be seen
    lexed: _Lexed | None = None
    defs: list[int] = []
    named: dict[bytes, Named] = {}
    for token in tokens:
        found = named.setdefault(token, Named())
        for at in _occurrences(token, raw):
            if lexed is None:
                lexed = _Lexed(raw)
                if not lexed.valid:
                    return None
                defs = [m.end() for m in _DEF.finditer(raw)
                        if lexed.at(m.start()) is None and not _continued(raw, m.start())]
            span = lexed.at(at)
            if span is not None:
                if span[2] == 2:
                    return None  # inside an f-string: maybe in a field, which is code
                continue
            line = _line_start(raw, at)
            imported = _imported(raw, line, at)
            if imported is not None:
                found.imports.append(imported)
                continue
            if not _in_signature(raw, lexed, defs, at, len(token)):
                return None
            found.annotated = True
    if _star_import(raw):
        return None  # a star import may bind any of them
    return named


def _imported(raw: bytes, line: int, at: int) -> tuple[int, str | None] | None:
    """`(level, module)` when the token at `at` is one of the names a plain one-line
    `from module import ...` on this line imports."""
    if not raw[line:at].lstrip(b" \t\f").startswith(b"from"):
        return None
    end = raw.find(b"\n", at)
    end = len(raw) if end == -1 else end
    carriage = raw.find(b"\r", at, end)
    matched = _FROM_IMPORT.fullmatch(raw, line, end if carriage == -1 else carriage)
    if matched is None or _continued(raw, line) or not matched.start(3) <= at < matched.end(3):
        return None
    return len(matched.group(1)), matched.group(2).decode("ascii") if matched.group(2) else None


def _marks(raw: bytes, lexed: _Lexed, position: int, end: int | None = None) -> Iterator[tuple[int, int]]:
    """(position, byte) of each `_MARK` from `position` on, outside strings and comments; stops
    at quoting it cannot follow."""
    stop = len(raw) if end is None else end
    while True:
        mark = _MARK.search(raw, position, stop)
        if mark is None:
            return
        at = mark.start()
        char = raw[at]
        if char in b"\"'#":
            span = lexed.at(at)
            if span is None or span[0] != at:
                return  # a quote that starts no string the lexer saw
            position = span[1]
            continue
        position = mark.end()
        yield at, char


def _in_signature(raw: bytes, lexed: _Lexed, defs: list[int], at: int, length: int) -> bool:
    """Is the name at `at` a plain name inside an annotation of the header of the nearest `def`
    before it? (`defs`: where each header's bracket opens.)"""
    index = bisect.bisect_right(defs, at) - 1
    if index < 0 or _BINDS.search(raw, defs[index], at):
        return False  # a lambda before it: its parameters (`lambda x, y: T`) split like the header's
    segment = defs[index]
    depth = 1
    close = None
    for position, char in _marks(raw, lexed, segment):  # the parameters, split at their commas
        if char in b"([{":
            depth += 1
            continue
        if char in b")]}":
            depth -= 1
            if depth > 0:
                continue
        elif not (char == 44 and depth == 1):  # ","
            continue
        if segment <= at < position:
            return _in_parameter_annotation(raw, lexed, segment, position, at, length)
        if depth == 0:
            close = position + 1
            break
        segment = position + 1
    if close is None or at < close:
        return False
    arrow = _ARROW.match(raw, close)
    if arrow is None or at < arrow.end():
        return False
    depth = 0
    for position, char in _marks(raw, lexed, arrow.end()):  # the return annotation, up to its ":"
        if char in b"([{":
            depth += 1
        elif char in b")]}":
            depth -= 1
        elif char == 58 and depth == 0:  # ":"
            return _plain_read(raw, arrow.end(), position, at, length)
    return False


def _in_parameter_annotation(raw: bytes, lexed: _Lexed, start: int, end: int, at: int, length: int) -> bool:
    """Is `at` inside the annotation of the parameter written at raw[start:end]?"""
    head = _PARAMETER.match(raw, start, end)
    if head is None:
        return False
    stop = end
    depth = 0
    for position, char in _marks(raw, lexed, head.end(), end):  # it ends at a top-level "="
        if char in b"([{":
            depth += 1
        elif char in b")]}":
            depth -= 1
        elif char == 61 and depth == 0:  # "="
            stop = position
            break
    if stop < end and (raw[stop - 1:stop] in (b"<", b">", b"!", b"=", b":") or raw[stop + 1:stop + 2] == b"="):
        return False  # a comparison, not the default's "="
    return _plain_read(raw, head.end(), stop, at, length)


def _plain_read(raw: bytes, start: int, end: int, at: int, length: int) -> bool:
    """Is the token at `at` inside the annotation at raw[start:end], and does that annotation
    call nothing, read no attribute and bind nothing (a lambda's parameters, a comprehension's
    targets, `:=`)? Strings and comments in it count too: this errs towards False."""
    text = raw[start:end]
    return (start <= at and at + length <= end and b"(" not in text and b"." not in text
            and b":=" not in text and _BINDS.search(text) is None)
