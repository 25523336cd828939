"""Imports configuration rows from the spreadsheet, committing each row as it goes."""

import logging
from typing import List, Optional, Tuple

from sqlalchemy import select

from init import Session
from models import ConfigEntry

logger = logging.getLogger(__name__)


def import_config(rows: List[Tuple[str, Optional[str]]]) -> int:
    """Upsert each (key, value) row; rows before a bad one stay imported."""
    imported = 0
    with Session() as session:
        for idx, (key, value) in enumerate(rows, start=2):
            entry = session.scalars(select(ConfigEntry).where(ConfigEntry.key == key)).first()
            if entry is None:
                session.add(ConfigEntry(key=key, value=value))
            else:
                entry.value = value
            logger.info(f"Sheet row {idx}: {key}")
            imported += 1
            session.commit()
    return imported
