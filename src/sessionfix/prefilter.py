"""Decide from a file's bytes, before parsing, which rules can have anything to do with it.

This is sessionfix's only text check on source code, and it can only rule a rule OUT: every
answer errs towards running. A rule declares what it needs (`Rule.prefilter_needs`): dotted
names it matches by meaning, plain words, or "imports that may not resolve". A name can reach a
file under another spelling only through a project module that re-exports it, and that module
must itself contain a spelling already known, so the tokens are closed over the project's
re-exports (`Prefilter.close_over`) before any file is decided.

A spelling is only a hint: `Session` is also `requests.Session`, or a type hint. So when a
name's spelling occurs, Python's own parser (written in C; on the benchmark's files about 100x
faster than libcst's parse plus metadata) reads the file, and the rule runs only if some reference can resolve, as the rules
resolve it (`ProjectIndex.canonical` of the imported dotted name), to one of its names
(`References`). Whatever that reading cannot follow counts as a match.
"""

from __future__ import annotations

import ast
import bisect
import codecs
import functools
import io
import json
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Collection, Iterable, Iterator, Mapping, Sequence

from sessionfix.config import Settings
from sessionfix.index import ProjectIndex, resolve_relative
from sessionfix.needs import PrefilterNeeds

if TYPE_CHECKING:
    from sessionfix.annotations import Named
    from sessionfix.rule import Rule

_IDENTIFIER = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") | frozenset(range(0x80, 0x100))
_SPACE = b" \t\f"
#: encodings in which an ASCII identifier is always the same bytes as in ASCII
_ASCII_SAFE = frozenset({"utf-8", "ascii", "latin-1", "iso8859-15", "cp1252", "cp1250", "cp1251", "iso8859-2"})


@dataclass(frozen=True)
class ScannedImport:
    """One import as written: `import module` (names None) or `from .module import a, b`."""

    level: int
    module: str | None
    names: tuple[str, ...] | None = None


def ascii_readable(raw: bytes) -> bool:
    """True when identifiers in `raw` are plain ASCII bytes (so a byte search can rule them out)."""
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
    except SyntaxError:
        return False
    name = codecs.lookup(encoding).name
    return name in _ASCII_SAFE or name == "utf-8-sig"


def _line_start(raw: bytes, at: int) -> int:
    start = raw.rfind(b"\n", 0, at) + 1
    return raw.rfind(b"\r", start, at) + 1 or start


def _continued(raw: bytes, line_start: int) -> bool:
    """Does the previous physical line end in a backslash (so this line is not a statement start)?"""
    index = line_start - 1
    if index < 0:
        return False
    if raw[index] == ord("\n") and index > 0 and raw[index - 1] == ord("\r"):
        index -= 1
    return index > 0 and raw[index - 1] == ord("\\")


def _line_rest(raw: bytes, at: int) -> bytes | None:
    """The logical remainder of the line from `at`, without a comment; None if it continues."""
    end = raw.find(b"\n", at)
    end = len(raw) if end == -1 else end
    carriage = raw.find(b"\r", at, end)
    end = end if carriage == -1 else carriage
    text = raw[at:end].split(b"#", 1)[0].rstrip(_SPACE)
    if text.endswith(b"\\"):
        return None
    return text.split(b";", 1)[0]


def _words(text: bytes) -> list[str] | None:
    try:
        decoded = text.decode("ascii")
    except UnicodeDecodeError:
        return None
    return decoded.split()


