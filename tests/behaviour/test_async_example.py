"""examples/async_project before and after `sessionfix fix`, run against real SQLite (aiosqlite).

Every scenario runs in both copies and must leave the same committed rows, raise the same
exception, return the same value and leave no connection checked out. The exceptions are the
two leaks (`session = get_session()` on a context-manager helper): before the fix they raise
AttributeError at the first use, after it they must work, and the write must persist.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sessionfix.session import prepare
from tests.behaviour.test_sync_example import _sessionfix_env

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "async_project"
RUNNER = Path(__file__).resolve().parent / "run_async_scenarios.py"

USERS = [{"id": 1, "email": "ann@example.com"}, {"id": 2, "email": "ben@example.com"}]
NOTIFICATIONS = [
    {"id": 1, "user_id": 1, "text": "deploy done", "read": False, "pinned": False},
    {"id": 2, "user_id": 1, "text": "disk at 90%", "read": False, "pinned": False},
    {"id": 3, "user_id": 2, "text": "welcome", "read": False, "pinned": False},
]
INBOX = {"users": USERS, "notifications": NOTIFICATIONS}
UNREAD = [[1, 1, "deploy done", 0, 0], [2, 1, "disk at 90%", 0, 0], [3, 2, "welcome", 0, 0]]

#: id, call, inputs, and what the reference ("before") run must show for the scenario to mean something
SCENARIOS: list[dict[str, Any]] = [
    {
        "id": "whats-up", "call": "src.routes.jarvis_api:whats_up", "args": [1], "setup": INBOX,
        "expect": {"exception": None, "return": {"notifications": [{"id": 1, "text": "deploy done"},
                                                                   {"id": 2, "text": "disk at 90%"}],
                                                 "total_unread": 2}},
    },
    {
        "id": "mark-read", "call": "src.routes.jarvis_api:mark_notification_read", "args": [2], "setup": INBOX,
        "expect": {"exception": None, "return": True,
                   "tables": {"notifications": [UNREAD[0], [2, 1, "disk at 90%", 1, 0], UNREAD[2]]}},
    },
    {
        "id": "mark-all-read", "call": "src.routes.jarvis_api:mark_all_notifications_read", "args": [1],
        "setup": INBOX,
        "expect": {"exception": None, "return": 2, "tables": {"notifications": [
            [1, 1, "deploy done", 1, 0], [2, 1, "disk at 90%", 1, 0], UNREAD[2]]}},
    },
    {
        "id": "mark-all-fails-after-partial-write", "call": "src.routes.jarvis_api:mark_all_notifications_read",
        "args": [1], "kwargs": {"fail_before_commit": True}, "setup": INBOX,
        "expect": {"exception": "builtins.RuntimeError", "tables": {"notifications": UNREAD}},
    },
    {
        "id": "count-unread", "call": "src.routes.jarvis_api:count_unread", "args": [1], "setup": INBOX,
        "expect": {"exception": None, "return": 2},
    },
    {
        "id": "record-signals", "call": "src.tasks.monitor_signals:record_signals",
        "args": [[{"name": "cpu", "value": 0.5}, {"name": "mem", "value": 0.7}]],
        "expect": {"exception": None, "return": 2, "tables": {"signals": [[1, "cpu", 0.5], [2, "mem", 0.7]]}},
    },
    {
        "id": "record-signals-bad-row-rolls-back", "call": "src.tasks.monitor_signals:record_signals",
        "args": [[{"name": "cpu", "value": 0.5}, {"name": "mem", "value": None}]],
        "expect": {"exception": "sqlalchemy.exc.IntegrityError", "tables": {"signals": []}},
    },
    {
        "id": "record-each-stops-after-partial-write", "call": "src.tasks.monitor_signals:record_each",
        "args": [[{"name": "cpu", "value": 0.5}, {"name": "mem", "value": None}, {"name": "io", "value": 0.1}]],
        "expect": {"exception": "builtins.ValueError", "tables": {"signals": [[1, "cpu", 0.5]]}},
    },
    {
        "id": "tool-call-logged", "call": "src.mcp.tools:log_tool_call", "args": ["search", {"q": "uptime"}],
        "expect": {"exception": None, "return": 1, "tables": {"tool_calls": [[1, "search", '{"q": "uptime"}']]}},
    },
    {
        "id": "recent-tool-calls", "call": "src.mcp.tools:recent_tool_calls", "args": [2],
        "setup": {"tool_calls": [{"id": i, "tool": f"t{i}", "arguments": None} for i in (1, 2, 3)]},
        "expect": {"exception": None, "return": ["t3", "t2"]},
    },
    {
        "id": "dependency-injected-session", "call": "src.routes.admin:call_with_dependency",
        "args": ["add_user", "cat@example.com"], "setup": {"users": USERS},
        "expect": {"exception": None, "return": 3, "tables": {"users": [[1, "ann@example.com"],
                                                                       [2, "ben@example.com"],
                                                                       [3, "cat@example.com"]]}},
    },
    {
        "id": "leak-read", "call": "src.routes.dashboard_api:unread_total", "args": [1], "setup": INBOX,
        "expect": {"exception": "builtins.AttributeError", "tables": {"notifications": UNREAD}},
    },
    {
        "id": "leak-write", "call": "src.routes.dashboard_api:pin_notification", "args": [3], "setup": INBOX,
        "expect": {"exception": "builtins.AttributeError", "tables": {"notifications": UNREAD}},
    },
]
#: what the fixed leaks do instead: they work, and the write persists
FIXED_LEAKS: dict[str, dict[str, Any]] = {
    "leak-read": {"return": 2, "tables": {"notifications": UNREAD}},
    "leak-write": {"return": True, "tables": {"notifications": [*UNREAD[:2], [3, 2, "welcome", 0, 1]]}},
}
#: files sessionfix must leave byte-identical: the helper's own module (it uses the raw factory),
#: the FastAPI `yield` dependency, handlers given their session by the caller
UNTOUCHED = ["src/db.py", "src/deps.py", "src/routes/admin.py", "src/models.py", "pyproject.toml"]
REWRITTEN = ["src/routes/jarvis_api.py", "src/tasks/monitor_signals.py", "src/mcp/tools.py",
             "src/routes/dashboard_api.py"]


def _copy(destination: Path) -> Path:
    shutil.copytree(EXAMPLE, destination, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    return destination


def _scenarios(project: Path, work: Path) -> subprocess.Popen[str]:
    work.mkdir()
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "DATABASE_URL": f"sqlite+aiosqlite:///{work / 'unused.db'}"}
    process = subprocess.Popen([sys.executable, str(RUNNER), str(project), str(work)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert process.stdin is not None
    process.stdin.write(json.dumps([{k: v for k, v in s.items() if k != "expect"} for s in SCENARIOS]))
    process.stdin.close()
    return process


def _results(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None and process.stderr is not None
    stdout, stderr = process.stdout.read(), process.stderr.read()
    assert process.wait(timeout=120) == 0, stderr
    return json.loads(stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference run and `sessionfix fix` in parallel, then the run of the fixed copy."""
    base = tmp_path_factory.mktemp("async_example")
    before, after = _copy(base / "before"), _copy(base / "after")
    reference = _scenarios(before, base / "before_db")
    fix = subprocess.run([sys.executable, "-m", "sessionfix", "fix", str(after)], capture_output=True, text=True,
                         env=_sessionfix_env(), cwd=base, timeout=300)
    output = f"sessionfix fix exited {fix.returncode}:\n{fix.stdout}\n{fix.stderr}"
    # 1: findings remain for a human (SF013's report); a crash would show a traceback
    assert fix.returncode == 1 and "Traceback" not in fix.stderr, output
    return {"before": _results(reference), "after": _results(_scenarios(after, base / "after_db")),
            "project": after, "output": output}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
