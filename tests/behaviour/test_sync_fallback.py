"""The seed's fallback export (examples/sync_project/sync_system/sync_engine.py) before and after
`sessionfix fix`, against real SQLite: the session it makes is closed, the caller's is untouched.

`UniversalSyncEngine.export_to_json(session=None)` falls back to `from init import Session;
session = Session()` and never closes it (seed 000, "better fix"). It returns dicts built from the
rows it reads, which sessionfix cannot tell from ORM objects, so SF020's fix is unsafe: the plain
`fix` only reports it, and `fix --unsafe` runs the whole pipeline on the file in-process (SF003
swaps the factory, SF020 adds the ownership flag and `try/finally`, SF001 drops the dead import).
Both versions then run with every session counted (see tracking.py): here the values are plain, so
the unsafe fix changes nothing but the close.
"""

from __future__ import annotations

import ast
import dataclasses
import shutil
import types
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import sessionmaker

from sessionfix.config import load_config
from sessionfix.index import ProjectIndex
from sessionfix.model import Applicability
from sessionfix.runner import Job, process_file
from tests.behaviour.tracking import Tracker, committed_rows, fresh_engine, load_module, outcome, project_on_path

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "sync_project"
ENGINE_FILE = "sync_system/sync_engine.py"
ENTRIES = [{"id": 1, "key": "currency", "value": "EUR"}, {"id": 2, "key": "bonus_rate", "value": "0.05"}]
EXPORTED = {"table": "config_entries", "rows": ENTRIES}


@pytest.fixture(scope="module")
def fixed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("sync_fallback") / "project"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    target = root / ENGINE_FILE
    settings = load_config(root).settings
    safe = process_file(Job(target, ENGINE_FILE), ProjectIndex(root), settings)
    result = process_file(Job(target, ENGINE_FILE), ProjectIndex(root), dataclasses.replace(settings, unsafe=True))
    assert result.error is None and result.new_source is not None, result
    (root / "sync_system" / "sync_engine_fixed.py").write_bytes(result.new_source)
    return {"root": root, "safe": safe, "result": result, "source": result.new_source.decode()}


def _export(fixed: dict[str, Any], version: str, path: Path, *, table: str = "config_entries",
            with_caller: bool = False) -> dict[str, Any]:
    """Run export_to_json once on a fresh database; what it returned, raised, and left open."""
    root: Path = fixed["root"]
    init = types.ModuleType("init")  # what init.py was: a plain sessionmaker
    with project_on_path(root, init=init):
        db = __import__("core.db").db
        models = __import__("models")
        file = "sync_engine.py" if version == "before" else "sync_engine_fixed.py"
        module = load_module(root / "sync_system" / file, f"sync_engine_{version}")
        url = f"sqlite:///{path}"
        engine = fresh_engine(url, models.Base)
        with engine.begin() as connection:
            connection.execute(models.ConfigEntry.__table__.insert(), ENTRIES)
        tracker = Tracker()
        factory = sessionmaker(bind=engine, class_=tracker.session_class)
        db._engine, db._SessionFactory, init.Session = engine, factory, factory  # type: ignore[attr-defined]
        caller = factory() if with_caller else None
        if caller is not None:  # the caller has work of its own in flight
            caller.add(models.ConfigEntry(key="pending", value="not committed"))
            caller.flush()
        exporter = module.UniversalSyncEngine(table)
        try:
            result = outcome(lambda: exporter.export_to_json(caller) if caller is not None else exporter.export_to_json())
            besides = (caller,) if caller is not None else ()
            result.update(
                rows=committed_rows(url, models.Base),
                made=len(tracker.sessions) - len(besides),
                unclosed=len(tracker.unclosed(besides=besides)),
                leaked=len(tracker.leaked_connections(besides=besides)),
                checked_out=engine.pool.checkedout(),
            )
            if caller is not None:
                result["caller"] = {"closed": tracker.was_closed(caller), "in_transaction": caller.in_transaction()}
            return result
        finally:
            tracker.clean_up()
            engine.dispose()


def _runs(fixed: dict[str, Any], tmp_path: Path, **options: Any) -> dict[str, dict[str, Any]]:
    return {version: _export(fixed, version, tmp_path / f"{version}.db", **options) for version in ("before", "after")}


def test_safe_fix_only_reports_the_returned_rows(fixed: dict[str, Any]) -> None:
    """The returned dicts are built from rows read through the session: no close without --unsafe."""
    safe = fixed["safe"]
    assert not [c for c in safe.changes if c.rule == "SF020"], safe.changes
    finding = next(f for f in safe.findings if f.rule == "SF020")
    assert finding.fix is Applicability.UNSAFE
    assert "which holds `rows`, loaded from `session` at line" in finding.message
    assert safe.new_source is not None and b"session.close()" not in safe.new_source  # SF003/SF001 still apply


def test_sf020_rewrote_the_fallback(fixed: dict[str, Any]) -> None:
    changes = {change.rule: change for change in fixed["result"].changes}
    assert {"SF001", "SF003", "SF020"} <= set(changes), fixed["result"].changes
    assert changes["SF020"].applicability is Applicability.UNSAFE
    assert "owns_session" in changes["SF020"].reason
    function = next(n for n in ast.walk(ast.parse(fixed["source"]))
                    if isinstance(n, ast.FunctionDef) and n.name == "export_to_json")
    kinds = [type(statement).__name__ for statement in function.body]
    assert kinds == ["Expr", "Assign", "If", "Try"], kinds  # docstring, flag, fallback, try/finally
    final = function.body[3].finalbody  # type: ignore[attr-defined]
    assert ast.unparse(final[0]) == "if owns_session:\n    session.close()"


def test_own_session_is_closed(fixed: dict[str, Any], tmp_path: Path) -> None:
    runs = _runs(fixed, tmp_path)
    before, after = runs["before"], runs["after"]
    assert before["return"] == EXPORTED and before["exception"] is None
    assert before["unclosed"] == 1 and before["leaked"] == 1 and before["checked_out"] == 1  # the seed's leak
    assert (after["return"], after["exception"], after["rows"]) == (before["return"], before["exception"], before["rows"])
    assert after["made"] == 1
    assert (after["unclosed"], after["leaked"], after["checked_out"]) == (0, 0, 0)


def test_own_session_is_closed_when_the_export_fails(fixed: dict[str, Any], tmp_path: Path) -> None:
    runs = _runs(fixed, tmp_path, table="no_such_table")
    before, after = runs["before"], runs["after"]
    assert before["exception"] == ("KeyError", "'no_such_table'")
    assert before["unclosed"] == 1
    assert (after["exception"], after["rows"]) == (before["exception"], before["rows"])
    assert after["unclosed"] == 0 and after["checked_out"] == 0


def test_callers_session_is_untouched(fixed: dict[str, Any], tmp_path: Path) -> None:
    runs = _runs(fixed, tmp_path, with_caller=True)
    before, after = runs["before"], runs["after"]
    pending = {"id": 3, "key": "pending", "value": "not committed"}
    assert before["return"] == {**EXPORTED, "rows": [*ENTRIES, pending]}  # it reads the caller's transaction
    assert (after["return"], after["exception"], after["rows"]) == (before["return"], before["exception"], before["rows"])
    assert after["made"] == 0  # no session of its own
    assert after["caller"] == {"closed": False, "in_transaction": True}
    assert after["rows"]["config_entries"] == [[e["id"], e["key"], e["value"]] for e in ENTRIES]  # not committed
    assert after["checked_out"] == 1  # the caller's connection, still in use by the caller
