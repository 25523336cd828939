"""The prefilter never changes a result: every rule, with and without it, on every test input.

Inputs: every VALID/INVALID example of every registered rule (in its own project), the
projects under examples/, and the sample projects the CLI tests use. Also the import scanner
on the shapes it must read, and the ones it must give up on.
"""

from __future__ import annotations

import ast
import re
import shutil
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sessionfix.config import load_config
from sessionfix.discover import discover
from sessionfix.index import ProjectIndex
from sessionfix.model import FileResult
from sessionfix.prefilter import Prefilter, ScannedImport, occurs, scan_imports
from sessionfix.registry import RULES
from sessionfix.session import Run
from tests.conftest import write_project

REPO = Path(__file__).resolve().parents[2]

#: a project whose raw factory is reached only through re-exports under other names
REEXPORTS = {
    "pyproject.toml": """\
        [tool.sessionfix]
        sync-context = "core.db.get_db_session_ctx"
        sync-factory = "core.db.get_session"
        raw-factories = ["init.Session"]
        """,
    "core/__init__.py": "",
    "core/db.py": """\
        from contextlib import contextmanager


        def get_session():
            return None


        @contextmanager
        def get_db_session_ctx():
            yield get_session()
        """,
    "legacy/__init__.py": "from init import Session as LegacySession\n",
    "legacy/compat.py": "from legacy import LegacySession as Make\nOther = Make\n",
    "app.py": """\
        from legacy.compat import Other


        def load():
            with Other() as session:
                session.add(1)
                session.commit()
        """,
    "near_miss.py": """\
        import requests


        def fetch():
            return requests.Session().get("https://example.org")
        """,
}


def _results(root: Path, options: dict[str, object], prefilter: bool,
             only: str | None = None) -> list[tuple[object, ...]]:
    """Every file's result (or only one file's, with the whole project around it)."""
    config = load_config(root)
    settings = config.settings.with_overrides(**options)
    files = [root / only] if only else discover([root], root)
    run = Run(config, settings, ProjectIndex(root), files, RULES, prefilter=prefilter, targets=[root])
    return [_key(result) for result in run.process()]


def _key(result: FileResult) -> tuple[object, ...]:
    return (result.display_path, result.changes, result.findings, result.new_source, result.error)


def _example_projects() -> list[object]:
    cases = []
    for rule in RULES:
        for example in (*rule.INVALID, *rule.VALID):
            code = example.before if hasattr(example, "before") else example.code  # type: ignore[attr-defined]
            only = "app.py" if example.files is None else None  # the default project's own files: once, below
            cases.append(pytest.param(example.files, {"app.py": code}, dict(example.options), only,
                                      id=f"{rule.NAME}/{example.id}"))
    cases.append(pytest.param(None, {}, {}, None, id="default-project"))
    cases.append(pytest.param(REEXPORTS, {}, {}, None, id="reexports"))
    cases.append(pytest.param(REEXPORTS, {}, {"unsafe": True}, None, id="reexports-unsafe"))
    return cases


@pytest.mark.parametrize(("files", "extra", "options", "only"), _example_projects())
def test_prefilter_changes_no_result_on_examples(tmp_path: Path, files: dict[str, str] | None, extra: dict[str, str],
                                                  options: dict[str, object], only: str | None) -> None:
    root = write_project(tmp_path, files)
    for name, text in extra.items():
        (root / name).write_text(textwrap.dedent(text))
    assert _results(root, options, True, only) == _results(root, options, False, only)


@pytest.mark.parametrize("name", ["sync_project", "async_project"])
def test_prefilter_changes_no_result_on_example_projects(tmp_path: Path, name: str) -> None:
    root = tmp_path / name
    shutil.copytree(REPO / "examples" / name, root)
    for options in ({}, {"unsafe": True}):
        assert _results(root, options, prefilter=True) == _results(root, options, prefilter=False)


def test_reexported_raw_factory_is_still_found(tmp_path: Path) -> None:
    root = write_project(tmp_path, REEXPORTS)
    found = {key[0]: key for key in _results(root, {}, prefilter=True)}
    assert [r.rule for r in found["app.py"][2]] == ["SF002"], "the use through two re-exports must be found"