def test_reference_behaviour(runs: dict[str, Any], scenario: dict[str, Any]) -> None:
    """The "before" run does what the scenario is about, so the comparison means something."""
    result, expect = runs["before"][scenario["id"]], scenario["expect"]
    assert (result["exception"] or {}).get("type") == expect["exception"], result["exception"]
    if "return" in expect:
        assert result["return"] == expect["return"]
    for table, rows in expect.get("tables", {}).items():
        assert result["rows"][table] == rows, table
    assert result["checked_out"] == 0


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s["id"] not in FIXED_LEAKS],
                         ids=[s["id"] for s in SCENARIOS if s["id"] not in FIXED_LEAKS])
def test_fix_preserves_behaviour(runs: dict[str, Any], scenario: dict[str, Any]) -> None:
    assert runs["after"][scenario["id"]] == runs["before"][scenario["id"]], runs["output"]


@pytest.mark.parametrize("leak", sorted(FIXED_LEAKS))
def test_fixed_leak_now_works_and_persists(runs: dict[str, Any], leak: str) -> None:
    before, after, expect = runs["before"][leak], runs["after"][leak], FIXED_LEAKS[leak]
    assert "_AsyncGeneratorContextManager" in before["exception"]["message"]
    assert after["exception"] is None, runs["output"]
    assert after["return"] == expect["return"]
    for table, rows in expect["tables"].items():
        assert after["rows"][table] == rows
    assert after["checked_out"] == 0


def test_untouched_files_keep_their_bytes(runs: dict[str, Any]) -> None:
    for relative in UNTOUCHED:
        assert (runs["project"] / relative).read_bytes() == (EXAMPLE / relative).read_bytes(), relative


def test_every_route_uses_the_helper(runs: dict[str, Any]) -> None:
    """No raw factory is imported or entered any more, and tools.py imports the real helper."""
    for relative in REWRITTEN:
        tree = ast.parse((runs["project"] / relative).read_text(encoding="utf-8"))
        imports = [(node.module, alias.name, alias.asname) for node in ast.walk(tree)
                   if isinstance(node, ast.ImportFrom) for alias in node.names]
        assert ("src.db", "get_session", None) in imports, relative
        assert not [i for i in imports if i[1] == "async_session"], relative
        entered = [item.context_expr for node in ast.walk(tree) if isinstance(node, ast.AsyncWith)
                   for item in node.items]
        assert entered and all(isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                               and c.func.id == "get_session" for c in entered), relative


def test_second_run_changes_nothing(runs: dict[str, Any]) -> None:
    """Idempotence, on the rewritten files only: the others kept their bytes."""
    run = prepare([runs["project"] / relative for relative in REWRITTEN], {})
    assert len(run.files) == len(REWRITTEN)
    assert [r.display_path for r in run.process() if r.changed or r.error] == []
