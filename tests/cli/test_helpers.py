"""`sessionfix helpers`: derived kind and facts of each configured helper, with file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sessionfix.cli import app
from tests.conftest import write_project

DB = """\
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from vendor import make_helper

async_session = async_sessionmaker(create_async_engine("sqlite+aiosqlite://"))


@asynccontextmanager
async def get_session():
    async with async_session() as session:
        yield session


@asynccontextmanager
async def get_tx():
    async with async_session() as session:
        try:
            yield session
            await session.commit()
        except Exception:
            await session.rollback()
            raise


get_wrapped = make_helper(async_session)
"""


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args), catch_exceptions=False, env={"COLUMNS": "240"})


@pytest.fixture
def async_project(tmp_path: Path) -> Path:
    config = '[tool.sessionfix]\nasync-context = "src.db.get_tx"\nraw-factories = ["src.db.async_session"]\n'
    return write_project(tmp_path, {"pyproject.toml": config, "src/__init__.py": "", "src/db.py": DB})


def facts(project: Path, helper: str) -> dict:
    result = invoke("helpers", str(project), "--async-context", helper, "--format", "json")
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    helpers = {h["option"]: h for h in json.loads(result.stdout)["helpers"]}  # type: ignore[attr-defined]
    assert helpers["sync-context"] == {"option": "sync-context", "name": None}
    return helpers["async-context"]


def test_helper_that_commits(async_project: Path) -> None:
    found = facts(async_project, "src.db.get_tx")
    assert (found["name"], found["kind"], found["location"], found["analysed"]) == (
        "src.db.get_tx", "asynccontextmanager", "src/db.py:17", True)
    assert found["facts"]["commits_on_exit"] == {
        "value": True, "evidence": "src/db.py:21: await session.commit() after the yield"}
    assert found["facts"]["rolls_back_on_error"]["value"] is True
    assert found["facts"]["rolls_back_on_error"]["evidence"].startswith("src/db.py:23: await session.rollback()")
    assert found["facts"]["closes"]["value"] is True
    assert found["facts"]["propagates_errors"] == {"value": True, "evidence": "src/db.py:24: re-raises"}


def test_helper_that_only_closes(async_project: Path) -> None:
    found = facts(async_project, "src.db.get_session")
    assert (found["kind"], found["location"]) == ("asynccontextmanager", "src/db.py:11")
    values = {key: fact["value"] for key, fact in found["facts"].items()}
    assert values == {"commits_on_exit": False, "rolls_back_on_error": False, "closes": True, "propagates_errors": True}
    assert "AsyncSession.__aexit__ calls close()" in found["facts"]["closes"]["evidence"]


def test_helper_it_cannot_analyse(async_project: Path) -> None:
    found = facts(async_project, "src.db.get_wrapped")
    assert (found["kind"], found["analysed"]) == ("unknown", False)
    for fact in found["facts"].values():
        assert fact["value"] is None
        assert fact["evidence"].startswith("src/db.py:27: get_wrapped is the result of make_helper(...)")


def test_text_table_names_every_fact_and_its_line(async_project: Path) -> None:
    result = invoke("helpers", str(async_project), "--no-color")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())  # type: ignore[attr-defined]
    for expected in ("async-context", "src.db.get_tx", "asynccontextmanager", "commits on exit",
                     "rolls back on error", "closes", "re-raises errors", "src/db.py:21", "sync-context", "not configured"):
        assert expected in text, expected


def test_unresolvable_option_is_a_one_line_error(async_project: Path) -> None:
    result = invoke("helpers", str(async_project), "--async-context", "nodots")
    assert result.exit_code == 2
    assert "--async-context: 'nodots' is not a dotted name" in result.stderr  # type: ignore[attr-defined]
    assert "Traceback" not in result.stderr  # type: ignore[attr-defined]


def test_fix_refuses_an_async_helper_the_import_system_would_not_find(tmp_path: Path) -> None:
    """src/db/ (a package) shadows src/db.py, so `from src.db import get_session` would fail."""
    route = "from src.db import async_session\n\n\nasync def ping():\n    async with async_session() as db:\n        await db.commit()\n"
    config = '[tool.sessionfix]\nasync-context = "src.db.get_session"\nraw-factories = ["src.db.async_session"]\n'
    write_project(tmp_path, {"pyproject.toml": config, "src/__init__.py": "", "src/db.py": DB,
                             "src/db/__init__.py": "async_session = None\n", "routes.py": route})
    result = invoke("fix", str(tmp_path))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [  # type: ignore[attr-defined]
        "sessionfix: error: async-context src.db.get_session: src/db/__init__.py defines no get_session; "
        "nothing was changed"]
    assert (tmp_path / "routes.py").read_text() == route
