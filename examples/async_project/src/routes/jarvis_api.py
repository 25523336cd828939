"""Jarvis API: the endpoint behind the production 500s (seed 002, P0)."""

import logging

from sqlalchemy import func, select, update

from src.db import async_session
from src.models import Notification

logger = logging.getLogger(__name__)


async def whats_up(user_id: int) -> dict:
    """Unread notifications for the dashboard."""
    async with async_session() as db:
        result = await db.execute(
            select(Notification.id, Notification.text)
            .where(Notification.user_id == user_id, Notification.read.is_(False))
            .order_by(Notification.id)
        )
        notifications = [{"id": row.id, "text": row.text} for row in result]
    return {"notifications": notifications, "total_unread": len(notifications)}


async def mark_notification_read(notification_id: int) -> bool:
    async with async_session() as db:
        notification = await db.get(Notification, notification_id)
        if notification is None:
            return False
        notification.read = True
        await db.commit()
        return True


async def mark_all_notifications_read(user_id: int, fail_before_commit: bool = False) -> int:
    """Marks everything read; an error before the commit must leave every row unread."""
    async with async_session() as db:
        try:
            result = await db.execute(
                update(Notification).where(Notification.user_id == user_id).values(read=True)
            )
            if fail_before_commit:
                raise RuntimeError("notification service unavailable")
            await db.commit()
            return result.rowcount
        except Exception as e:
            await db.rollback()
            logger.error(f"mark_all_notifications_read failed: {e}")
            raise


async def count_unread(user_id: int) -> int:
    async with async_session() as db:
        total = await db.scalar(
            select(func.count(Notification.id)).where(
                Notification.user_id == user_id, Notification.read.is_(False)
            )
        )
    return total or 0