@pytest.mark.parametrize(("source", "expected"), [
    ("import os, a.b as c  # x\n", [ScannedImport(0, "os"), ScannedImport(0, "a.b")]),
    ("from ..pkg.mod import (\n    a,  # one\n    b as c,\n)\n", [ScannedImport(2, "pkg.mod", ("a", "b"))]),
    ("from . import x\nfrom .y import *\n", [ScannedImport(1, None, ("x",)), ScannedImport(1, "y", ("*",))]),
    ("try:\n    import ujson\nexcept ImportError:\n    import json\n", [ScannedImport(0, "ujson"), ScannedImport(0, "json")]),
    ("x = importlib.import_module('a')  # reimport\n", []),
    ("# import nothing here\n", []),
])
def test_scan_reads_imports(source: str, expected: list[ScannedImport]) -> None:
    assert scan_imports(source.encode()) == expected


@pytest.mark.parametrize("source", [
    "x = 1; import os\n",
    "if True: import os\n",
    "from a \\\n    import b\n",
    "import a, \\\n    b\n",
    '"""You can import things."""\n',
    "from a import (b\n",
    "import os\n".encode("utf-16").decode("latin-1"),
])
def test_scan_gives_up_rather_than_guess(source: str) -> None:
    assert scan_imports(source.encode("latin-1")) is None


@pytest.mark.parametrize(("source", "inside"), [
    ("import requests\n\ndef f():\n    return requests.Session()\n", True),
    ("import requests\n\nclass C:\n    def get(self):\n        return requests.Session()\n", True),
    ("def f(\n    s: Session,\n):\n    pass\n", True),  # a parameter binds no module name
    ("X = requests.Session\n", False),
    ("try:\n    from a import Session as S\nexcept ImportError:\n    pass\n", False),
    ("from a import (\n    Session as S,\n)\n", False),
    ("class C(\n    Session,\n):\n    pass\n", False),  # bases: a subclass may be a session source
    ("class C:\n    def Session(self):\n        pass\n", False),  # a method's name (`__enter__`)
    ('x = """\ndef f():\n    Session\n"""\n', True),  # all of it is text in a string
    ("@decorate(Session)\ndef f():\n    pass\n", False),
    ("def f():\n    x = (\n1)\n    return Session\n", False),  # a bracket let a line start unindented
    ("from sqlalchemy.orm import Session\n", True),  # binds `Session` as `Session`
    ("from sqlalchemy.orm import (\n    Query,\n    Session,  # the class\n)\n", True),
    ("from sqlalchemy.orm import (\n    Session as S,\n)\n", False),
    ("from sqlalchemy.orm import Session; Other = Session\n", False),
    ("import sqlalchemy.orm.Session\n", False),
    ("def find(session: Session) -> Session: return session\n", True),  # a signature binds nothing
    ('"""Session helpers."""\nimport requests\n', True),  # text in a string
    ('@register(f"{Session}")\ndef f():\n    pass\n', False),  # an f-string's expression is code
    # found by review: a `)` in a comment is not the end of the import
    ("from sqlalchemy.ext.asyncio import (\n    engine,  # see configure()\n    AsyncSession as DbSession,\n)\n",
     False),
    # ... a `\"\"\"` in a comment does not open a string
    ('# Docstrings use """ quotes.\nNOTE = """\ndef placeholder():\n    """; DbSession = AsyncSession\n', False),
    # ... a form feed in the indentation resets it: this line is at the top level
    ("def configure():\n    pass\n    \fDbSession = AsyncSession\n", False),
])
def test_spellings_outside_bindings_need_no_parse(source: str, inside: bool) -> None:
    from sessionfix.prefilter import _no_binding_mentions

    assert _no_binding_mentions(source.encode(), [b"Session", b"AsyncSession", b"DbSession"]) is inside


def test_tokens_match_whole_identifiers_only() -> None:
    assert occurs(b"Session", b"s = requests.Session()")
    assert not occurs(b"Session", b"s = aiohttp.ClientSession()\nSessionLocal = 1\n")


