"""A helper that swallows the caller's exception is never swapped in by default.

`with Session() as s:` lets the block's exceptions through; a helper whose `except` only rolls
back and logs turns them into a normal return. Swapping it in changes what the caller sees, so
SF002 must not call that swap safe, whatever the block does (property over the random blocks of
test_random_blocks), and the reviewer's reproducer must behave the same before and after a
default `sessionfix fix` against a real SQLite database, while the --unsafe rewrite really does
change it (which is why the swap is labelled unsafe).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from sqlalchemy import Integer
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sessionfix.config import load_config
from sessionfix.index import ProjectIndex
from sessionfix.runner import Job, process_source
from tests.behaviour.tracking import load_module, outcome, project_on_path
from tests.conftest import write_project
from tests.properties.test_random_blocks import blocks, program

SWALLOWING_DB = """\
import logging
from contextlib import contextmanager

from sqlalchemy.orm import sessionmaker

SessionFactory = sessionmaker()
logger = logging.getLogger(__name__)


def get_session():
    return SessionFactory()


@contextmanager
def get_db_session_ctx():
    session = get_session()
    try:
        yield session
        session.commit()
    except Exception as e:
        session.rollback()
        logger.error("swallowed %s", e)
    finally:
        session.close()
"""

PROJECT = {
    "pyproject.toml": (
        '[project]\nname = "demo"\n\n[tool.sessionfix]\nsync-context = "core.db.get_db_session_ctx"\n'
        'sync-factory = "core.db.get_session"\nraw-factories = ["init.Session"]\n'
    ),
    "core/__init__.py": "",
    "core/db.py": SWALLOWING_DB,
    "init.py": "from core.db import SessionFactory as Session\n",
}

JOB = """\
from init import Session


def strict(work):
    with Session() as session:
        try:
            session.add(work)
            session.commit()
        except Exception:
            session.rollback()
            raise


def plain(work):
    with Session() as session:
        session.add(work)
        session.commit()
    return "ok"
"""

_INDEX: dict[str, Any] = {}


def fix(root: Path, source: str, *, unsafe: bool = False) -> tuple[str, list[tuple[str, str]]]:
    """Run the whole pipeline on `source` as job.py of the swallowing project."""
    index = _INDEX.get(str(root)) or _INDEX.setdefault(str(root), ProjectIndex(root))
    config = load_config(root).settings.with_overrides(unsafe=unsafe)
    result = process_source(source.encode(), Job(root / "job.py", "job.py"), index, config)
    assert result.error is None, result.error
    new = result.new_source.decode() if result.new_source is not None else source
    records = [(c.rule, c.applicability.value) for c in result.changes]
    records += [(f.rule, f"finding:{f.message}") for f in result.findings]
    return new, records


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=blocks())
def test_a_swallowing_helper_is_never_a_safe_swap(tmp_path_factory: Any, body: list[str]) -> None:
    root = _INDEX.get("root") or _INDEX.setdefault("root", write_project(tmp_path_factory.mktemp("swallow"), PROJECT))
    source = program(body)
    fixed, records = fix(root, source)
    assert fixed == source, "nothing may be rewritten when the only helper swallows errors"
    sf002 = [what for rule, what in records if rule == "SF002"]
    assert "safe" not in sf002
    for what in sf002:
        assert "does not re-raise the block's exceptions unchanged" in what, what
        assert "core/db.py:20: `except Exception` does not re-raise" in what, what


class Base(DeclarativeBase):
    pass


class T(Base):
    __tablename__ = "t"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


def behaviour(root: Path, tag: str) -> list[dict[str, Any]]:
    """The reviewer's run.py: insert id 1, then insert it again through each job function."""
    with project_on_path(root):
        db = load_module(root / "core" / "db.py", "core.db")
        job = load_module(root / "job.py", f"job_{tag}")
        from sqlalchemy import create_engine

        engine = create_engine("sqlite://")
        Base.metadata.create_all(engine)
        db.SessionFactory.configure(bind=engine)
        try:
            seen = [outcome(lambda: job.plain(T(id=1)))]
            seen += [outcome(lambda f=f: f(T(id=1))) for f in (job.plain, job.strict)]  # type: ignore[misc]
            with db.SessionFactory() as check:
                seen.append({"rows": sorted(check.scalars(Base.metadata.tables["t"].select()).all())})
        finally:
            engine.dispose()
    for seen_one in seen:  # the IntegrityError's text names the statement: its type is what matters
        if seen_one.get("exception"):
            seen_one["exception"] = seen_one["exception"][0]
    return seen


def test_reviewer_reproducer_behaves_the_same_after_a_default_fix(tmp_path: Path) -> None:
    before = write_project(tmp_path / "before", {**PROJECT, "job.py": JOB})
    fixed, records = fix(before, JOB)
    assert fixed == JOB
    assert [rule for rule, what in records if rule == "SF002" and what.startswith("finding:unsafe fix available")] == [
        "SF002", "SF002"]

    after = write_project(tmp_path / "after", {**PROJECT, "job.py": fixed})
    expected = [
        {"return": "ok", "exception": None},
        {"return": None, "exception": "IntegrityError"},
        {"return": None, "exception": "IntegrityError"},
        {"rows": [1]},
    ]
    assert behaviour(before, "before") == expected
    assert behaviour(after, "after") == expected

    # what --unsafe would do: the helper eats the IntegrityError, so the caller sees success
    rewritten, records = fix(before, JOB, unsafe=True)
    assert ("SF002", "unsafe") in records and "with get_db_session_ctx() as session:" in rewritten
    unsafe = write_project(tmp_path / "unsafe", {**PROJECT, "job.py": rewritten})
    assert behaviour(unsafe, "unsafe")[1:3] == [
        {"return": "ok", "exception": None},
        {"return": None, "exception": None},
    ]
