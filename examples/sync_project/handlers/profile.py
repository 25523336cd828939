"""Shows a user's profile; the session is injected by the middleware."""

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import User


def show_profile(session: Session, user_id: int) -> str:
    user = session.scalars(select(User).where(User.id == user_id)).one()
    return f"{user.name} <{user.email}>"
