"""Database access: the one place sessions come from.

Use `async with get_session() as session:`; it closes the session, and commits nothing: every
write needs its own `await session.commit()`.
"""

import os
import tempfile
from contextlib import asynccontextmanager
from typing import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

DEFAULT_URL = "sqlite+aiosqlite:///" + os.path.join(tempfile.gettempdir(), "async_project.db")
engine = create_async_engine(os.environ.get("DATABASE_URL", DEFAULT_URL))

# Raw session maker (requires manual cleanup)
async_session = async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def get_session() -> AsyncIterator[AsyncSession]:
    """Context manager for database sessions (auto-close)."""
    async with async_session() as session:
        yield session
