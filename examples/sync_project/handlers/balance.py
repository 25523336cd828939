"""Balance handlers; they use the injected session and never create one."""

from typing import List

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Notification, User


def show_balance(session: Session, user_id: int) -> int:
    return session.get(User, user_id).balance


def recent_notifications(session: Session, user_id: int, limit: int = 5) -> List[str]:
    query = (
        select(Notification.text)
        .where(Notification.user_id == user_id)
        .order_by(Notification.id.desc())
        .limit(limit)
    )
    return list(session.scalars(query))