#: references the parser-based stage must follow (each is a site for some rule) and near misses
#: it may drop; all in the default project, whose raw factories are init.Session and
#: core.db.async_session and whose sync-factory is core.db.get_session
REFERENCES = {
    "alias_import.py": """\
        from core.db import get_session as open_session


        def f():
            s = open_session()
            s.add(1)
        """,
    "module_attr.py": """\
        import core.db


        def f():
            s = core.db.get_session()
            s.add(1)
        """,
    "module_alias.py": """\
        from core import db as database


        def f():
            s = database.get_session()
            s.add(1)
        """,
    "local_alias.py": """\
        from core.db import get_session

        make = get_session


        def f():
            s = make()
            s.add(1)
        """,
    "bound_session.py": """\
        from sqlalchemy.orm import Session


        def f(engine) -> None:
            s = Session(bind=engine)
            s.add(1)
        """,
    "local_import.py": """\
        def f():
            from core.db import get_session
            s = get_session()
            s.add(1)
        """,
    "core/jobs.py": """\
        from .db import get_session


        def f():
            s = get_session()
            s.add(1)
        """,
    "star.py": """\
        from core.db import *


        def f():
            s = get_session()
            s.add(1)
        """,
    "raw_module.py": """\
        import init


        def f():
            with init.Session() as s:
                s.add(1)
                s.commit()
        """,
    "rebound.py": """\
        import requests


        def f(requests):
            s = requests.Session()
            s.add(1)
        """,
    "called_annotation.py": """\
        from sqlalchemy.orm import Session


        def f(engine, s: Session(bind=engine).__class__ = None):
            return s
        """,
    "annotation_only.py": """\
        from sqlalchemy.orm import Session


        def find(session: Session, user_id: int) -> Session:
            return session.get(dict, user_id)
        """,
    "core/ctx.py": """\
        from core.db import async_session


        class Unit:
            async def __aenter__(self):
                self.session = async_session()
                return self.session

            async def __aexit__(self, exc_type, exc, tb):
                await self.session.close()
        """,
    "core/more.py": """\
        from core.ctx import Unit as _Unit


        class Derived(_Unit):
            pass
        """,
    "gather_class.py": """\
        import asyncio

        from core.more import Derived


        async def dashboard(load_users, load_orders):
            async with Derived() as db:
                return await asyncio.gather(load_users(db), load_orders(db))
        """,
    "gather_param.py": """\
        import asyncio

        from sqlalchemy.ext.asyncio import AsyncSession


        async def dashboard(db: AsyncSession, load_users, load_orders):
            return await asyncio.gather(load_users(db), load_orders(db))
        """,
    "gather_only.py": """\
        import asyncio


        async def both(first, second, db):
            return await asyncio.gather(first(db), second(db))
        """,
    "gather_aliased_param.py": """\
        import asyncio


        def make_dashboard(load_users, load_orders):
            from sqlalchemy.ext.asyncio import AsyncSession as Db  # local: no module re-exports `Db`

            async def dashboard(db: Db):
                return await asyncio.gather(load_users(db), load_orders(db))

            return dashboard
        """,
    "gather_assigned.py": """\
        import asyncio

        from core.db import async_session


        async def dashboard(load_users, load_orders):
            db = async_session()
            return await asyncio.gather(load_users(db), load_orders(db))
        """,
    "gather_renamed.py": """\
        from asyncio import gather as together

        from core.db import async_session


        async def dashboard(load_users, load_orders):
            async with async_session() as db:
                return await together(load_users(db), load_orders(db))
        """,
    "core/tasks.py": """\
        from asyncio import gather as together_all
        """,
    "gather_reexported.py": """\
        from core.tasks import together_all
        from sqlalchemy.ext.asyncio import AsyncSession


        async def dashboard(db: AsyncSession, load_users, load_orders):
            return await together_all(load_users(db), load_orders(db))
        """,
    "gather_string_annotation.py": """\
        import asyncio

        from sqlalchemy.ext.asyncio import AsyncSession


        async def dashboard(db: "AsyncSession", load_users, load_orders):
            return await asyncio.gather(load_users(db), load_orders(db))
        """,
    "gather_other_session.py": """\
        import asyncio

        import aiohttp
        from sqlalchemy.orm import Session


        async def fetch_all(urls: list[str]) -> list[bytes]:
            async with aiohttp.ClientSession() as http:
                async def one(url: str) -> bytes:
                    async with http.get(url) as response:
                        return await response.read()

                return list(await asyncio.gather(*(one(url) for url in urls)))


        def owner(session: Session, user_id: int):
            return session.get(dict, user_id)
        """,
    "requests_only.py": """\
        import requests


        class Client:
            def __init__(self):
                self.session = requests.Session()

            def get(self, url):
                with requests.Session() as session:
                    return session.get(url)
        """,
}


def test_prefilter_changes_no_result_on_references(tmp_path: Path) -> None:
    root = write_project(tmp_path, None, **{name.replace("/", "__"): text for name, text in REFERENCES.items()})
    for options in ({}, {"unsafe": True}):
        with_prefilter = _results(root, options, prefilter=True)
        assert with_prefilter == _results(root, options, prefilter=False)
    found = {key[0]: key for key in with_prefilter}
    for name in ("alias_import.py", "module_attr.py", "module_alias.py", "bound_session.py", "local_import.py",
                 "core/jobs.py", "gather_class.py", "gather_param.py", "gather_aliased_param.py",
                 "gather_assigned.py", "gather_renamed.py", "gather_reexported.py"):
        assert found[name][1] or found[name][2], f"{name}: the rules find nothing, so the test proves nothing"


