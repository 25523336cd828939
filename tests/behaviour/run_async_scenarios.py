"""Run examples/async_project jobs against fresh SQLite databases (aiosqlite) and print JSON.

Usage: python run_async_scenarios.py PROJECT_DIR WORK_DIR < scenarios.json

The async twin of run_scenarios.py, in its own process for the same reason: a copy of the project
before and after a fix must never share sys.modules. Each scenario gets its own database file,
bound to `src.db.async_session`; the result holds every table's committed rows in primary-key
order, the exception the job raised (type and message, or None), its return value, and how many
pooled connections were still checked out when the job returned (a leaked session keeps one).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except TypeError:
        return {"unserialisable": repr(value)}


def _dump(path: Path, metadata: Any) -> dict[str, list[list[Any]]]:
    """Committed rows of every table, read through a sync connection of our own."""
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return {
                table.name: [list(row) for row in connection.execute(select(table).order_by(*table.primary_key.columns))]
                for table in metadata.sorted_tables
            }
    finally:
        engine.dispose()


async def _run(scenario: dict[str, Any], path: Path) -> dict[str, Any]:
    db = importlib.import_module("src.db")
    metadata = importlib.import_module("src.models").Base.metadata
    engine = create_async_engine(f"sqlite+aiosqlite:///{path}")
    db.async_session.configure(bind=engine)
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        for table in metadata.sorted_tables:
            rows = scenario.get("setup", {}).get(table.name)
            if rows:
                await connection.execute(insert(table), rows)
    module_name, function_name = scenario["call"].split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    returned: Any = None
    exception: dict[str, str] | None = None
    try:
        returned = await function(*scenario.get("args", []), **scenario.get("kwargs", {}))
    except Exception as exc:  # the job's exception is part of its observable behaviour
        kind = type(exc)
        exception = {"type": f"{kind.__module__}.{kind.__qualname__}", "message": str(exc)}
    checked_out = engine.sync_engine.pool.checkedout()
    await engine.dispose()
    return {"rows": _dump(path, metadata), "exception": exception, "return": _jsonable(returned),
            "checked_out": checked_out}


def main(argv: list[str]) -> int:
    project_dir, work_dir = (Path(arg).resolve() for arg in argv[1:3])
    sys.path.insert(0, str(project_dir))
    logging.getLogger().addHandler(logging.NullHandler())  # keep the jobs' logging off stderr
    scenarios = json.load(sys.stdin)
    results = {s["id"]: asyncio.run(_run(s, work_dir / f"{s['id']}.db")) for s in scenarios}
    json.dump(results, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