def _dotted(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


def _aliases(text: bytes, dotted: bool) -> list[str] | None:
    """`a.b as c, d` -> ["a.b", "d"]; None when it is not exactly that shape."""
    found = []
    for item in text.split(b","):
        words = _words(item)
        if words is None:
            return None
        if len(words) == 3 and words[1] == "as" and words[2].isidentifier():
            words = words[:1]
        if len(words) != 1 or not (_dotted(words[0]) if dotted else words[0].isidentifier()):
            return None
        found.append(words[0])
    return found


def _plain_import(raw: bytes, after: int) -> list[ScannedImport] | None:
    rest = _line_rest(raw, after)
    if rest is None:
        return None
    modules = _aliases(rest, dotted=True)
    return None if not modules else [ScannedImport(0, module) for module in modules]


def _from_import(raw: bytes, head: bytes, after: int) -> list[ScannedImport] | None:
    source = head[len(b"from"):].strip(_SPACE)
    level = len(source) - len(source.lstrip(b"."))
    module_words = _words(source[level:])
    if module_words is None or len(module_words) > 1 or (module_words and not _dotted(module_words[0])):
        return None
    if level == 0 and not module_words:
        return None
    module = module_words[0] if module_words else None
    stripped = raw[after:].lstrip(_SPACE)
    if stripped.startswith(b"("):
        start = len(raw) - len(stripped) + 1
        close = raw.find(b")", start)
        if close == -1:
            return None
        lines = raw[start:close].replace(b"\r", b"\n").split(b"\n")
        body = b" ".join(line.split(b"#", 1)[0] for line in lines).strip(_SPACE).rstrip(b",")
        tail = _line_rest(raw, close + 1)
        if tail is None or tail.strip(_SPACE):
            return None
    else:
        rest = _line_rest(raw, after)
        if rest is None:
            return None
        body = rest.strip(_SPACE)
    if body == b"*":
        return [ScannedImport(level, module, ("*",))]
    names = _aliases(body, dotted=False)
    return None if not names else [ScannedImport(level, module, tuple(names))]


def scan_imports(raw: bytes) -> list[ScannedImport] | None:
    """Every import statement in `raw`, or None when some `import` cannot be read for sure.

    An `import` that is not at the start of a logical line (after `;`, `if x:`, in prose inside a
    docstring) makes the answer None; a line that only looks like an import inside a string adds
    a spurious entry. Both err towards running the rules that need the imports.
    """
    if not ascii_readable(raw):
        return None
    found: list[ScannedImport] = []
    start = 0
    while True:
        at = raw.find(b"import", start)
        if at == -1:
            return found
        start = at + len(b"import")
        if (at > 0 and raw[at - 1] in _IDENTIFIER) or (start < len(raw) and raw[start] in _IDENTIFIER):
            continue
        line_start = _line_start(raw, at)
        end = raw.find(b"\n", at)
        end = len(raw) if end == -1 else end
        carriage = raw.find(b"\r", at, end)
        key = (raw[line_start:end if carriage == -1 else carriage], at - line_start)
        parsed = _READ_LINES.get(key, _UNREAD)
        if parsed is _UNREAD:
            parsed = _read_line(raw, line_start, at, start)
            if b"(" not in key[0]:  # else it may go on past this line
                if len(_READ_LINES) >= _READ_LINES_KEPT:
                    _READ_LINES.clear()
                _READ_LINES[key] = parsed
        if parsed is _COMMENT:
            continue  # a comment, or text inside a string: not a statement either way
        if _continued(raw, line_start) or parsed is None:
            return None
        found.extend(parsed)  # type: ignore[arg-type]


#: what `_read_line` found on lines without a bracket, which depends only on the line's bytes:
#: (line, where `import` is in it) -> its imports (many files share their import lines)
_READ_LINES: dict[tuple[bytes, int], object] = {}
_READ_LINES_KEPT = 20_000
_UNREAD = object()
_COMMENT = object()


def _read_line(raw: bytes, line_start: int, at: int, after: int) -> list[ScannedImport] | None | object:
    """The imports of the statement whose `import` is at `at`; `_COMMENT` when the line is
    a comment there; None when it cannot be read for sure."""
    head = raw[line_start:at].lstrip(_SPACE)
    if head.startswith(b"#"):
        return _COMMENT
    if not head:
        return _plain_import(raw, after)
    if head.startswith(b"from") and len(head) > 4 and head[4] in b" \t\f.":
        return _from_import(raw, head, after)
    return None


def import_may_fail(raw: bytes, project: ProjectIndex, package: str) -> bool:
    """Could SF000-style analysis report anything here: an import whose module or name is missing?"""
    scanned = scan_imports(raw)
    if scanned is None:
        return True
    for item in scanned:
        module = resolve_relative(item.level, item.module, package)
        if module is None or project.status(module) == "missing":
            return True
        if item.names is None or item.names == ("*",):
            continue
        for name in item.names:
            if project.lookup(module, name).status == "missing-name":
                return True
    return False


#: what Python allows between `.` and the attribute name after it (inside brackets, or after a
#: backslash): spaces, line breaks, continuations, comments (the lookahead keeps a long comment
#: from being tried at every position)
_GAP = rb"\.(?:[ \t\f\r\n]|\\(?:\r\n|\r|\n)|#[^\r\n]*(?=[\r\n]))+"

#: what follows `import` in a star import (line continuations included)
_STAR_AFTER_IMPORT = re.compile(rb"[ \t\f\\\r\n]*\*")


def _star_import(raw: bytes) -> bool:
    """Does `import *` (maybe across a line continuation) occur anywhere in `raw`, even in text?"""
    for at in _occurrences(b"import", raw):
        if _STAR_AFTER_IMPORT.match(raw, at + len(b"import")):
            return True
    return False


def module_attributes(raw: bytes, tokens: Iterable[bytes]) -> set[str] | None:
    """The dotted names `M.T` when every occurrence of every token `T` in `raw` reads `T` off a
    name `M` that only plain `import M` lines bind; None when the bytes cannot show that.

    Then what each occurrence stands for is known without a parse (`requests.Session()` is
    requests' whatever else the file says): `References` would resolve each to exactly `M.T`.
    Any other way of binding `M` (an assignment, a parameter, `as M`, `from x import M`, a
    global) puts a delimiter other than `.` after it, so one such occurrence is enough to give
    up, as are a star import, a chain (`a.M.T`, also across spaces, a line break, a
    continuation or a comment after the dot: `a.` newline `M.T`), a space or line break inside
    `M.T`, and a file that is not plain ASCII (an identifier NFKC turns into `M` would not be
    seen). Two cases differ from the parse without changing a result: an `import M` line that
    is really inside a string (M is then unbound, and libcst cannot resolve `M.T` to a rule's
    name either: the same project look-up of `M.T` decides both), and a file `ast` cannot read
    (the parse path then chose every rule with the spelling; libcst, if it can read the file,
    resolves `M.T` as the look-up does).
    """
    if not raw.isascii():
        return None
    roots: dict[bytes, set[str]] = {}
    for token in tokens:
        for at in _occurrences(token, raw):
            if at < 2 or raw[at - 1] != ord("."):
                return None
            start = at - 1
            while start > 0 and raw[start - 1] in _IDENTIFIER:
                start -= 1
            root = raw[start:at - 1]
            if not root or root[:1].isdigit() or (start > 0 and raw[start - 1] == ord(".")):
                return None
            roots.setdefault(root, set()).add(f"{root.decode()}.{token.decode()}")
    for root in roots:
        if re.search(_GAP + re.escape(root) + rb"(?![A-Za-z0-9_\x80-\xff])", raw):
            return None  # `x . M`, `x.\` + newline + `M`, `x.` + comment: M is an attribute there
        imported = False
        for at in _occurrences(root, raw):
            end = at + len(root)
            if at > 0 and raw[at - 1] == ord("."):
                continue  # `x.M`: an attribute, not the name M
            if end < len(raw) and raw[end] == ord("."):
                continue  # `M.x`, `import M.x`, `from M.x import y`: M read, or bound to module M
            line_start = _line_start(raw, at)
            if (raw[line_start:at].strip(_SPACE) != b"import" or _continued(raw, line_start)
                    or _line_rest(raw, end) != b""):
                return None
            imported = True
        if not imported:
            return None
    if _star_import(raw):
        return None  # checked last: most files give up earlier, and this one reads every `import`
    return set().union(*roots.values()) if roots else set()


def _occurrences(token: bytes, raw: bytes) -> Iterator[int]:
    """Where `token` occurs in `raw` as a whole identifier."""
    at = raw.find(token)
    while at != -1:
        end = at + len(token)
        if (at == 0 or raw[at - 1] not in _IDENTIFIER) and (end == len(raw) or raw[end] not in _IDENTIFIER):
            yield at
        at = raw.find(token, at + 1)


def occurs(token: bytes, raw: bytes) -> bool:
    """Does `token` occur in `raw` as a whole identifier (not inside `ClientSession`)?"""
    return next(_occurrences(token, raw), None) is not None


def held_tokens(tokens: Collection[bytes], raw: bytes) -> frozenset[bytes]:
    """The tokens that `occurs` finds in `raw`. Tokens are searched for in groups that share a
    substring (`Session`, `AsyncSession`, `get_session`: `ession`): a file without the
    substring holds none of them, which one search shows (most files hold none of any group)."""
    found = []
    for shared, members in _groups(tuple(sorted(tokens))):
        if shared is None or shared in raw:
            found.extend(token for token in members if occurs(token, raw))
    return frozenset(found)


@functools.lru_cache(maxsize=16)
def _groups(tokens: tuple[bytes, ...]) -> tuple[tuple[bytes | None, tuple[bytes, ...]], ...]:
    """`tokens` grouped under a substring of 4 bytes or more that each member contains (None:
    alone), greedily: the substring common to most of the tokens left first."""
    groups: list[tuple[bytes | None, tuple[bytes, ...]]] = []
    left = list(tokens)
    while left:
        best: tuple[int, int, bytes, list[bytes]] | None = None
        for token in left:
            for size in range(4, len(token) + 1):
                for start in range(len(token) - size + 1):
                    shared = token[start:start + size]
                    members = [t for t in left if shared in t]
                    if best is None or (len(members), size) > best[:2]:
                        best = (len(members), size, shared, members)
        if best is None or best[0] < 2:
            groups.extend((None, (token,)) for token in left)
            break
        groups.append((best[2], tuple(best[3])))
        left = [token for token in left if token not in best[3]]
    return tuple(groups)


#: methods that make a class a context manager
_CONTEXT_METHODS = frozenset({"__enter__", "__aenter__", "__exit__", "__aexit__"})


@dataclass(frozen=True)
class _Also:
    """A rule's second condition (`PrefilterNeeds.also`), kept in the tables as if it were a rule."""

    rule: type[Rule]

    @property
    def CODE(self) -> str:  # noqa: N802 - read where a rule's CODE is
        return f"{self.rule.CODE}&"


def _class_mentions(statement: ast.ClassDef) -> set[str]:
    """What a class's bases and keywords mention, and the methods its body defines."""
    found = _mentions([*statement.bases, *(k.value for k in statement.keywords)])
    found.update(s.name for s in statement.body if isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef)))
    return found


