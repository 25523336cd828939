"""Background task: record monitored signals (seed 002, P1)."""

import asyncio
import logging

from sqlalchemy import select

from src.db import async_session
from src.models import Signal

logger = logging.getLogger(__name__)


async def record_signals(signals: list[dict]) -> int:
    """All or nothing: one bad signal rolls the whole batch back and re-raises."""
    async with async_session() as db:
        try:
            for signal in signals:
                db.add(Signal(name=signal["name"], value=signal["value"]))
                await db.flush()
            await db.commit()
        except Exception:
            await db.rollback()
            raise
    return len(signals)


async def record_each(signals: list[dict]) -> int:
    """One commit per signal: a bad one stops the loop, the ones before it stay."""
    stored = 0
    async with async_session() as db:
        for signal in signals:
            if signal["value"] is None:
                raise ValueError(f"signal {signal['name']} has no value")
            db.add(Signal(name=signal["name"], value=signal["value"]))
            await db.commit()
            stored += 1
    return stored


async def snapshot(names: list[str]) -> dict:
    """Reads every signal concurrently through one session: sessionfix reports it (SF013)."""

    async def value_of(db, name):
        return await db.scalar(select(Signal.value).where(Signal.name == name))

    async with async_session() as db:
        values = await asyncio.gather(*[value_of(db, name) for name in names])
    return dict(zip(names, values))