def _prefilter(root: Path) -> Prefilter:
    from sessionfix.prefilter import Prefilter

    config = load_config(root)
    run = Run(config, config.settings, ProjectIndex(root), discover([root], root), RULES, prefilter=True,
              targets=[root])
    prefilter = Prefilter(run.rules, run.settings, run.project)
    run._close(prefilter)
    return prefilter


def _chosen(root: Path, name: str) -> set[str]:
    return {rule.CODE for rule in _prefilter(root).rules_for((root / name).read_bytes(), root / name)}


@pytest.mark.parametrize(("name", "expected"), [
    ("requests_only.py", set()),  # `Session` here is requests'
    ("annotation_only.py", set()),  # SQLAlchemy's, but never called: no rule has a site
    ("alias_import.py", {"SF020", "SF021"}),
    ("rebound.py", {"SF020", "SF021", "SF022", "SF002", "SF003", "SF010", "SF011", "SF001"}),  # may be anything
    ("star.py", {"SF020", "SF021"}),
    ("called_annotation.py", {"SF020", "SF021", "SF022"}),  # a call in an annotation runs
    ("gather_only.py", set()),  # tasks, but no session anywhere in reach
    ("gather_class.py", {"SF013"}),  # the session comes from a context class, through a subclass and an alias
    ("gather_param.py", {"SF013"}),  # an annotation is enough for SF013's second condition
    ("gather_aliased_param.py", {"SF013"}),  # ... under a local alias too
    ("gather_assigned.py", {"SF013"}),
    ("gather_renamed.py", {"SF013"}),  # `gather` imported under another name
    ("gather_reexported.py", {"SF013"}),  # ... from a project module that re-exports it so (found by review)
    ("gather_string_annotation.py", {"SF013"}),
    # a session type and gather in one file, but what the tasks share is an aiohttp session
    ("gather_other_session.py", set()),
])
def test_parser_stage_drops_near_misses_only(tmp_path: Path, name: str, expected: set[str]) -> None:
    root = write_project(tmp_path, None, **{n.replace("/", "__"): t for n, t in REFERENCES.items()})
    chosen = _chosen(root, name) - {"SF000"}  # SF000 follows imports (requests is not installed here)
    assert expected <= chosen
    if not expected:
        assert chosen == set()


def test_a_file_that_can_meet_no_second_condition_is_not_parsed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`gather` alone spells SF013's sites but no session: nothing can come of reading it."""
    import ast

    import sessionfix.prefilter

    root = write_project(tmp_path, None, **{n.replace("/", "__"): t for n, t in REFERENCES.items()})
    parsed: list[bytes] = []
    real = ast.parse

    def counting(source: bytes, *args: object, **kwargs: object) -> ast.Module:
        parsed.append(source)
        return real(source, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sessionfix.prefilter.ast, "parse", counting)
    assert _chosen(root, "gather_only.py") - {"SF000"} == set()
    gather_only = (root / "gather_only.py").read_bytes()
    assert gather_only not in parsed
    assert _chosen(root, "gather_param.py") == {"SF013"} and (root / "gather_param.py").read_bytes() in parsed


CHAIN = {
    "a.py": "from core.db import get_session as fetch\n",
    "c.py": "from core.db import get_session\nfrom a import fetch as grab\n",  # a spelling `a` adds
    "user.py": "from c import grab\n\n\ndef f():\n    s = grab()\n    s.close()\n",
}


def _closure(root: Path, jobs: int) -> str:
    from sessionfix.prefilter import Prefilter

    config = load_config(root)
    run = Run(config, config.settings, ProjectIndex(root), discover([root], root), RULES, prefilter=True,
              targets=[root], jobs=jobs)
    prefilter = Prefilter(run.rules, run.settings, run.project)
    run._close(prefilter)
    return prefilter.fingerprint()


@pytest.mark.parametrize("files", [REFERENCES, CHAIN], ids=["references", "chain"])
def test_the_closure_is_the_same_when_workers_read_the_seeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             files: dict[str, str]) -> None:
    import sessionfix.session

    monkeypatch.setattr(sessionfix.session, "SCAN_IN_PARALLEL", 4)  # so the small project is shared out
    root = write_project(tmp_path, None, **{n.replace("/", "__"): t for n, t in files.items()})
    alone = _closure(root, 1)
    assert _closure(root, 2) == alone
    assert files is REFERENCES or '"grab"' in alone  # the chain is followed to its end


