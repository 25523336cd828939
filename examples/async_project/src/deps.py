"""FastAPI-style dependencies: `Depends(get_db)` opens a session per request and closes it.

A generator that yields its session is a session provider in its own right, like get_session;
sessionfix leaves it alone.
"""

from typing import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession

from src.db import async_session


async def get_db() -> AsyncIterator[AsyncSession]:
    async with async_session() as session:
        yield session
