"""SF020/SF021 against a real SQLite database: the fixed code closes every session it opens.

A small project (the rule examples' default core/db.py, a model, and jobs written the way the
seeds leak sessions) is fixed in-process by the whole pipeline. The "before" and "after" jobs then
run side by side, each scenario on a fresh database, with every session counted (see tracking.py).
Before the fix the scenarios marked `leaks` keep a connection; after it, no session the code made
is left open on the success, error or early-return path. A session passed in by the caller is still
open, still in its transaction and uncommitted, and rows, return values and exceptions are the same.
"""

from __future__ import annotations

import ast
import asyncio
import textwrap
import types
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from sessionfix.config import load_config
from sessionfix.index import ProjectIndex
from sessionfix.runner import Job, process_file
from tests.behaviour.tracking import Tracker, committed_rows, fresh_engine, load_module, outcome, project_on_path
from tests.conftest import write_project

MODELS = """\
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)
"""

JOBS = '''\
"""Jobs that make their own session the way the seeds do.

They return plain values (`str(...)`, `int(...)`): a value read through the session that leaves the
function makes the close unsafe (see test_ownership_detached.py), since it may hold ORM objects.
"""

from sqlalchemy import func, select

from core.db import async_session, get_session
from models import Item


def add_item(name, fail=False):
    session = get_session()
    session.add(Item(name=name))
    if fail:
        raise ValueError(f"refused {name}")
    session.commit()
    session.close()


def find_name(item_id, fail=False):
    session = get_session()
    item = session.get(Item, item_id)
    if item is None:
        return None
    if fail:
        raise LookupError(f"item {item_id} is locked")
    name = str(item.name)
    session.close()
    return name


def export_names(session=None):
    if session is None:
        from init import Session

        session = Session()
    return [str(name) for name in session.scalars(select(Item.name).order_by(Item.id))]


def rename(item_id, name, session=None):
    session = session or get_session()
    item = session.get(Item, item_id)
    if item is None:
        raise LookupError(f"no item {item_id}")
    item.name = name
    session.flush()
    return int(item.id)


def names(session=None):
    session = session if session is not None else get_session()
    for item in session.scalars(select(Item).order_by(Item.id)):
        yield str(item.name)


async def count_items(session=None):
    if session is None:
        session = async_session()
    return int(await session.scalar(select(func.count(Item.id))))
'''

#: which rule must have rewritten which job, so the comparison is between different code
EXPECTED_CHANGES = {"add_item": "SF021", "find_name": "SF021", "export_names": "SF020", "rename": "SF020",
                    "names": "SF020", "count_items": "SF020"}
SEED = [[1, "apple"], [2, "pear"]]

#: id, job, args, how to call it (plain / first item of a generator / async), with the caller's
#: session or not, and what the original leaks on that path: a session that never took a connection,
#: or one that still holds its connection
SCENARIOS: list[dict[str, Any]] = [
    {"id": "add-success", "job": "add_item", "args": ["plum"], "leaks": False},
    {"id": "add-error-before-commit", "job": "add_item", "args": ["plum"], "kwargs": {"fail": True}, "leaks": "session"},
    {"id": "add-duplicate-fails-at-commit", "job": "add_item", "args": ["apple"], "leaks": "connection"},
    {"id": "find-success", "job": "find_name", "args": [2], "leaks": False},
    {"id": "find-early-return", "job": "find_name", "args": [9], "leaks": "connection"},
    {"id": "find-error", "job": "find_name", "args": [1], "kwargs": {"fail": True}, "leaks": "connection"},
    {"id": "export-own-session", "job": "export_names", "leaks": "connection"},
    {"id": "export-callers-session", "job": "export_names", "caller": True},
    {"id": "rename-own-session", "job": "rename", "args": [1, "quince"], "leaks": "connection"},
    {"id": "rename-error", "job": "rename", "args": [7, "quince"], "leaks": "connection"},
    {"id": "rename-flush-fails", "job": "rename", "args": [1, "pear"], "leaks": "connection"},
    {"id": "rename-callers-session", "job": "rename", "args": [1, "quince"], "caller": True},
    {"id": "names-all", "job": "names", "call": "list", "leaks": "connection"},
    {"id": "names-stop-after-first", "job": "names", "call": "first", "leaks": "connection"},
    {"id": "names-callers-session", "job": "names", "call": "list", "caller": True},
    {"id": "count-async-own-session", "job": "count_items", "call": "async", "leaks": "connection"},
    {"id": "count-async-callers-session", "job": "count_items", "call": "async", "caller": True},
]


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The project, the fix's records, and the jobs before and after it."""
    root = write_project(tmp_path_factory.mktemp("ownership"), **{"models.py": MODELS, "jobs.py": JOBS})
    result = process_file(Job(root / "jobs.py", "jobs.py"), ProjectIndex(root), load_config(root).settings)
    assert result.error is None and result.new_source is not None, result
    (root / "jobs_fixed.py").write_bytes(result.new_source)
    return {"root": root, "changes": result.changes, "findings": result.findings}