def test_nothing_to_share_starts_no_workers() -> None:
    from sessionfix.parallel import may_bind_all, scan_all

    assert may_bind_all([], frozenset(), 2) == [] and scan_all([], [], 2) == []


def test_answers_for_other_tokens_are_not_used(tmp_path: Path) -> None:
    """Once a seed adds a spelling, the workers' answers (made for the old tokens) are set aside."""
    from sessionfix.prefilter import Prefilter

    root = write_project(tmp_path, None, **CHAIN)
    config = load_config(root)
    prefilter = Prefilter(RULES, config.settings, ProjectIndex(root))
    seeds = {root / "a.py": frozenset({b"get_session"}), root / "c.py": frozenset({b"get_session"})}
    asked: list[Path] = []
    real = prefilter._may_bind
    prefilter._may_bind = lambda path: asked.append(path) or real(path)  # type: ignore[method-assign]
    assert prefilter.close_over(seeds, lambda paths, tokens: [True, False])
    assert asked == [root / "c.py"]  # a.py added `fetch`: c.py is looked at again, and binds `grab`
    assert b"grab" in prefilter.tokens


#: `M.Session` reads that bytes alone can settle (dotted names), and shapes they cannot (None)
MODULE_ATTRIBUTES = {
    "plain": ("import requests\ns = requests.Session()\nwith requests.Session() as t:\n    pass\n",
              {"requests.Session"}),
    "submodule_import_too": ("import requests\nimport requests.adapters\nrequests.Session()\n", {"requests.Session"}),
    "indented_import": ("def f():\n    import requests\n    return requests.Session()\n", {"requests.Session"}),
    "commented_import": ("import requests  # http\nrequests.Session()\n", {"requests.Session"}),
    "two_modules": ("import requests\nimport httpx\nrequests.Session()\nhttpx.Session()\n",
                    {"requests.Session", "httpx.Session"}),
    "rebound": ("import requests\nrequests = make()\nrequests.Session()\n", None),
    "parameter": ("import requests\ndef f(requests):\n    return requests.Session()\n", None),
    "loop_target": ("import requests\nfor requests in x:\n    requests.Session()\n", None),
    "with_target": ("import requests\nwith x as requests:\n    requests.Session()\n", None),
    "global": ("import requests\ndef f():\n    global requests\n    requests.Session()\n", None),
    "from_import": ("from lib import requests\nrequests.Session()\n", None),
    "import_as": ("import lib as requests\nrequests.Session()\n", None),
    "import_list": ("import os, requests\nrequests.Session()\n", None),
    "continued_import": ("import \\\n    requests\nrequests.Session()\n", None),
    "star": ("import requests\nfrom lib import *\nrequests.Session()\n", None),
    "star_continued": ("import requests\nfrom lib import \\\n    *\nrequests.Session()\n", None),
    "star_tight": ("import requests\nfrom lib import*\nrequests.Session()\n", None),
    "never_imported": ("requests.Session()\n", None),
    "only_imported_in_a_dotted_form": ("import requests.adapters\nrequests.Session()\n", None),
    "chain": ("import a\na.requests.Session()\n", None),
    "spaced": ("import requests\nrequests . Session()\n", None),
    "broken_line": ("import requests\n(requests.\n    Session())\n", None),
    "bare_name": ("from sqlalchemy.orm import Session\nSession()\n", None),
    "imported_name": ("import requests\nfrom requests import Session\nrequests.Session()\n", None),
    "call_result": ("import requests\nmake().Session()\n", None),
    "not_ascii": ("import requests\n# caf\u00e9\nrequests.Session()\n", None),
    "walrus": ("import requests\nif (requests := f()):\n    requests.Session()\n", None),
    # an attribute read across a gap after the dot, reaching a raw factory (found by review)
    "gap_line_break": ('"""Usage::\n\n    import orm\n"""\nimport sqlalchemy.orm\n\n\ndef load(engine):\n'
                       "    session = (sqlalchemy.\n               orm.Session(bind=engine))\n"
                       "    session.add(1)\n    session.commit()\n", None),
    "gap_spaces": ("import orm\nimport sqlalchemy\n\n\ndef load(engine):\n"
                   "    session = sqlalchemy . orm.Session(bind=engine)\n    session.add(1)\n    session.commit()\n", None),
    "gap_continuation": ("import orm\nimport sqlalchemy\n\n\ndef load(engine):\n"
                         "    session = sqlalchemy.\\\n        orm.Session(bind=engine)\n"
                         "    session.add(1)\n    session.commit()\n", None),
    "gap_comment": ("import orm\nimport sqlalchemy\n\n\ndef load(engine):\n"
                    "    session = (sqlalchemy.  # the ORM\n\n               orm.Session(bind=engine))\n"
                    "    session.add(1)\n    session.commit()\n", None),
}


