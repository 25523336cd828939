"""Dashboard API: the "no context manager" pattern from the audit (seed 002)."""

from sqlalchemy import func, select

from src.db import get_session
from src.models import Notification


async def unread_total(user_id: int) -> int:
    session = get_session()
    result = await session.execute(
        select(func.count(Notification.id)).where(
            Notification.user_id == user_id, Notification.read.is_(False)
        )
    )
    return result.scalar_one()


async def pin_notification(notification_id: int) -> bool:
    session = get_session()
    notification = await session.get(Notification, notification_id)
    if notification is None:
        return False
    notification.pinned = True
    await session.commit()
    return True
