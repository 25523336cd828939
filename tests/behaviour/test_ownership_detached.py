"""SF020/SF021 against a real SQLite database: functions whose returned value still needs the session.

Each job opens its own session and hands back ORM objects (directly, through a local list, from a
generator) or an unread Result; the caller uses them after the call (a lazy relationship, reading
the Result). Closing the session would change that, so the plain `fix` must leave every job as it
is (and report it as an unsafe fix), while `fix --unsafe` closes the session and the caller's use
really breaks: the difference the rules warn about, measured rather than assumed.
"""

from __future__ import annotations

import ast
import dataclasses
import types
from pathlib import Path
from typing import Any, Callable

import pytest

from sessionfix.config import load_config
from sessionfix.index import ProjectIndex
from sessionfix.model import Applicability
from sessionfix.runner import Job, process_file
from tests.behaviour.tracking import Tracker, fresh_engine, load_module, outcome, project_on_path
from tests.conftest import write_project

MODELS = """\
from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    tags: Mapped[list["Tag"]] = relationship()  # lazy: loaded on first access


class Tag(Base):
    __tablename__ = "tags"
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id"))
    label: Mapped[str] = mapped_column(String(50))
"""

JOBS = '''\
from sqlalchemy import select

from core.db import get_session
from models import Item


def load_item(item_id):
    session = get_session()
    return session.get(Item, item_id)


def tagged_items():
    session = get_session()
    found = []
    for item in session.scalars(select(Item).order_by(Item.id)):
        found.append(item)
    return found


def run(statement, session=None):
    if session is None:
        session = get_session()
    return session.execute(statement)


def each_item(session=None):
    session = session or get_session()
    for item in session.scalars(select(Item).order_by(Item.id)):
        yield item
'''

#: job -> (rule, what the caller does with the job's module after the call, what it sees before the fix)
USES: dict[str, tuple[str, Callable[[Any, Any], Any], Any]] = {
    "load_item": ("SF021", lambda jobs, models: [t.label for t in jobs.load_item(1).tags], ["red", "blue"]),
    "tagged_items": ("SF021", lambda jobs, models: [len(i.tags) for i in jobs.tagged_items()], [2, 0]),
    "run": ("SF020", lambda jobs, models: [i.name for i in jobs.run(_select(models)).scalars()], ["apple", "pear"]),
    "each_item": ("SF020", lambda jobs, models: [len(i.tags) for i in list(jobs.each_item())], [2, 0]),
}


def _select(models: Any) -> Any:
    from sqlalchemy import select

    return select(models.Item).order_by(models.Item.id)


@pytest.fixture(scope="module")
def fixes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The jobs, and what `fix` and `fix --unsafe` make of them."""
    root = write_project(tmp_path_factory.mktemp("detached"), **{"models.py": MODELS, "jobs.py": JOBS})
    settings = load_config(root).settings
    safe = process_file(Job(root / "jobs.py", "jobs.py"), ProjectIndex(root), settings)
    unsafe = process_file(Job(root / "jobs.py", "jobs.py"), ProjectIndex(root), dataclasses.replace(settings, unsafe=True))
    assert safe.error is None and unsafe.error is None and unsafe.new_source is not None, (safe, unsafe)
    (root / "jobs_safe.py").write_bytes(safe.new_source if safe.new_source is not None else JOBS.encode())
    (root / "jobs_unsafe.py").write_bytes(unsafe.new_source)
    return {"root": root, "safe": safe, "unsafe": unsafe}


@pytest.fixture(scope="module")
def runs(fixes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Each caller's use, against each version, on a fresh database."""
    root: Path = fixes["root"]
    databases = tmp_path_factory.mktemp("detached_db")
    results: dict[str, dict[str, Any]] = {}
    with project_on_path(root):
        db = __import__("core.db").db
        models = __import__("models")
        versions = {name: load_module(root / f"{file}.py", f"detached_{name}")
                    for name, file in (("before", "jobs"), ("safe", "jobs_safe"), ("unsafe", "jobs_unsafe"))}
        for job, (_, use, _) in USES.items():
            for name, module in versions.items():
                results.setdefault(job, {})[name] = _run(databases / f"{job}-{name}.db", db, models, module, use)
    return results


def _run(path: Path, db: types.ModuleType, models: types.ModuleType, jobs: types.ModuleType,
         use: Callable[[Any, Any], Any]) -> dict[str, Any]:
    engine = fresh_engine(f"sqlite:///{path}", models.Base)
    with engine.begin() as connection:
        connection.execute(models.Item.__table__.insert(), [{"id": 1, "name": "apple"}, {"id": 2, "name": "pear"}])
        connection.execute(models.Tag.__table__.insert(),
                           [{"id": 1, "item_id": 1, "label": "red"}, {"id": 2, "item_id": 1, "label": "blue"}])
    tracker = Tracker()
    db._factory.configure(bind=engine)
    db._factory.class_ = tracker.session_class
    try:
        result = outcome(lambda: use(jobs, models))
        return {**result, "made": len(tracker.sessions), "closed": len(tracker.closed)}
    finally:
        tracker.clean_up()
        engine.dispose()


def _segments(source: str) -> dict[str, str | None]:
    tree = ast.parse(source)
    return {node.name: ast.get_source_segment(source, node) for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_plain_fix_leaves_every_job_alone_and_says_why(fixes: dict[str, Any]) -> None:
    safe = fixes["safe"]
    after = (fixes["root"] / "jobs_safe.py").read_text()
    assert _segments(after) == _segments(JOBS)
    assert not [c for c in safe.changes if c.rule in ("SF020", "SF021")], safe.changes
    pending = [f for f in safe.findings if f.rule in ("SF020", "SF021")]
    assert len(pending) == len(USES), pending
    assert all(f.fix is Applicability.UNSAFE and "after the close, ORM objects in it are detached" in f.message
               for f in pending), pending


def test_unsafe_fix_closes_every_job(fixes: dict[str, Any]) -> None:
    unsafe = fixes["unsafe"]
    rules = sorted(c.rule for c in unsafe.changes if c.applicability is Applicability.UNSAFE)
    assert rules == sorted(rule for rule, _, _ in USES.values()), unsafe.changes
    changed = _segments(unsafe.new_source.decode())
    assert all(changed[job] != _segments(JOBS)[job] for job in USES)


@pytest.mark.parametrize("job", list(USES))
def test_plain_fix_keeps_what_the_caller_sees(runs: dict[str, dict[str, Any]], job: str) -> None:
    before, safe = runs[job]["before"], runs[job]["safe"]
    assert before == {"return": USES[job][2], "exception": None, "made": 1, "closed": 0}  # leaks, but works
    assert safe == before


@pytest.mark.parametrize("job", list(USES))
def test_unsafe_fix_breaks_the_callers_use(runs: dict[str, dict[str, Any]], job: str) -> None:
    """What the rules warn about, for real: the objects come back detached, the Result unreadable."""
    unsafe = runs[job]["unsafe"]
    assert unsafe["closed"] == unsafe["made"] == 1
    assert unsafe["exception"] is not None, unsafe
    assert unsafe["exception"][0] in ("DetachedInstanceError", "InvalidRequestError"), unsafe
