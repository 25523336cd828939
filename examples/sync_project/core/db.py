"""Database access: the one place sessions come from.

Background jobs use get_db_session_ctx(); code that needs several transactions uses
get_session() and closes the session itself.
"""

import logging
import os
import tempfile
from contextlib import contextmanager
from typing import Iterator, Optional

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

# Global engine and session factory
_engine: Optional[Engine] = None
_SessionFactory: Optional[sessionmaker] = None


def get_engine() -> Engine:
    """Get or create the database engine (DATABASE_URL, else a SQLite file in the temp dir)."""
    global _engine
    if _engine is None:
        default_url = "sqlite:///" + os.path.join(tempfile.gettempdir(), "sync_project.db")
        database_url = os.environ.get("DATABASE_URL", default_url)
        _engine = create_engine(database_url, echo=False, pool_pre_ping=True)
    return _engine


def get_session_factory() -> sessionmaker:
    """Get or create the session factory."""
    global _SessionFactory
    if _SessionFactory is None:
        _SessionFactory = sessionmaker(bind=get_engine())
    return _SessionFactory


def get_session() -> Session:
    """Get a new database session (caller must close!)."""
    factory = get_session_factory()
    return factory()


@contextmanager
def get_db_session_ctx() -> Iterator[Session]:
    """Context manager for database sessions (auto commit/rollback/close)."""
    session = get_session()
    try:
        yield session
        session.commit()
    except Exception as e:
        session.rollback()
        logger.error(f"Database error: {e}")
        raise
    finally:
        session.close()