def _module_attribute_files() -> dict[str, str]:
    """Each MODULE_ATTRIBUTES source as a file, and a project module named like a library
    module that re-exports the raw factory."""
    files = {f"m_{name}.py": source for name, (source, _) in MODULE_ATTRIBUTES.items()}
    files["shim.py"] = "from init import Session\n"
    files["uses_shim.py"] = """\
        import shim


        def load():
            with shim.Session() as session:
                session.add(1)
                session.commit()
        """
    return files


@pytest.mark.parametrize("name", sorted(MODULE_ATTRIBUTES))
def test_module_attributes_read_only_what_bytes_settle(name: str) -> None:
    from sessionfix.prefilter import module_attributes

    source, expected = MODULE_ATTRIBUTES[name]
    assert module_attributes(source.encode(), [b"Session"]) == expected


def test_module_attributes_change_no_choice_and_save_the_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the bytes settle it, the rules chosen are the ones the parse would choose; a
    project module that re-exports a raw factory under a module's name is still followed."""
    import sessionfix.prefilter as prefilter_module

    files = {**_module_attribute_files(), "requests_only.py": REFERENCES["requests_only.py"]}
    root = write_project(tmp_path, None, **files)
    names = sorted(name for name in files if "__" not in name)
    with_bytes = {name: _chosen(root, name) for name in names}
    real = prefilter_module.module_attributes
    monkeypatch.setattr(prefilter_module, "module_attributes", lambda raw, tokens: None)
    assert {name: _chosen(root, name) for name in names} == with_bytes
    assert {"SF002", "SF020"} <= with_bytes["uses_shim.py"]
    monkeypatch.setattr(prefilter_module, "module_attributes", real)
    parsed: list[bytes] = []
    real_parse = ast.parse
    monkeypatch.setattr(prefilter_module.ast, "parse", lambda raw, *a, **k: parsed.append(raw) or real_parse(raw, *a, **k))
    prefilter = _prefilter(root)
    parsed.clear()  # the closure reads project modules
    assert {r.CODE for r in prefilter.rules_for((root / "requests_only.py").read_bytes(), root / "requests_only.py")} <= {"SF000"}
    assert parsed == []
    assert prefilter.rules_for((root / "m_rebound.py").read_bytes(), root / "m_rebound.py") and parsed  # parsed


def test_prefilter_changes_no_result_on_module_attributes(tmp_path: Path) -> None:
    root = write_project(tmp_path, None, **_module_attribute_files())
    with_prefilter = _results(root, {}, prefilter=True)
    assert with_prefilter == _results(root, {}, prefilter=False)
    found = {key[0] for key in with_prefilter if key[1] or key[2]}
    assert {"uses_shim.py", "m_gap_line_break.py", "m_gap_spaces.py", "m_gap_continuation.py",
            "m_gap_comment.py"} <= found, "the rules find nothing there, so the test proves nothing"


#: files whose spellings `annotations.annotation_only` reads from the bytes, and near ones it
#: must leave to the parse; in the default project (raw factories init.Session and
#: core.db.async_session)
ANNOTATED = {
    "injected.py": """\
        from aiogram.types import CallbackQuery
        from sqlalchemy.orm import Session


        async def handle(callback_query: CallbackQuery, session: Session) -> None:
            \"\"\"Session is injected by the middleware; it commits and closes after the handler.\"\"\"
            session.flush()


        def owner(
            session: Session,  # injected
            user_id: int,
        ) -> Session | None:
            return session.get(dict, user_id)
        """,
    # the raw factory itself, only named: rules that need no call still see it
    "raw_named.py": """\
        from init import Session


        def f(session: Session) -> None:
            session.commit()
        """,
    "raw_relative.py": """\
        from .init import Session


        def f(session: Session) -> None:
            session.commit()
        """,
    # a read no import explains may stand for anything so spelled
    "unimported.py": """\
        def f(session: Session) -> None:
            session.commit()
        """,
    "climbs.py": """\
        from ...db import Session


        def f(session: Session) -> None:
            session.commit()
        """,
    "raw_called.py": """\
        from init import Session


        def f(session: Session = None) -> None:
            session = session or Session()
            session.add(1)
            session.commit()
        """,
    "raw_default.py": """\
        from init import Session


        def f(make=Session) -> None:
            with make() as session:
                session.add(1)
                session.commit()
        """,
}


