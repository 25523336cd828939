"""The index reads top-level names with `ast` and gets exactly the libcst visitor's answer.

`sessionfix.toplevel_ast.top_level_names` is compared with `sessionfix.toplevel.TopLevelNames`
(the same names in the same order, equal `Binding`s, the same `open`) on every Python file of
this repository, every rule example's project files and code, and snippets for each construct
the visitor binds or skips. Then `ProjectIndex` is checked to read names without libcst and to
parse a module's tree only when it is asked for, once.
"""

from __future__ import annotations

import ast
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import libcst as cst
import pytest

import sessionfix
import sessionfix.index
from sessionfix.index import Binding, ModuleInfo, ProjectIndex
from sessionfix.metadata import Wrapper
from sessionfix.registry import RULES
from sessionfix.rule import DEFAULT_PROJECT, Invalid
from sessionfix.source import SourceError, parse
from sessionfix.toplevel import TopLevelNames
from sessionfix.toplevel_ast import top_level_names

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("", "pkg", "pkg.sub.deep")  # relative imports resolve, or climb too far, differently

Answer = tuple[list[tuple[str, Binding]], bool]


def _ast(raw: bytes, package: str) -> Answer | None:
    found = top_level_names(raw, package)
    return None if found is None else (list(found[0].items()), found[1])


def _visitor(raw: bytes, package: str) -> Answer:
    return _visitors(raw, (package,))[0]


def _visitors(raw: bytes, packages: tuple[str, ...]) -> list[Answer]:
    """The visitor's answer for each package, from one parse (as `ProjectIndex` ran it)."""
    wrapper = Wrapper(parse(raw), unsafe_skip_copy=True)
    answers = []
    for package in packages:
        collector = TopLevelNames(package)
        wrapper.visit(collector)
        answers.append((list(collector.names.items()), collector.open))
    return answers


def _same(raw: bytes) -> None:
    assert [_ast(raw, package) for package in PACKAGES] == _visitors(raw, PACKAGES)


def _repository_files() -> list[object]:
    skip = {".git", ".venv", "venv", ".sessionfix_cache", "build", "dist"}
    paths = sorted(p for p in REPO.rglob("*.py") if not skip & set(p.relative_to(REPO).parts))
    return [pytest.param(p.read_bytes(), id=p.relative_to(REPO).as_posix()) for p in paths]


def _example_files() -> list[object]:
    """What the rule examples lay out and run (as tests/conftest.write_project writes them)."""
    texts: dict[str, str] = {f"default/{name}": text for name, text in DEFAULT_PROJECT.items()}
    for rule in RULES:
        for example in (*rule.INVALID, *rule.VALID):
            stem = f"{rule.NAME}/{example.id}"
            if isinstance(example, Invalid):
                texts[f"{stem}/before"] = example.before
                if example.after is not None:
                    texts[f"{stem}/after"] = example.after
            else:
                texts[f"{stem}/code"] = example.code
            texts.update({f"{stem}/{name}": text for name, text in (example.files or {}).items()})
    python = (".py", "/before", "/after", "/code")
    return [pytest.param(textwrap.dedent(text).encode(), id=name) for name, text in texts.items() if name.endswith(python)]


