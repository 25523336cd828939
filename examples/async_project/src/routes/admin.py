"""Admin API: handlers receive their session from the caller (FastAPI's Depends)."""

from sqlalchemy.ext.asyncio import AsyncSession

from src.deps import get_db
from src.models import Notification, User


async def add_user(db: AsyncSession, email: str) -> int:
    user = User(email=email)
    db.add(user)
    await db.commit()
    return user.id


async def rename_notification(db: AsyncSession, notification_id: int, text: str) -> bool:
    notification = await db.get(Notification, notification_id)
    if notification is None:
        return False
    notification.text = text
    await db.commit()
    return True


async def call_with_dependency(handler_name: str, *args: object) -> object:
    """What FastAPI does with `Depends(get_db)`: run the generator around the handler."""
    handler = {"add_user": add_user, "rename_notification": rename_notification}[handler_name]
    dependency = get_db()
    db = await anext(dependency)
    try:
        return await handler(db, *args)
    finally:
        await dependency.aclose()