def _module_statements(tree: ast.Module) -> Iterator[ast.stmt]:
    """Statements that bind module-level names (not those inside functions or classes)."""
    pending: list[ast.stmt] = list(tree.body)
    while pending:
        statement = pending.pop()
        yield statement
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue  # their bodies bind no module names
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(statement, field, ()) or ():
                if isinstance(child, ast.stmt):
                    pending.append(child)
                elif isinstance(child, (ast.ExceptHandler, ast.match_case)):
                    pending.extend(child.body)


#: a line that starts a statement at the top level: it does not start with indentation, and is
#: neither blank nor a comment; a form feed in the indentation counts as none (Python resets the
#: column there). A line inside a string may match too: `_string_spans` tells those apart.
_TOP_LINE = re.compile(rb"^(?:[ \t]*\f|[^ \t\r\n#])", re.MULTILINE)
_METHOD_HEAD = re.compile(rb"[ \t]+(?:async[ \t]+)?def[ \t]+")
#: a comment, a whole string literal (a backslash escapes any byte; a triple-quoted one ends at
#: the first unescaped triple quote), or a quote that opens none (unterminated). Each branch
#: starts with a literal byte so that the regex engine skips to the next candidate by itself,
#: and the string bodies are unrolled (runs of ordinary bytes, then one escape or lone quote)
#: instead of one byte per step: twice as fast as the plain form the tests compare it with.
_LEXEME = re.compile(
    rb"#[^\r\n]*"
    rb'|"""[^"\\]*(?:(?:\\.|"(?!""))[^"\\]*)*"""'
    rb"|'''[^'\\]*(?:(?:\\.|'(?!''))[^'\\]*)*'''"
    rb'|"[^"\\\r\n]*(?:\\.[^"\\\r\n]*)*"'
    rb"|'[^'\\\r\n]*(?:\\.[^'\\\r\n]*)*'"
    rb"|\"|'",
    re.DOTALL,
)