#: every construct TopLevelNames binds or deliberately skips
SNIPPETS: dict[str, bytes] = {
    "decorated": b"""\
@dec
@other(
    1,
)
def f():
    x = 1

@dec
class C:
    y = 2

@a
async def g(): pass

async \\
  def h(): pass

def multi(
    a,
): pass
class D(
    B,
): pass
""",
    "compound": b"""\
if a:
    x = 1
elif b:
    y = 2
else:
    z = 3
try:
    import os
except ImportError as exc:
    os = None
else:
    t = 1
finally:
    u = 2
while cond:
    w = 1
else:
    w2 = 2
for i, (j, *k) in items:
    inner = 3
else:
    after = 4
async for q in aiter():
    pass
with a as b, c as (d, [e, *f]):
    g = h
async with m() as n:
    pass
if x:
    if y:
        try:
            for p in r:
                while s:
                    with t as deep:
                        deeper = 1
        except E:
            handled = 1
if x: one = 1; two = 2
""",
    "try_star": b"try:\n    pass\nexcept* ValueError as eg:\n    tv = 1\nelse:\n    te = 2\nfinally:\n    tf = 3\n",
    "match": b"""\
match cmd:
    case [x1, y1]:
        m1 = 1
    case {"k": v1} if (w3 := v1):
        m2 = 2
    case Point(x=px) as pt:
        m3 = 3
    case _:
        match inner:
            case 1:
                m4 = 4
""",
    "assign": b"""\
a = b = c.d
e: int
f: int = g()
h: int = i.j.k()
l = m()()
n = (o)
p, q = r
[s, t] = u
*v, w = x
y.z = 1
aa[0] = 2
bb += 1
cc = lambda: (dd := 1)
(ee) = ff
(
    paren
) = 1
ii = jj = kk()
ll = None
mm = True.x
m2 = False()
nn = ...
oo = -1
pp = 'a'.join
qq = (yield)
rr = await ss()
tt = not_a.b(1).c
uu = (vv := 2)
global ww
del xx
x1, = y1
(z1, z2), z3 = q
n1 = n2 = n3, n4 = 5, 6
attr.x: int = 1
sub[0]: int
""",
    "imports": b"""\
import a
import a.b.c
import a.b as ab, d
import x . y
from . import e
from .f import g as h, i
from .. import j
from ..k.l import m
from ... import n
from .... import o
from x import (
    p,
    q as r,
)
from .star import *
""",
    "star_import": b"from os.path import *\nx = 1\n",
    "relative_star_too_far": b"from .... import *\n",
    "module_getattr": b"def __getattr__(name):\n    raise AttributeError(name)\n",
    "nested_async_getattr": b"if x:\n    async def __getattr__(name): pass\n",
    "class_getattr": b"class C:\n    def __getattr__(self, name): pass\n",
    "with_parens": b"""\
with (
    open(x)
) as f:
    pass
with (
    (open(x)) as g,
    ( # comment (
      open(y)
    ) as h,
    open(z) as i,
):
    pass
with (a) as b1, (
 c) as d1:
    pass
with ((
  a
)) as e1:
    pass
with (x for x in y) as gen, ((x for x in y)) as gen2:
    pass
with (a, b) as tup:
    pass
with (a).b() as attr:
    pass
with \\
  (a) \\
  as cont:
    pass
if cond:
    with (
        a
    ) as nested:
        pass
with (a)(b) as called:
    pass
with open("#(") as s1, (
        open(")")  # )
    ) as s2:
    pass
with a as (t1,
    t2):
    pass
with (a as b2,
      c as d2,):
    pass
async with (
    a
) as aw:
    pass
with (
    (
        a
    )
) as two_lines_of_parens:
    pass
with (
    open("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9")) as non_ascii_before_the_paren:
    pass
""",
    "with_after_other_line_breaks": b"s = '\x0b\x1c\xe2\x80\xa8\x0c'\nwith (\n b) as c:\n    pass\n",
    "bom": b"\xef\xbb\xbfa = 1\nwith (\n b) as c:\n    pass\n",
    "bom_with_first": b"\xef\xbb\xbfwith (\n b) as c:\n    pass\n",
    "bom_with_items_on_line_one": b"\xef\xbb\xbfwith (b) as c, (\n d) as e, ((f)) as g:\n  pass\n",
    "latin1_with_items": b"# coding: latin-1\nwith (\xe9) as c, (\n d) as e, ((\xe9\xe9)) as g:\n  pass\n",
    "latin1_cookie": b"# -*- coding: latin-1 -*-\ns = '\xe9t\xe9'\nnom\xe9 = 1\nwith (\n b) as \xe9:\n    pass\n",
    "crlf": b"a = 1\r\nif b:\r\n    c = 2\r\nwith (\r\n d) as e:\r\n    pass\r\n",
    "cr": b"a = 1\rif b:\r    c = 2\rwith (\r d) as e:\r    pass\r",
    "form_feed": b"\x0ca = 1\n\x0c\ndef f():\n    pass\n\x0c\nclass C: pass\nif x:\n\x0c    y = 1\n    z = 2 \x0c\n",
    "line_breaks_in_strings": b"s = '''\nx = 1\n'''\ny = 2\nz = '\x0c\x0b\x1c\xc2\x85\xe2\x80\xa8'\nw = 3\n",
    "continuation": b"a = \\\n  1\nb \\\n = 2\nc = (1, \\\n 2)\nif x: \\\n  d = 1\n",
    "non_ascii": "caf\u00e9 = 1\n# \u4f60\u597d\uff0c\u4e16\u754c\u2026\nx = '\u00a0\u00b2'\n\u00e9t\u00e9: int\n".encode(),
    "shadowing": b"a = 1\ndef a(): pass\nclass a: pass\nimport a\nb = 2\na = 3\nif x:\n    b = c\n",
    "walrus": b"if (a := 1):\n    pass\n[b := 2]\nprint(c := 3)\nwhile (d := f()):\n    pass\n",
    "bodies": b"def f():\n    a = 1\n    def g(): pass\nclass C:\n    b = 2\n    def h(self): pass\n"
              b"lam = lambda: 0\n",
    "for_targets": b"for *a, b in c:\n    pass\nfor [d, *e] in f:\n    pass\nfor g.h in i:\n    pass\n"
                   b"for (j) in k:\n    pass\n",
    "invalid_escape": b"x = '\\d'\n",
    "empty": b"",
    "only_comment": b"# nothing\n",
    "no_final_newline": b"a = 1\nb = 2",
}