@pytest.fixture(scope="module")
def runs(project: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every scenario, run once before and once after the fix."""
    root: Path = project["root"]
    databases = tmp_path_factory.mktemp("ownership_db")
    init = types.ModuleType("init")  # what init.py was: the project's sessionmaker
    with project_on_path(root, init=init):
        db = __import__("core.db").db
        models = __import__("models")
        jobs = {"before": load_module(root / "jobs.py", "jobs_before"),
                "after": load_module(root / "jobs_fixed.py", "jobs_after")}
        init.Session = db._factory  # type: ignore[attr-defined]
        results: dict[str, dict[str, Any]] = {}
        for scenario in SCENARIOS:
            for version, module in jobs.items():
                path = databases / f"{scenario['id']}-{version}.db"
                results.setdefault(scenario["id"], {})[version] = _run(scenario, module, db, models, path)
    return results


def _run(scenario: dict[str, Any], jobs: types.ModuleType, db: types.ModuleType, models: types.ModuleType,
         path: Path) -> dict[str, Any]:
    url = f"sqlite:///{path}"
    engine = fresh_engine(url, models.Base)
    with engine.begin() as connection:
        connection.execute(models.Item.__table__.insert(), [{"id": i, "name": n} for i, n in SEED])
    tracker = Tracker()
    db._factory.configure(bind=engine)
    db._factory.class_ = tracker.session_class
    job = getattr(jobs, scenario["job"])
    args, kwargs = list(scenario.get("args", [])), dict(scenario.get("kwargs", {}))
    how = scenario.get("call", "plain")
    names = select(models.Item.name).order_by(models.Item.id)

    def measure(result: dict[str, Any], caller: Any, checked_out: int) -> dict[str, Any]:
        """Sessions and connections right after the call, before anyone cleans up."""
        besides = (caller,) if caller is not None else ()
        result.update(
            rows=committed_rows(url, models.Base),
            unclosed=len(tracker.unclosed(besides=besides)),
            leaked=len(tracker.leaked_connections(besides=besides)),
            checked_out=checked_out,
        )
        if caller is not None:
            result["caller"] = {"closed": tracker.was_closed(caller), "in_transaction": caller.in_transaction()}
        return result

    if how == "async":
        try:
            return asyncio.run(_run_async(scenario, job, args, kwargs, db, path, tracker, measure, names))
        finally:
            engine.dispose()
    caller = db._factory() if scenario.get("caller") else None
    if caller is not None:
        kwargs["session"] = caller

    def call() -> Any:
        if how == "list":
            return list(job(*args, **kwargs))
        if how == "first":
            generator = job(*args, **kwargs)
            try:
                return next(generator)
            finally:
                generator.close()
        return job(*args, **kwargs)

    try:
        result = measure(outcome(call), caller, engine.pool.checkedout())
        if caller is not None:  # what the caller can still do with its session: read its own changes
            result["caller"]["sees"] = list(caller.scalars(names))
        return result
    finally:
        tracker.clean_up()
        engine.dispose()


async def _run_async(scenario: dict[str, Any], job: Any, args: list[Any], kwargs: dict[str, Any],
                     db: types.ModuleType, path: Path, tracker: Tracker, measure: Any, names: Any) -> dict[str, Any]:
    """The async jobs: call, count and clean up inside one event loop, as an application would."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    db.async_session.configure(bind=engine, sync_session_class=tracker.session_class)
    caller = db.async_session() if scenario.get("caller") else None
    if caller is not None:
        kwargs["session"] = caller
    try:
        try:
            result: dict[str, Any] = {"return": await job(*args, **kwargs), "exception": None}
        except Exception as exc:  # the exception is part of the observable behaviour
            result = {"return": None, "exception": (type(exc).__qualname__, str(exc))}
        result = measure(result, caller.sync_session if caller is not None else None,
                         engine.sync_engine.pool.checkedout())
        if caller is not None:
            result["caller"]["sees"] = list(await caller.scalars(names))
        return result
    finally:
        await tracker.aclean_up()
        await engine.dispose()


def test_the_fix_rewrote_every_job(project: dict[str, Any]) -> None:
    """Records carry the original file's lines: each job's rule must have changed it."""
    tree = ast.parse(JOBS)
    spans = {node.name: (node.lineno, node.end_lineno) for node in tree.body
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for job, rule in EXPECTED_CHANGES.items():
        first, last = spans[job]
        assert any(c.rule == rule and first <= c.line <= last for c in project["changes"]), (job, project["changes"])
    fixed = ast.parse((project["root"] / "jobs_fixed.py").read_text())
    assert not [n for n in ast.walk(fixed) if isinstance(n, ast.ImportFrom) and n.module == "init"]
    assert not [f for f in project["findings"] if f.rule in ("SF020", "SF021")], project["findings"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
def test_same_rows_returns_and_exceptions(runs: dict[str, dict[str, Any]], scenario: dict[str, Any]) -> None:
    before, after = runs[scenario["id"]]["before"], runs[scenario["id"]]["after"]
    assert after["return"] == before["return"]
    assert after["exception"] == before["exception"]
    assert after["rows"] == before["rows"]
    assert after.get("caller") == before.get("caller")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
def test_every_session_the_code_opens_is_closed(runs: dict[str, dict[str, Any]], scenario: dict[str, Any]) -> None:
    before, after = runs[scenario["id"]]["before"], runs[scenario["id"]]["after"]
    if scenario.get("leaks"):  # the original really leaks here, so this test can fail
        assert before["unclosed"] >= 1, before
    if scenario.get("leaks") == "connection":
        assert before["leaked"] >= 1 and before["checked_out"] >= 1, before
    assert after["unclosed"] == 0, after
    assert after["leaked"] == 0, after
    holding = 1 if after.get("caller", {}).get("in_transaction") else 0
    assert after["checked_out"] == holding, after


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s.get("caller")], ids=lambda s: s["id"])
def test_callers_session_is_left_open_and_uncommitted(runs: dict[str, dict[str, Any]], scenario: dict[str, Any]) -> None:
    after = runs[scenario["id"]]["after"]
    assert after["caller"]["closed"] is False
    assert after["caller"]["in_transaction"] is True
    assert after["rows"]["items"] == SEED  # nothing the caller's session did was committed
    assert after["caller"]["sees"]  # and it still works: it reads through its own transaction


def test_rename_in_callers_session_is_visible_to_the_caller_only(runs: dict[str, dict[str, Any]]) -> None:
    after = runs["rename-callers-session"]["after"]
    assert after["return"] == 1
    assert after["caller"]["sees"] == ["quince", "pear"]  # item 1 renamed, in its transaction only
    assert after["rows"]["items"] == SEED


def test_scenarios_cover_success_error_and_early_return(runs: dict[str, dict[str, Any]]) -> None:
    before = {scenario_id: result["before"] for scenario_id, result in runs.items()}
    assert before["add-success"]["rows"]["items"] == [*SEED, [3, "plum"]]
    assert before["add-error-before-commit"]["exception"] == ("ValueError", "refused plum")
    assert before["add-duplicate-fails-at-commit"]["exception"][0] == "IntegrityError"
    assert before["find-early-return"]["return"] is None
    assert before["rename-flush-fails"]["exception"][0] == "IntegrityError"
    assert before["names-stop-after-first"]["return"] == "apple"
    assert before["count-async-own-session"]["return"] == 2


def test_fixed_jobs_read_as_expected(project: dict[str, Any]) -> None:
    """The two forms SF021 chooses between, and the ownership flag of SF020, in the real output."""
    source = (project["root"] / "jobs_fixed.py").read_text()
    assert textwrap.dedent("""\
        def add_item(name, fail=False):
            with get_db_session_ctx() as session:
                session.add(Item(name=name))
        """) in source
    assert "    finally:\n        session.close()\n" in source
    assert "        if owns_session:\n            await session.close()\n" in source