def _annotated_project(tmp_path: Path) -> Path:
    return write_project(tmp_path, None, **ANNOTATED, **{"init.py": "from sqlalchemy.orm import sessionmaker\n"
                                                                    "Session = sessionmaker()\n"})


def test_annotation_only_changes_no_choice_and_saves_the_parse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sessionfix.annotations as annotations_module
    import sessionfix.prefilter as prefilter_module

    root = _annotated_project(tmp_path)
    refs = write_project(tmp_path / "refs", None, **{n.replace("/", "__"): t for n, t in REFERENCES.items()})
    cases = [(root, name) for name in ANNOTATED] + [(refs, name) for name in REFERENCES if "/" not in name]
    with_bytes = {(r, n): _chosen(r, n) for r, n in cases}
    monkeypatch.setattr(annotations_module, "annotation_only", lambda raw, tokens: None)
    assert {(r, n): _chosen(r, n) for r, n in cases} == with_bytes
    monkeypatch.undo()
    assert with_bytes[(root, "injected.py")] <= {"SF000"}
    assert {"SF020", "SF021"} <= with_bytes[(root, "raw_called.py")]
    parsed: list[bytes] = []
    real_parse = ast.parse
    monkeypatch.setattr(prefilter_module.ast, "parse", lambda raw, *a, **k: parsed.append(raw) or real_parse(raw, *a, **k))
    prefilter = _prefilter(root)
    assert {"SF002", "SF001"} <= with_bytes[(root, "unimported.py")] & with_bytes[(root, "climbs.py")]
    for name in ("injected.py", "raw_named.py", "raw_relative.py", "unimported.py", "climbs.py"):
        parsed.clear()  # the closure reads project modules
        prefilter.rules_for((root / name).read_bytes(), root / name)
        assert parsed == [], f"{name} was parsed"
    prefilter.rules_for((root / "raw_called.py").read_bytes(), root / "raw_called.py")
    assert parsed, "a call is left to the parse"


def test_prefilter_changes_no_result_on_annotations(tmp_path: Path) -> None:
    root = _annotated_project(tmp_path)
    for options in ({}, {"unsafe": True}):
        with_prefilter = _results(root, options, prefilter=True)
        assert with_prefilter == _results(root, options, prefilter=False)
    found = {key[0] for key in with_prefilter if key[1] or key[2]}
    assert "raw_called.py" in found, "the rules find nothing there, so the test proves nothing"


#: `prefilter._LEXEME` in its plain form (one byte per step, lazy triple quotes): the
#: specification the faster, unrolled pattern must match span for span
_PLAIN_LEXEME = re.compile(
    rb"#[^\r\n]*"
    rb'|"""(?:\\.|[^\\])*?"""'
    rb"|'''(?:\\.|[^\\])*?'''"
    rb'|"(?:\\.|[^\\"\r\n])*"'
    rb"|'(?:\\.|[^\\'\r\n])*'"
    rb"|[\"']",
    re.DOTALL,
)


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from([b'"', b"'", b"\\", b"#", b"\n", b"\r", b"a", b" ", b'"""', b"'''"]), max_size=40))
def test_lexeme_pattern_is_its_plain_form(pieces: list[bytes]) -> None:
    from sessionfix.prefilter import _LEXEME

    raw = b"".join(pieces)
    assert [m.span() for m in _LEXEME.finditer(raw)] == [m.span() for m in _PLAIN_LEXEME.finditer(raw)]


def test_lexeme_pattern_is_its_plain_form_on_real_files() -> None:
    from sessionfix.prefilter import _LEXEME

    for path in sorted(p for part in ("src", "tests", "codemods", "bench") for p in (REPO / part).rglob("*.py")):
        raw = path.read_bytes()
        assert [m.span() for m in _LEXEME.finditer(raw)] == [m.span() for m in _PLAIN_LEXEME.finditer(raw)], path