#: files `ast` must leave to libcst: identifiers it would normalise (NFKC), or which it may
#: (the check reads strings and comments too); lines of a lone backslash, which libcst drops
#: (so its lines after them are not the file's, and a class after one is lost); syntax newer
#: than the interpreter
FALLBACKS: dict[str, bytes] = {
    "backslash_line": b"a = 1\n\\\nb = 2\n",
    "backslash_line_indented": b"if x:\n    a = 1\n    \\\n    b = 2\n",
    "backslash_line_crlf": b"\\\r\na = 1\r\n",
    "backslash_line_before_class": b"def f():\n    pass\n\\\nclass C: pass\nd = 1\n",
    "nfkc_identifier": "\ufb01le = 1\n\u210c = 2\n".encode(),
    "combining_mark": "e\u0301t = 1\n".encode(),
    "nfkc_in_string": "s = '\ufb01le'\nt = 1\n".encode(),
}
if sys.version_info < (3, 12):
    FALLBACKS["type_alias"] = b"type X = int\nx = f()\n"
if sys.version_info < (3, 11):
    FALLBACKS["try_star"] = SNIPPETS.pop("try_star")


@pytest.mark.parametrize("raw", [*_repository_files(), *_example_files()])
def test_real_code_reads_the_same(raw: bytes) -> None:
    _same(raw)


@pytest.mark.parametrize("name", SNIPPETS)
def test_snippet_reads_the_same(name: str) -> None:
    _same(SNIPPETS[name])


@pytest.mark.parametrize("name", FALLBACKS)
def test_what_ast_cannot_tell_is_left_to_libcst(name: str) -> None:
    raw = FALLBACKS[name]
    assert top_level_names(raw, "pkg") is None
    assert _visitor(raw, "pkg")[0]  # libcst reads it, and finds names


def test_with_item_lines_follow_libcst() -> None:
    """Spelled out, since both readers agreeing on a wrong line would pass the comparison."""
    names, _ = _visitor(SNIPPETS["with_parens"], "")
    lines = {name: binding.line for name, binding in names}
    assert (lines["f"], lines["g"], lines["h"], lines["e1"], lines["s2"], lines["aw"]) == (1, 6, 7, 16, 37, 47)


# -- the index ---------------------------------------------------------------------------------

MODULE = b"import os\n\n@dec\ndef helper():\n    pass\n\nwith (\n    open(x)\n) as handle:\n    pass\n"


def _index(tmp_path: Path, files: dict[str, bytes]) -> ProjectIndex:
    for name, raw in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(raw)
    return ProjectIndex(tmp_path)


