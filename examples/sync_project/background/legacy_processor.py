"""Migrates users from the legacy system and notifies them."""

import logging
from typing import Dict, List, Optional

from sqlalchemy.exc import IntegrityError

from init import Session
from models import Notification, User

logger = logging.getLogger(__name__)


def notify_user(user_id: int, text: str) -> None:
    """Store one notification for a user."""
    with Session() as session:
        notification = Notification(user_id=user_id, text=text)
        session.add(notification)
        session.commit()


def migrate_legacy_users(rows: List[Dict[str, Optional[str]]]) -> int:
    """Create one user per legacy row; a bad row is logged and skipped, the others are kept."""
    migrated = 0
    with Session() as session:
        for row in rows:
            try:
                session.add(User(email=row["email"], name=row["name"], balance=0))
                session.commit()
                migrated += 1
            except IntegrityError as e:
                session.rollback()
                logger.warning(f"Skipping legacy user {row['email']}: {e.orig}")
    return migrated
