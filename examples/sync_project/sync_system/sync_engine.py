"""Exports tables for the spreadsheet sync."""

from typing import Dict

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Base


class UniversalSyncEngine:
    """Reads one table in a stable order."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    def export_to_json(self, session: Session = None) -> Dict:
        """Export table data to JSON."""
        if session is None:
            from init import Session

            session = Session()
        table = Base.metadata.tables[self.table_name]
        rows = session.execute(select(table).order_by(*table.primary_key.columns)).mappings()
        return {"table": self.table_name, "rows": [dict(row) for row in rows]}
