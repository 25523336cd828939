"""Applies balance webhooks; rejected ones leave a security notification."""

import logging
from typing import Dict, Optional

from sqlalchemy import select

from core.db import get_db_session_ctx
from init import Session
from models import Notification, User
from sync_system.sync_engine import UniversalSyncEngine

logger = logging.getLogger(__name__)


def _apply_balance_change(payload: Dict[str, object]) -> None:
    email = payload.get("email")
    delta = payload.get("delta")
    if not isinstance(email, str) or not isinstance(delta, int):
        raise ValueError("malformed payload")
    with get_db_session_ctx() as session:
        user = session.scalars(select(User).where(User.email == email)).one_or_none()
        if user is None:
            raise ValueError(f"unknown user {email}")
        user.balance += delta


def handle_webhook(payload: Dict[str, object]) -> str:
    """Apply a webhook, or record why it was rejected."""
    try:
        _apply_balance_change(payload)
    except ValueError as e:
        from init import Session

        with Session() as session:
            session.add(Notification(user_id=None, text=f"webhook rejected: {e}"))
            session.commit()
        logger.warning(f"Webhook rejected: {e}")
        return "rejected"
    return "ok"


def preview_balance_change(email: str, delta: int) -> Optional[int]:
    """What a webhook would set the balance to; the change is flushed but never committed."""
    with Session() as session:
        user = session.scalars(select(User).where(User.email == email)).one_or_none()
        if user is None:
            return None
        user.balance += delta
        session.flush()
        return user.balance


def export_table(table_name: str) -> Dict:
    """Export one table for the spreadsheet."""
    with Session() as session:
        engine = UniversalSyncEngine(table_name)
        result = engine.export_to_json(session)
    return result
