"""Run example-project jobs against fresh SQLite databases and print what happened as JSON.

Usage: python run_scenarios.py PROJECT_DIR SHIM_DIR WORK_DIR < scenarios.json

Runs in its own process so that two copies of the same project (before and after a fix) never
share sys.modules. A scenario names a callable as "module:function" or "module:Class.method"
(with "construct" holding the arguments for Class). Each scenario gets its own database file;
the result holds every table's rows in primary-key order, the exception the job raised (type
and message, or None) and its return value.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool


def _jsonable(value: Any) -> Any:
    try:
        return json.loads(json.dumps(value))
    except TypeError:
        return {"unserialisable": repr(value)}


def _fresh_database(url: str) -> None:
    """Point core.db (and the init shim, if loaded) at a new database with empty tables."""
    os.environ["DATABASE_URL"] = url
    db = importlib.import_module("core.db")
    if db._engine is not None:
        db._engine.dispose()
    db._engine = None
    db._SessionFactory = None
    engine = db.get_engine()
    importlib.import_module("models").Base.metadata.create_all(engine)
    shim = sys.modules.get("init")
    if shim is not None:
        shim.Session.configure(bind=engine)


def _dump(url: str) -> dict[str, list[list[Any]]]:
    """Committed rows of every table, read through a connection of our own."""
    metadata = importlib.import_module("models").Base.metadata
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return {
                table.name: [
                    list(row)
                    for row in connection.execute(select(table).order_by(*table.primary_key.columns))
                ]
                for table in metadata.sorted_tables
            }
    finally:
        engine.dispose()


def _seed(url: str, setup: dict[str, list[dict[str, Any]]]) -> None:
    metadata = importlib.import_module("models").Base.metadata
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            for table_name in (table.name for table in metadata.sorted_tables):
                if setup.get(table_name):
                    connection.execute(metadata.tables[table_name].insert(), setup[table_name])
    finally:
        engine.dispose()


def run_scenario(scenario: dict[str, Any], work_dir: Path) -> dict[str, Any]:
    url = f"sqlite:///{work_dir / (scenario['id'] + '.db')}"
    _fresh_database(url)
    _seed(url, scenario.get("setup", {}))
    module_name, qualname = scenario["call"].split(":")
    function = importlib.import_module(module_name)
    for attribute in qualname.split("."):
        if "construct" in scenario and isinstance(function, type):
            function = function(*scenario["construct"])
        function = getattr(function, attribute)
    returned: Any = None
    exception: dict[str, str] | None = None
    try:
        returned = function(*scenario.get("args", []), **scenario.get("kwargs", {}))
    except Exception as exc:  # the job's exception is part of its observable behaviour
        kind = type(exc)
        exception = {"type": f"{kind.__module__}.{kind.__qualname__}", "message": str(exc)}
    return {"rows": _dump(url), "exception": exception, "return": _jsonable(returned)}


def main(argv: list[str]) -> int:
    project_dir, shim_dir, work_dir = (Path(arg).resolve() for arg in argv[1:4])
    sys.path.insert(0, str(project_dir))
    sys.path.append(str(shim_dir))
    logging.getLogger().addHandler(logging.NullHandler())  # keep the jobs' logging off stderr
    scenarios = json.load(sys.stdin)
    results = {scenario["id"]: run_scenario(scenario, work_dir) for scenario in scenarios}
    json.dump(results, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