def test_tokens_known_from_the_first_pass_choose_the_same_rules(tmp_path: Path) -> None:
    """rules_for given the tokens the first pass found (of a larger set) chooses what it
    chooses looking for them itself."""
    projects = [write_project(tmp_path / "refs", None, **{n.replace("/", "__"): t for n, t in REFERENCES.items()}),
                _annotated_project(tmp_path / "annotated"), write_project(tmp_path / "attrs", None, **_module_attribute_files())]
    compared = 0
    for root in projects:
        prefilter = _prefilter(root)
        universe = [*prefilter.tokens, b"Unrelated", b"select"]
        for path in discover([root], root):
            raw = path.read_bytes()
            held = frozenset(t for t in universe if occurs(t, raw))
            assert prefilter.rules_for(raw, path, held) == prefilter.rules_for(raw, path), path
            compared += bool(held)
    assert compared > 30


def test_a_worker_looks_again_when_the_file_changed_since_the_first_pass(tmp_path: Path) -> None:
    from sessionfix.cache import digest
    from sessionfix.model import Job
    from sessionfix.parallel import WorkState, work_one

    root = _annotated_project(tmp_path)
    prefilter = _prefilter(root)
    path = root / "raw_called.py"
    config = load_config(root)
    stale = {path: (digest(b"an older version"), frozenset())}
    state = WorkState(prefilter.project, config.settings, RULES, prefilter, False, stale)
    assert work_one(state, Job(path, "raw_called.py")).parsed
    state.held = {path: (digest(path.read_bytes()), frozenset())}  # the same bytes: the hint is used
    assert not work_one(state, Job(path, "raw_called.py")).parsed


_IMPORT_PIECES = [b"import", b" ", b"from", b"a", b"b.c", b",", b"(", b")", b"#", b"\\", b"\n", b"\r\n", b"\r", b";",
                  b" as ", b".", b"*", b"'", b'"', b"\t", b"x"]


def _scanned_alone(raw: bytes) -> list[ScannedImport] | None:
    from sessionfix import prefilter as prefilter_module

    prefilter_module._READ_LINES.clear()
    return scan_imports(raw)


_IMPORT_TEXT = st.lists(st.sampled_from(_IMPORT_PIECES), max_size=12).map(b"".join)


@settings(max_examples=800, deadline=None)
@given(st.sampled_from([b"", b"from a import (\n", b"from a import (b,\n", b"import a\n"]), _IMPORT_TEXT,
       st.lists(_IMPORT_TEXT, min_size=1, max_size=6))
def test_import_lines_read_before_are_read_the_same(opening: bytes, shared: bytes, rests: list[bytes]) -> None:
    """scan_imports keeps what it read of each line for the next file: the answer for a file is
    the one it gives reading every line afresh, whatever came before (files here begin alike
    and differ after, as files sharing an import line do)."""
    files = [opening + shared + rest for rest in rests]
    alone = [_scanned_alone(raw) for raw in files]
    for raw in files:
        scan_imports(raw)  # every line read once: the next answers come from what was kept
    assert [scan_imports(raw) for raw in files] == alone
    assert [scan_imports(raw) for raw in reversed(files)] == alone[::-1]


def test_import_lines_read_before_are_read_the_same_on_real_files() -> None:
    paths = sorted(p for part in ("src", "tests", "codemods", "bench", "examples") for p in (REPO / part).rglob("*.py"))
    alone = [_scanned_alone(path.read_bytes()) for path in paths]
    for path in paths:
        scan_imports(path.read_bytes())
    assert [scan_imports(path.read_bytes()) for path in paths] == alone
    assert sum(1 for found in alone if found) > 50


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"Session", b"AsyncSession", b"get_session", b"session", b"__enter__", b"gather",
                                 b"ession", b"x", b" ", b".", b"_", b"\n", b"contextmanager", b"async"]), max_size=20),
       st.sets(st.sampled_from([b"Session", b"AsyncSession", b"get_session", b"__enter__", b"__exit__", b"gather",
                                b"contextmanager", b"asynccontextmanager", b"sessionmaker"]), min_size=1))
def test_tokens_found_in_groups_are_the_tokens_that_occur(pieces: list[bytes], tokens: set[bytes]) -> None:
    from sessionfix.prefilter import held_tokens

    raw = b"".join(pieces)
    assert held_tokens(tokens, raw) == {token for token in tokens if occurs(token, raw)}


def test_a_file_needs_nothing_only_without_tokens_and_with_resolving_imports(tmp_path: Path) -> None:
    prefilter = _prefilter(_annotated_project(tmp_path))
    assert prefilter.needs_nothing(frozenset(), ())
    assert prefilter.needs_nothing(frozenset({b"Unrelated"}), ("models",))  # a token of a larger set, not its own
    assert not prefilter.needs_nothing(frozenset({b"Session"}), ())
    assert not prefilter.needs_nothing(frozenset(), None)  # an import may fail, or it was not checked