def _string_spans(raw: bytes) -> list[tuple[int, int, bool]] | None:
    """(start, end, is an f-string) of every string literal, found from comments, quotes and
    escapes; None when the quoting does not add up (the caller then parses)."""
    spans: list[tuple[int, int, bool]] = []
    for found in _LEXEME.finditer(raw):
        start, end = found.span()
        if raw[start] == 35:  # "#": a comment
            continue
        if end - start == 1:
            return None  # a quote that no string closes
        prefix = raw[max(0, start - 2):start]
        spans.append((start, end, b"f" in prefix.lower()))
    return spans


def _inside(spans: list[tuple[int, int, bool]], starts: list[int], at: int) -> tuple[int, int, bool] | None:
    """The string span strictly containing position `at`, if any."""
    index = bisect.bisect_right(starts, at) - 1
    if index >= 0 and spans[index][0] < at < spans[index][1]:
        return spans[index]
    return None


def _balanced(text: bytes) -> bool:
    return sum(text.count(c) for c in b"([{") == sum(text.count(c) for c in b")]}")


def _from_import_renames(raw: bytes, top: int) -> bool:
    """Can the `from ... import ...` statement starting at `top` bind a name other than the one
    it imports (an `as`, or more statements after a `;`)? Errs towards True."""
    lines: list[bytes] = []
    position = top
    while True:
        end = raw.find(b"\n", position)
        text = raw[position:len(raw) if end == -1 else end].split(b"#", 1)[0]  # no strings in an import
        lines.append(text)
        if b"(" not in lines[0] or b")" in text:
            break
        if end == -1:
            return True
        position = end + 1
    statement = b"\n".join(lines)
    return statement.rstrip().endswith(b"\\") or b";" in statement or re.search(rb"\bas\b", statement) is not None


def _no_binding_mentions(raw: bytes, tokens: Iterable[bytes]) -> bool:
    """True when no occurrence of `tokens` can be part of a module-level binding that
    `_may_bind` looks for: each is in a plain string, inside a function (its signature or
    body), in a class body other than as a method's name, or in a `from ... import` that renames
    nothing.

    An indented line belongs to the nearest top-level line above it (lines inside strings do not
    count). Python's own parser is the authority, and this errs towards False: quoting it cannot
    follow, a class header spread over lines, any other kind of statement.
    """
    spans: list[tuple[int, int, bool]] | None = None
    starts: list[int] = []
    tops: list[int] = []
    for token in tokens:
        for at in _occurrences(token, raw):
            if spans is None:
                spans = _string_spans(raw)
                if spans is None:
                    return False
                starts = [span[0] for span in spans]
                tops = [t for t in (m.start() for m in _TOP_LINE.finditer(raw)) if _inside(spans, starts, t) is None]
            string = _inside(spans, starts, at)
            if string is not None and not string[2]:
                continue  # text in a plain string binds nothing (an f-string's expressions might)
            start = _line_start(raw, at)
            index = bisect.bisect_right(tops, start) - 1
            if index < 0:
                return False
            top = tops[index]
            end = raw.find(b"\n", top)
            head = raw[top:len(raw) if end == -1 else end]
            if head.startswith(b"from ") and not _from_import_renames(raw, top):
                continue  # binds the names it imports, under their own spellings
            if head.startswith((b"def ", b"async def ")):
                continue  # a function binds its name from its decorators (on lines above) only
            if top == start:
                return False  # on a top-level line itself
            header = head.split(b"#", 1)[0].rstrip()
            if head.startswith(b"class ") and header.endswith(b":") and _balanced(header):
                if _METHOD_HEAD.fullmatch(raw, start, at):
                    return False  # a method's name makes a context class (`__enter__`)
                continue
            return False
    return True


def _bindings(statement: ast.stmt) -> list[tuple[str, set[str]]]:
    """(name bound, names its value is read from) for what the index could record as an alias,
    an import, a call result or a decorated function; a superset of those."""
    if isinstance(statement, ast.ImportFrom):
        return [(a.asname or a.name, {a.name}) for a in statement.names]
    if isinstance(statement, ast.Import):  # `import a.b as c` when a.b is no module
        return [(a.asname or a.name.split(".")[0], set(a.name.split("."))) for a in statement.names]
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return [(statement.name, _mentions(statement.decorator_list))]
    if isinstance(statement, ast.ClassDef):
        return [(statement.name, _class_mentions(statement))]
    if isinstance(statement, (ast.Assign, ast.AnnAssign)) and statement.value is not None:
        value = statement.value.func if isinstance(statement.value, ast.Call) else statement.value
        source = _mentions([value]) if isinstance(value, (ast.Name, ast.Attribute)) else set()
        targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
        return [(name, source) for name in _mentions(targets)]
    return []


