"""The prefilter never changes a result: every rule, with and without it, on every test input.

Inputs: every VALID/INVALID example of every registered rule (in its own project), the
projects under examples/, and the sample projects the CLI tests use. Also the import scanner
on the shapes it must read, and the ones it must give up on.
"""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from sessionfix.config import load_config
from sessionfix.discover import discover
from sessionfix.index import ProjectIndex
from sessionfix.model import FileResult
from sessionfix.prefilter import ScannedImport, occurs, scan_imports
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


def test_tokens_match_whole_identifiers_only() -> None:
    assert occurs(b"Session", b"s = requests.Session()")
    assert not occurs(b"Session", b"s = aiohttp.ClientSession()\nSessionLocal = 1\n")
