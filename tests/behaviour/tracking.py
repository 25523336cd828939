"""Counting the sessions code opens and whether it closes them, for the ownership tests.

Every session the code under test makes comes from a sessionmaker whose class is a `Session`
subclass of the tracker's: it registers each instance, records `close()`, and listens to
SQLAlchemy's `after_begin` session event to know which sessions took a connection. The engine's
pool gives the other half: connections still checked out after the call. The tracker holds a
strong reference to every session, so a leaked one cannot be rescued by the garbage collector
before it is counted.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

from sqlalchemy import create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import NullPool
from sqlalchemy.util import greenlet_spawn


@dataclass
class Tracker:
    sessions: list[Session] = field(default_factory=list)
    closed: set[int] = field(default_factory=set)
    began: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        tracker = self

        class TrackedSession(Session):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                tracker.sessions.append(self)

            def close(self) -> None:
                tracker.closed.add(id(self))
                super().close()

        @event.listens_for(TrackedSession, "after_begin")
        def _began(session: Session, transaction: Any, connection: Any) -> None:
            tracker.began.add(id(session))

        self.session_class = TrackedSession

    def unclosed(self, *, besides: tuple[Session, ...] = ()) -> list[Session]:
        """Sessions made during the run that were never closed (the caller's own excluded)."""
        skip = {id(s) for s in besides}
        return [s for s in self.sessions if id(s) not in self.closed and id(s) not in skip]

    def leaked_connections(self, *, besides: tuple[Session, ...] = ()) -> list[Session]:
        """Unclosed sessions that took a connection and still hold a transaction."""
        return [s for s in self.unclosed(besides=besides) if id(s) in self.began and s.in_transaction()]

    def was_closed(self, session: Session) -> bool:
        return id(session) in self.closed

    def clean_up(self) -> None:
        for session in self.sessions:
            session.close()

    async def aclean_up(self) -> None:
        """For sessions behind AsyncSessions: close them where their connections' loop runs."""
        for session in self.sessions:
            await greenlet_spawn(session.close)


def committed_rows(url: str, base: type[DeclarativeBase]) -> dict[str, list[list[Any]]]:
    """Committed rows of every table, read through a connection of our own."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return {
                table.name: [list(row) for row in connection.execute(select(table).order_by(*table.primary_key.columns))]
                for table in base.metadata.sorted_tables
            }
    finally:
        engine.dispose()


def fresh_engine(url: str, base: type[DeclarativeBase]) -> Engine:
    engine = create_engine(url)
    base.metadata.create_all(engine)
    return engine


def outcome(call: Any) -> dict[str, Any]:
    """What a call did that a caller can see: its return value or its exception."""
    try:
        return {"return": call(), "exception": None}
    except Exception as exc:  # the exception is part of the observable behaviour
        return {"return": None, "exception": (type(exc).__qualname__, str(exc))}


def load_module(path: Path, name: str) -> ModuleType:
    """Import one file under a name of our own, so a "before" and "after" copy can coexist."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def project_on_path(root: Path, **shims: ModuleType) -> Iterator[None]:
    """`root` first on sys.path (and `shims` as modules) for the block; every module imported
    meanwhile is forgotten afterwards, so projects with the same module names never mix."""
    before = set(sys.modules)
    saved_path = list(sys.path)
    sys.path.insert(0, str(root))
    sys.modules.update(shims)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for name in set(sys.modules) - before:
            del sys.modules[name]
