"""Monthly MLM tasks: bonuses, referrals and closing the month."""

import logging

from sqlalchemy import select

from init import Session
from models import ConfigEntry, Notification, User

logger = logging.getLogger(__name__)


def run_monthly_bonus(amount: int, fail_after_write: bool = False) -> None:
    """Credit every user; all or nothing, and a failure is logged, not raised."""
    with Session() as session:
        try:
            for user in session.scalars(select(User).order_by(User.id)):
                user.balance += amount
            session.add(Notification(user_id=None, text=f"monthly bonus {amount}"))
            session.flush()
            if fail_after_write:
                raise RuntimeError("bonus ledger unavailable")
            session.commit()
        except Exception as e:
            session.rollback()
            logger.error(f"Monthly bonus failed: {e}")


def register_referral(email: str, name: str, bonus: int) -> None:
    """Create a referred user with a starting bonus; a duplicate is logged, not raised."""
    with Session() as session:
        try:
            session.add(User(email=email, name=name, balance=bonus))
            session.commit()
        except Exception as e:
            session.rollback()
            logger.error(f"Referral for {email} failed: {e}")


def close_month(period: str, fail: bool = False) -> None:
    """Mark a period closed; closing it twice is an error for the caller."""
    with Session() as session:
        try:
            session.add(ConfigEntry(key=f"closed:{period}", value="yes"))
            if fail:
                raise ValueError(f"period {period} has open payouts")
            session.commit()
        except Exception:
            session.rollback()
            raise