def _counting_parse(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    parsed: list[bytes] = []

    def counting(raw: bytes) -> cst.Module:
        parsed.append(raw)
        return parse(raw)

    monkeypatch.setattr(sessionfix.index, "parse", counting)
    return parsed


def test_index_reads_names_without_libcst_and_parses_the_tree_once_on_demand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed = _counting_parse(monkeypatch)
    info = _index(tmp_path, {"pkg/__init__.py": b"", "pkg/mod.py": MODULE}).module("pkg.mod")
    assert info is not None and parsed == []
    assert list(info.names.items()) == _visitor(MODULE, "pkg")[0] and info.open is False
    tree = info.tree
    assert isinstance(tree, cst.Module) and tree.bytes == MODULE
    assert info.tree is tree and parsed == [MODULE]


def test_tree_is_parsed_from_the_bytes_the_names_came_from(tmp_path: Path) -> None:
    index = _index(tmp_path, {"mod.py": MODULE})
    info = index.module("mod")
    (tmp_path / "mod.py").write_bytes(b"changed = 1\n")
    assert info is not None and info.tree is not None and info.tree.bytes == MODULE


def test_index_falls_back_to_libcst_for_what_ast_cannot_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = FALLBACKS["nfkc_identifier"]
    parsed = _counting_parse(monkeypatch)
    info = _index(tmp_path, {"mod.py": raw}).module("mod")
    assert info is not None and list(info.names) == ["\ufb01le", "\u210c"] and parsed == [raw]
    assert info.tree is not None and info.tree.bytes == raw and parsed == [raw]  # not parsed again


def test_unparsable_module_claims_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed = _counting_parse(monkeypatch)
    info = _index(tmp_path, {"mod.py": b"def f(:\n"}).module("mod")
    assert info is not None and info.open is True and info.names == {} and len(parsed) == 1
    assert info.tree is None and len(parsed) == 1


def test_a_module_python_reads_but_libcst_cannot_has_its_names(tmp_path: Path) -> None:
    """A deliberate difference from TopLevelNames, which claimed nothing about such a module:
    its names are what Python binds, so `from legacy import missing_thing` is known to fail."""
    raw = b"(counter): int = 0\n\n\ndef helper():\n    pass\n"
    with pytest.raises(SourceError):
        parse(raw)
    info = _index(tmp_path, {"legacy.py": raw}).module("legacy")
    assert info is not None and info.open is False
    assert list(info.names) == ["counter", "helper"] and info.tree is None


def test_a_tree_libcst_cannot_parse_is_none_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bytes] = []

    def failing(raw: bytes) -> cst.Module:
        calls.append(raw)
        raise SourceError("syntax error: no")

    monkeypatch.setattr(sessionfix.index, "parse", failing)
    info = ModuleInfo("mod", Path("mod.py"), False, "project", raw=b"x = 1\n")
    assert info.tree is None and info.tree is None and calls == [b"x = 1\n"]


def test_module_info_pickles_before_and_after_its_tree_is_parsed() -> None:
    info = ModuleInfo("mod", Path("mod.py"), False, "project", {"x": Binding("assign", 1)}, raw=b"x = 1\n")
    copy = pickle.loads(pickle.dumps(info))
    assert copy.names == info.names and isinstance(copy.tree, cst.Module) and copy.tree.bytes == b"x = 1\n"
    assert isinstance(info.tree, cst.Module)
    again = pickle.loads(pickle.dumps(info))
    assert isinstance(again.tree, cst.Module) and again.tree.bytes == b"x = 1\n"


def test_reading_names_does_not_import_libcst(tmp_path: Path) -> None:
    _index(tmp_path, {"pkg/__init__.py": b"from .mod import helper\n", "pkg/mod.py": MODULE})
    code = (
        "import sys; from pathlib import Path; from sessionfix.index import ProjectIndex; "
        f"info = ProjectIndex(Path({str(tmp_path)!r})).module('pkg.mod'); "
        "print(sorted(info.names), 'libcst' in sys.modules)"
    )
    src = Path(sessionfix.__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(src)}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["['handle',", "'helper',", "'os']", "False"]


def test_syntax_the_interpreter_rejects_still_reads_through_libcst(tmp_path: Path) -> None:
    raw = b'x = f"{f"{1}"}"\ndef g(): pass\n'  # PEP 701 nesting: libcst reads it, ast before 3.12 does not
    try:
        ast.parse(raw)
    except SyntaxError:
        pass
    else:
        pytest.skip("this Python parses PEP 701 f-strings")
    info = _index(tmp_path, {"mod.py": raw}).module("mod")
    assert info is not None and list(info.names.items()) == _visitor(raw, "")[0] and info.tree is not None


def test_module_names_resolve_paths_as_path_resolve_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Module names are asked for every file; directories are resolved once per index."""
    index = _index(tmp_path, {"pkg/__init__.py": b"", "pkg/mod.py": b"x = 1\n", "outside/real.py": b""})
    root = index.root
    (root / "pkg" / "linked.py").symlink_to(root / "outside" / "real.py")  # a linked file: its target
    (root / "alias").symlink_to(root / "pkg")  # a linked directory
    monkeypatch.chdir(root)
    for path in [root / "pkg" / "mod.py", root / "pkg" / "linked.py", root / "alias" / "mod.py",
                 root / "pkg" / ".." / "pkg" / "mod.py", Path("pkg/mod.py"), root / "pkg" / "missing.py",
                 root / "pkg" / f"{'x' * 300}.py"]:  # lstat fails (name too long); resolve() does not
        assert index._resolved(path) == path.resolve(), path
    assert index.module_name_for(root / "alias" / "mod.py") == ("pkg.mod", "pkg")
    assert index.module_name_for(root / "pkg" / "linked.py") == ("outside.real", "outside")