def may_bind(path: Path, tokens: Collection[bytes]) -> bool:
    """Can this module bind a name the index would map to a target under a new spelling?

    Read with Python's own (fast) parser, as a superset of what the index records: a binding
    counts when its name is no known spelling (`tokens`) and its statement mentions one.
    Anything the parser cannot read goes to the index.
    """
    try:
        raw = path.read_bytes()
    except OSError:
        return True
    if ascii_readable(raw) and _no_binding_mentions(raw, tokens):
        return False  # most seeds: the spellings are in functions and plain imports
    try:
        tree = ast.parse(raw)
    except (SyntaxError, ValueError, RecursionError):
        return True
    spelled = {token.decode("utf-8", "replace") for token in tokens}
    for statement in _module_statements(tree):
        for bound, source in _bindings(statement):
            if bound not in spelled and source & spelled:
                return True
    return False


def _mentions(nodes: Sequence[ast.AST]) -> set[str]:
    """Every identifier in `nodes`, as names and as attributes."""
    found: set[str] = set()
    for node in nodes:
        for inner in ast.walk(node):
            if isinstance(inner, ast.Name):
                found.add(inner.id)
            elif isinstance(inner, ast.Attribute):
                found.add(inner.attr)
    return found


def _chain(node: ast.expr) -> list[str] | None:
    """`a.b.c` -> ["a", "b", "c"]; None when the root is not a plain name (`f().x`)."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(node.id)
    return parts[::-1]


class References:
    """What one file's names can stand for, read with `ast` (a superset of what libcst's
    QualifiedNameProvider lets a rule conclude).

    A name bound only by imports resolves through them, wherever in the file they are; a name
    bound any other way (an assignment, a parameter, a definition) resolves to anything with its
    spelling. References inside annotations are kept apart, unless the annotation calls
    something, because a rule whose sites are calls (`used_only`) has nothing to do there.
    Only reads that can matter are kept: a chain ending in one of `names`, or a plain name.
    """

    def __init__(self, tree: ast.Module, package: str, names: set[str]) -> None:
        #: local name -> dotted names its imports bind it to (None: an import we cannot resolve)
        self.imports: dict[str, list[str | None]] = {}
        self.other: set[str] = set()
        self.star = False
        #: (dotted parts, inside an annotation) for attribute chains ending in one of `names`
        self.chains: list[tuple[list[str], bool]] = []
        #: plain names read -> whether inside an annotation (False wins: read somewhere else too)
        self.plain: dict[str, bool] = {}
        stack: list[tuple[ast.AST, bool]] = [(tree, False)]
        pop, push = stack.pop, stack.append
        Name, Attribute, Load = ast.Name, ast.Attribute, ast.Load
        while stack:
            node, annotated = pop()
            kind = type(node)
            if kind is Name:
                if type(node.ctx) is Load:  # type: ignore[attr-defined]
                    ident = node.id  # type: ignore[attr-defined]
                    self.plain[ident] = self.plain.get(ident, True) and annotated
                else:
                    self.other.add(node.id)  # type: ignore[attr-defined]
                continue
            if kind is Attribute:
                if node.attr in names:  # type: ignore[attr-defined]
                    parts = _chain(node)  # type: ignore[arg-type]
                    if parts is not None:
                        self.chains.append((parts, annotated))
                push((node.value, annotated))  # type: ignore[attr-defined]
                continue
            if kind is ast.ImportFrom:
                self._import_from(node, package)  # type: ignore[arg-type]
                continue
            if kind is ast.Import:
                for alias in node.names:  # type: ignore[attr-defined]
                    local = alias.asname or alias.name.split(".")[0]
                    self.imports.setdefault(local, []).append(alias.name if alias.asname else local)
                continue
            if kind in (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef):
                self.other.add(node.name)  # type: ignore[attr-defined]
            elif kind is ast.arg:
                self.other.add(node.arg)  # type: ignore[attr-defined]
            elif kind in (ast.Global, ast.Nonlocal):
                self.other.update(node.names)  # type: ignore[attr-defined]
            elif kind in (ast.ExceptHandler, ast.MatchAs, ast.MatchStar):
                if node.name:  # type: ignore[attr-defined]
                    self.other.add(node.name)  # type: ignore[attr-defined]
            elif kind is ast.MatchMapping and node.rest:  # type: ignore[attr-defined]
                self.other.add(node.rest)  # type: ignore[attr-defined]
            fields = _ANNOTATED.get(kind, ())
            for field in node._fields:
                value = getattr(node, field)
                if isinstance(value, list):
                    for item in value:
                        if type(item) not in _LEAVES and isinstance(item, ast.AST):
                            push((item, annotated))
                elif type(value) not in _LEAVES and isinstance(value, ast.AST):
                    push((value, annotated or (field in fields and _calls_nothing(value))))

    def _import_from(self, node: ast.ImportFrom, package: str) -> None:
        module = resolve_relative(node.level, node.module, package)
        for alias in node.names:
            if alias.name == "*":
                self.star = True
                continue
            local = alias.asname or alias.name
            self.imports.setdefault(local, []).append(f"{module}.{alias.name}" if module else None)

    def resolve(self, parts: list[str]) -> list[str] | None:
        """The dotted names `parts` can stand for; None when it may stand for anything."""
        root = parts[0]
        bound = self.imports.get(root)
        if not bound or root in self.other or None in bound:
            return None
        rest = "".join(f".{p}" for p in parts[1:])
        return [f"{dotted}{rest}" for dotted in bound if dotted is not None]

    def reads(self) -> Iterator[tuple[list[str], bool]]:
        yield from self.chains
        for name, annotated in self.plain.items():
            yield [name], annotated


#: nodes that hold no name (contexts, operators, constants): never worth a visit
_LEAVES = frozenset({ast.Load, ast.Store, ast.Del, ast.Constant, ast.Pass, ast.Break, ast.Continue,
                     *ast.operator.__subclasses__(), *ast.boolop.__subclasses__(), *ast.unaryop.__subclasses__(),
                     *ast.cmpop.__subclasses__()})

#: node type -> its fields that hold an annotation
_ANNOTATED = {ast.arg: ("annotation",), ast.FunctionDef: ("returns",), ast.AsyncFunctionDef: ("returns",),
              ast.AnnAssign: ("annotation",)}


def _calls_nothing(annotation: ast.AST) -> bool:
    """An annotation that calls nothing (a call there runs, and could be a site)."""
    return not any(isinstance(n, ast.Call) for n in ast.walk(annotation))


def _last(dotted: str) -> bytes:
    return dotted.rpartition(".")[2].encode("utf-8")


class Prefilter:
    """Which of `rules` may act on a file, decided from its bytes."""

    def __init__(self, rules: Sequence[type[Rule]], settings: Settings, project: ProjectIndex) -> None:
        self.rules = tuple(rules)
        self.project = project
        needs: dict[type[Rule] | _Also, PrefilterNeeds | None] = {rule: rule.prefilter_needs(settings) for rule in rules}
        #: rule -> the key its second condition goes by in the tables below
        self.also = {rule: _Also(rule) for rule in self.rules if (need := needs[rule]) is not None and need.also}
        for rule, key in self.also.items():
            needs[key] = needs[rule].also  # type: ignore[union-attr]
        #: everything the tables name: the rules, then the second conditions
        self.keys: tuple[type[Rule] | _Also, ...] = (*self.rules, *self.also.values())
        self.always = frozenset(rule for rule, need in needs.items() if need is None)
        self.imports = frozenset(rule for rule, need in needs.items() if need is not None and need.missing_imports)
        self.used_only = frozenset(rule for rule, need in needs.items() if need is not None and need.used_only)
        #: spelling -> rules that need it (all a file is checked against)
        self.tokens: dict[bytes, set[type[Rule]]] = {}
        #: the spellings rules need as written (`words`): they decide without References
        self.words: dict[bytes, set[type[Rule]]] = {}
        #: canonical dotted name -> rules that match it by meaning, and its spellings
        self.targets: dict[str, set[type[Rule]]] = {}
        self.spellings: dict[str, set[bytes]] = {}
        self.makers: dict[type[Rule], frozenset[str]] = {}
        self.decorators: dict[type[Rule], frozenset[str]] = {}
        self.classes = frozenset(key for key, need in needs.items() if need is not None and need.context_classes)
        #: rule -> its last look at the parsed file (PrefilterNeeds.sites)
        self.sites = {rule: need.sites for rule, need in needs.items()
                      if rule in self.rules and need is not None and need.sites is not None}
        for method in sorted(_CONTEXT_METHODS) if self.classes else ():
            self.tokens.setdefault(method.encode("ascii"), set())  # so the modules defining them are seeds
        for rule, need in needs.items():
            if need is None:
                continue
            for word in need.words:
                self.tokens.setdefault(word.encode("utf-8"), set()).add(rule)
                self.words.setdefault(word.encode("utf-8"), set()).add(rule)
            for name in need.names | need.made_by | need.decorated_by:
                self._target(project.canonical(name), {rule}, name)
            self.makers[rule] = frozenset(project.canonical(n) for n in need.made_by)
            self.decorators[rule] = frozenset(project.canonical(n) for n in need.decorated_by)

    def _target(self, target: str, rules: set[type[Rule]], *written: str) -> bool:
        """Make `target` (and its spellings) point at `rules`; True if anything was new."""
        known = self.targets.setdefault(target, set())
        added = not rules <= known
        known |= rules
        for spelling in {_last(target), *(_last(w) for w in written)}:
            added |= self._spell(target, spelling)
        return added

    def _spell(self, target: str, spelling: bytes) -> bool:
        rules = self.targets[target]
        self.spellings.setdefault(target, set()).add(spelling)
        known = self.tokens.setdefault(spelling, set())
        added = not rules <= known
        known |= rules
        return added

    # -- the re-export closure -------------------------------------------------------------

    def close_over(self, seeds: Mapping[Path, frozenset[bytes]],
                   may_bind_all: Callable[[Sequence[Path], frozenset[bytes]], list[bool]] | None = None) -> bool:
        """Learn the names the seed modules (files holding a token, with the tokens they hold)
        define or re-export for a rule; True when a new spelling or rule was added.

        `may_bind_all` answers `may_bind` for many files at once (in worker processes); its
        answers stand while the tokens are the ones they were given, which is nearly always.
        """
        added = False
        tokens = frozenset(self.tokens)
        answers = dict(zip(seeds, may_bind_all(list(seeds), tokens))) if may_bind_all is not None else {}
        for path, held in seeds.items():
            known = answers.get(path) if len(self.tokens) == len(tokens) else None  # tokens only grow
            if not (self._may_bind(path) if known is None else known):
                continue
            module, _ = self.project.module_name_for(path)
            info = self.project.module(module) if module else None
            if info is None or info.path is None or info.path.resolve() != path.resolve():
                continue  # not importable under that name: nothing can import a name from it
            classes = self._classes(path) if self.classes else {}
            for local, binding in info.names.items():
                dotted = f"{module}.{local}"
                target = self.project.canonical(dotted)
                rules = set(self.targets.get(target, ()))
                for rule, makers in self.makers.items():
                    if binding.kind == "assign" and makers and self.project.made_by(dotted) in makers:
                        rules.add(rule)
                for rule, decorators in self.decorators.items():
                    if binding.kind == "def" and any(held & self.spellings.get(d, set()) for d in decorators):
                        rules.add(rule)
                for rule in self.classes:
                    if binding.kind == "class" and classes.get(local, set()) & self._class_marks(rule):
                        rules.add(rule)
                if rules:
                    added |= self._target(target, rules, local)
        return added

    def _classes(self, path: Path) -> dict[str, set[str]]:
        """The module's classes, each with what `_class_mentions` reads from it."""
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError, RecursionError):
            return {}  # the index cannot read it either
        return {s.name: _class_mentions(s) for s in _module_statements(tree) if isinstance(s, ast.ClassDef)}

    def _class_marks(self, rule: type[Rule]) -> set[str]:
        """What makes a class count for `rule`: a context method, or a base that is one of its names."""
        marks = set(_CONTEXT_METHODS)
        for target, rules in self.targets.items():
            if rule in rules:
                marks.update(spelling.decode("utf-8", "replace") for spelling in self.spellings.get(target, ()))
        return marks

    def _may_bind(self, path: Path) -> bool:
        return may_bind(path, self.tokens)

    def fingerprint(self) -> str:
        """A stable text form of what the prefilter looks for (part of every cache key)."""
        return json.dumps([sorted(r.CODE for r in self.rules), sorted(r.CODE for r in self.always),
                           sorted(r.CODE for r in self.imports), sorted(r.CODE for r in self.used_only),
                           sorted(r.CODE for r in self.also.values()), sorted(r.CODE for r in self.classes),
                           sorted(r.CODE for r in self.sites), self.dump()], sort_keys=True)

    def dump(self) -> dict[str, dict[str, list[str]]]:
        """The closure's state as JSON-able data (see `restore`)."""
        def codes(rules: set[type[Rule] | _Also]) -> list[str]:
            return sorted(r.CODE for r in rules)

        return {
            "tokens": {t.decode("utf-8", "replace"): codes(rules) for t, rules in self.tokens.items()},
            "targets": {target: codes(rules) for target, rules in self.targets.items()},
            "spellings": {target: sorted(s.decode("utf-8", "replace") for s in spelled)
                          for target, spelled in self.spellings.items()},
        }

    def restore(self, state: Mapping[str, Mapping[str, list[str]]]) -> None:
        """Take the state of a closure computed by an earlier run (from `dump`, or a snapshot)."""
        by_code = {rule.CODE: rule for rule in self.keys}
        self.tokens = {t.encode("utf-8"): {by_code[c] for c in codes if c in by_code}
                       for t, codes in state["tokens"].items()}
        self.targets = {target: {by_code[c] for c in codes if c in by_code} for target, codes in state["targets"].items()}
        self.spellings = {target: {s.encode("utf-8") for s in spelled} for target, spelled in state["spellings"].items()}

    # -- per file --------------------------------------------------------------------------

    def rules_for(self, raw: bytes, path: Path, held: Collection[bytes] | None = None) -> tuple[type[Rule], ...]:
        """The rules, in pipeline order, that may act on the file with these bytes.

        `held`: which of the tokens occur in `raw`, when already known (it must be exactly the
        tokens `occurs` finds there, of a set that includes all of `self.tokens`)."""
        if not ascii_readable(raw):
            return self.rules
        chosen = set(self.always)
        spelled: set[bytes] = set()
        if held is None:
            held = held_tokens(self.tokens, raw)
        for token, rules in self.tokens.items():
            if not rules <= chosen and token in held:
                chosen |= self.words.get(token, set())
                spelled.add(token)
        if spelled and self.also:
            spelled = self._worth_reading(spelled, chosen)
        package: str | None = None
        parsed: tuple[ast.Module, References] | None = None
        if spelled and not self._reaches_nothing(module_attributes(raw, spelled)):
            from sessionfix.annotations import annotation_only

            package = self.project.module_name_for(path)[1]
            named = annotation_only(raw, spelled)
            if named is not None:
                chosen |= self._annotated(named, package, spelled)
            else:
                reached, parsed = self._reached(raw, package, spelled)
                chosen |= reached
        pending = self.imports - chosen
        if pending:
            if package is None:
                package = self.project.module_name_for(path)[1]
            if import_may_fail(raw, self.project, package):
                chosen |= pending
        chosen = {rule for rule in chosen if self.also.get(rule, rule) in chosen}
        if parsed is not None:
            chosen -= {rule for rule in self.sites.keys() & chosen
                       if not self.sites[rule](parsed[0], self._standing_for(rule, parsed[1], spelled),
                                               self._standing_for(self.also.get(rule, rule), parsed[1], spelled))}
        return tuple(rule for rule in self.rules if rule in chosen)

    def needs_nothing(self, held: Collection[bytes], resolved: tuple[str, ...] | None) -> bool:
        """Is it certain, without the bytes, that `rules_for` chooses no rule for a file that
        holds exactly `held` of a set of tokens including all of `self.tokens`, when
        `resolved` is not None (its identifiers are plain bytes and none of its imports may fail)?"""
        return resolved is not None and not self.always and not any(token in self.tokens for token in held)

    def _reaches_nothing(self, dotted: set[str] | None) -> bool:
        """Do these names (see `module_attributes`) stand for none of the rules' names? Then
        `_reached` would find nothing, and the file needs no parse for it."""
        return dotted is not None and not any(self.targets.get(self.project.canonical(name)) for name in dotted)

    def _worth_reading(self, spelled: set[bytes], chosen: set[type[Rule]]) -> set[bytes]:
        """The spellings that can still decide something: a rule whose second condition no
        spelling in the file can meet is never chosen, so a file that only calls `gather` (and
        spells no session) needs no parse for it."""
        possible = chosen | self.imports | {key for token in spelled for key in self.tokens[token]}
        owners = {key: rule for rule, key in self.also.items()}

        def may_stay(key: type[Rule] | _Also) -> bool:
            rule = owners.get(key, key)  # type: ignore[arg-type]
            return rule in possible and self.also.get(rule, rule) in possible

        return {token for token in spelled if any(may_stay(key) for key in self.tokens[token])}

    def _standing_for(self, key: type[Rule] | _Also, references: References, spelled: set[bytes]) -> frozenset[str]:
        """Identifiers in the file that may stand for one of `key`'s names: its spellings that
        occur, and local names imports bind to one of them (`import ... Session as S`)."""
        spellings = {s.decode("utf-8") for target, rules in self.targets.items() if key in rules
                     for s in self.spellings.get(target, ()) if s in spelled}
        spellings |= {w.decode("utf-8") for w, rules in self.words.items() if key in rules and w in spelled}
        aliases = {local for local, bound in references.imports.items()
                   if any(d is not None and d.rpartition(".")[2] in spellings for d in bound)}
        return frozenset(spellings | aliases)

    def _by_spelling(self, spelled: set[bytes]) -> dict[str, set[type[Rule]]]:
        """Spelling -> the rules one of whose names is spelled so."""
        by_spelling: dict[str, set[type[Rule]]] = {}
        for target, spellings in self.spellings.items():
            for spelling in spellings & spelled:
                by_spelling.setdefault(spelling.decode("utf-8"), set()).update(self.targets[target])
        return by_spelling

    def _annotated(self, named: Mapping[bytes, Named], package: str, spelled: set[bytes]) -> set[type[Rule]]:
        """What `_reached` chooses where `annotation_only` could read the bytes: each spelling is
        only imported (`from m import T` binds it to m.T) and read in annotations that call
        nothing, so `used` is empty and `named` is what its imports, or its spelling, stand for."""
        by_spelling = self._by_spelling(spelled)
        found: set[type[Rule]] = set()
        for token, spelling in named.items():
            name = token.decode("utf-8")
            rules = by_spelling.get(name, set())
            bound = []
            for level, module in spelling.imports:
                resolved = resolve_relative(level, module, package)
                bound.append(f"{resolved}.{name}" if resolved else None)
            for dotted in bound:  # References.imports
                found |= self._resolve([dotted] if dotted else None, rules)
            if spelling.annotated and (not bound or None in bound):  # a read that may stand for anything
                found |= rules
        return found - self.used_only

    def _reached(self, raw: bytes, package: str,
                 spelled: set[bytes]) -> tuple[set[type[Rule]], tuple[ast.Module, References] | None]:
        """The rules one of whose names a reference in the file can stand for (see References),
        and the parsed file when `ast` could read it."""
        names = {token.decode("utf-8") for token in spelled}
        by_spelling = self._by_spelling(spelled)
        anything = set().union(*by_spelling.values()) if by_spelling else set()
        try:
            tree = ast.parse(raw)
            references = References(tree, package, names)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            return anything, None  # libcst will say what is wrong, or read what `ast` cannot
        if references.star:
            return anything, None
        used: set[type[Rule]] = set()
        named: set[type[Rule]] = set()  # only imported, or only in annotations
        for parts, in_annotation in references.reads():
            dotted = references.resolve(parts)
            if dotted is None:
                if parts[-1] not in names:
                    continue
            else:  # `from m import Session as S` ... `S()`: what S stands for is spelled in m
                dotted = [d for d in dotted if d.rpartition(".")[2] in names]
                if not dotted:
                    continue
            found = self._resolve(dotted, by_spelling.get(parts[-1], set()))
            (named if in_annotation else used).update(found)
        for local, bound in references.imports.items():
            for dotted in bound:
                last = dotted.rpartition(".")[2] if dotted else local
                if last in names:
                    named.update(self._resolve([dotted] if dotted else None, by_spelling.get(last, set())))
        return used | (named - self.used_only), (tree, references)

    def _resolve(self, dotted: list[str] | None, spelled_rules: set[type[Rule]]) -> set[type[Rule]]:
        if dotted is None:
            return spelled_rules
        found: set[type[Rule]] = set()
        for name in dotted:
            found |= self.targets.get(self.project.canonical(name), set())
        return found
