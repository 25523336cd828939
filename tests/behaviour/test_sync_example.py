"""examples/sync_project before and after `sessionfix fix`, run against real SQLite databases.

"Before" is the project as written plus a shim `init.py` (a plain sessionmaker, whose context
manager only closes): the behaviour the teams relied on while init.py existed, and the reference
the rewrite must preserve. "After" is a copy that `sessionfix fix` has rewritten; the shim stays on
the path there too, because a site the fix leaves alone may still import it. Every scenario runs in
both and must leave the same rows, raise the same exception and return the same value.

A third copy gets `fix --unsafe`, which also hands the blocks the safe fix declines to the helper:
there only the never-committed write of preview_balance_change may now persist.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "sync_project"
RUNNER = Path(__file__).resolve().parent / "run_scenarios.py"

#: what init.py was: a plain sessionmaker, so `with Session() as s:` only closes
SHIM = """\
from sqlalchemy.orm import sessionmaker

from core.db import get_engine

Session = sessionmaker(bind=get_engine())
"""

ALICE = {"id": 1, "email": "alice@example.com", "name": "Alice", "balance": 100}
BOB = {"id": 2, "email": "bob@example.com", "name": "Bob", "balance": 5}
TWO_USERS = {"users": [ALICE, BOB]}
USER_ROWS = [[1, "alice@example.com", "Alice", 100], [2, "bob@example.com", "Bob", 5]]

#: id, call, inputs, and the reference ("before") outcome that makes the scenario meaningful:
#: `tables` lists exact rows for the tables named, `exception` the exception type (or None).
SCENARIOS: list[dict[str, Any]] = [
    {
        "id": "notify-success",
        "call": "background.legacy_processor:notify_user",
        "args": [1, "welcome back"],
        "setup": TWO_USERS,
        "expect": {"exception": None, "tables": {"notifications": [[1, 1, "welcome back"]]}},
    },
    {
        "id": "migrate-bad-row-in-the-middle",
        "call": "background.legacy_processor:migrate_legacy_users",
        "args": [
            [
                {"email": "a@legacy.example", "name": "A"},
                {"email": "b@legacy.example", "name": "B"},
                {"email": "a@legacy.example", "name": "A again"},  # unique violation
                {"email": "c@legacy.example", "name": None},  # NOT NULL violation
                {"email": "d@legacy.example", "name": "D"},
            ]
        ],
        "expect": {
            "exception": None,
            "return": 3,
            "tables": {
                "users": [
                    [1, "a@legacy.example", "A", 0],
                    [2, "b@legacy.example", "B", 0],
                    [3, "d@legacy.example", "D", 0],
                ]
            },
        },
    },
    {
        "id": "bonus-success",
        "call": "background.mlm_scheduler:run_monthly_bonus",
        "args": [10],
        "setup": TWO_USERS,
        "expect": {
            "exception": None,
            "tables": {
                "users": [[1, "alice@example.com", "Alice", 110], [2, "bob@example.com", "Bob", 15]],
                "notifications": [[1, None, "monthly bonus 10"]],
            },
        },
    },
    {
        "id": "bonus-fails-after-partial-write",
        "call": "background.mlm_scheduler:run_monthly_bonus",
        "args": [10],
        "kwargs": {"fail_after_write": True},
        "setup": TWO_USERS,
        "expect": {"exception": None, "tables": {"users": USER_ROWS, "notifications": []}},
    },
    {
        "id": "referral-success",
        "call": "background.mlm_scheduler:register_referral",
        "args": ["carol@example.com", "Carol", 20],
        "setup": TWO_USERS,
        "expect": {
            "exception": None,
            "tables": {"users": [*USER_ROWS, [3, "carol@example.com", "Carol", 20]]},
        },
    },
    {
        "id": "referral-commit-fails-in-swallowing-try",
        "call": "background.mlm_scheduler:register_referral",
        "args": ["alice@example.com", "Alice twin", 20],  # unique violation at commit
        "setup": TWO_USERS,
        "expect": {"exception": None, "tables": {"users": USER_ROWS}},
    },
    {
        "id": "close-month-success",
        "call": "background.mlm_scheduler:close_month",
        "args": ["2025-10"],
        "expect": {"exception": None, "tables": {"config_entries": [[1, "closed:2025-10", "yes"]]}},
    },
    {
        "id": "close-month-twice-reraises-commit-error",
        "call": "background.mlm_scheduler:close_month",
        "args": ["2025-10"],
        "setup": {"config_entries": [{"id": 1, "key": "closed:2025-10", "value": "yes"}]},
        "expect": {
            "exception": "sqlalchemy.exc.IntegrityError",
            "tables": {"config_entries": [[1, "closed:2025-10", "yes"]]},
        },
    },
    {
        "id": "close-month-fails-before-commit",
        "call": "background.mlm_scheduler:close_month",
        "args": ["2025-11"],
        "kwargs": {"fail": True},
        "expect": {"exception": "builtins.ValueError", "tables": {"config_entries": []}},
    },
    {
        "id": "config-import-success",
        "call": "sync_system.config_importer:import_config",
        "args": [[["currency", "EUR"], ["bonus_rate", "0.05"], ["currency", "USD"]]],
        "expect": {
            "exception": None,
            "return": 3,
            "tables": {"config_entries": [[1, "currency", "USD"], [2, "bonus_rate", "0.05"]]},
        },
    },
    {
        "id": "config-import-bad-row-in-the-middle",
        "call": "sync_system.config_importer:import_config",
        "args": [[["currency", "EUR"], ["bonus_rate", "0.05"], ["broken", None], ["late", "1"]]],
        "expect": {
            "exception": "sqlalchemy.exc.IntegrityError",
            "tables": {"config_entries": [[1, "currency", "EUR"], [2, "bonus_rate", "0.05"]]},
        },
    },
    {
        "id": "webhook-success",
        "call": "sync_system.webhook_handler:handle_webhook",
        "args": [{"email": "bob@example.com", "delta": 7}],
        "setup": TWO_USERS,
        "expect": {
            "exception": None,
            "return": "ok",
            "tables": {
                "users": [USER_ROWS[0], [2, "bob@example.com", "Bob", 12]],
                "notifications": [],
            },
        },
    },
    {
        "id": "webhook-rejected-records-notification",
        "call": "sync_system.webhook_handler:handle_webhook",
        "args": [{"email": "nobody@example.com", "delta": 7}],
        "setup": TWO_USERS,
        "expect": {
            "exception": None,
            "return": "rejected",
            "tables": {
                "users": USER_ROWS,
                "notifications": [[1, None, "webhook rejected: unknown user nobody@example.com"]],
            },
        },
    },
    {
        "id": "preview-writes-but-never-commits",
        "call": "sync_system.webhook_handler:preview_balance_change",
        "args": ["alice@example.com", -30],
        "setup": TWO_USERS,
        "expect": {"exception": None, "return": 70, "tables": {"users": USER_ROWS}},
    },
    {
        "id": "export-table-read-only-block",
        "call": "sync_system.webhook_handler:export_table",
        "args": ["users"],
        "setup": TWO_USERS,
        "expect": {
            "exception": None,
            "return": {"table": "users", "rows": [ALICE, BOB]},
            "tables": {"users": USER_ROWS},
        },
    },
    {
        "id": "export-fallback-session",
        "call": "sync_system.sync_engine:UniversalSyncEngine.export_to_json",
        "construct": ["config_entries"],  # called on UniversalSyncEngine("config_entries")
        "setup": {"config_entries": [{"id": 1, "key": "currency", "value": "EUR"}]},
        "expect": {
            "exception": None,
            "return": {"table": "config_entries", "rows": [{"id": 1, "key": "currency", "value": "EUR"}]},
        },
    },
]

#: each `with Session() as session:` site, by file and function, and what `fix` must do with it
SAFE_SITES = {
    "background/legacy_processor.py": ["notify_user", "migrate_legacy_users"],
    "background/mlm_scheduler.py": ["run_monthly_bonus", "register_referral", "close_month"],
    "sync_system/config_importer.py": ["import_config"],
    "sync_system/webhook_handler.py": ["handle_webhook"],
}
#: a block that writes and never commits: only `--unsafe` hands it to the helper
UNSAFE_SITES = {"sync_system/webhook_handler.py": ["preview_balance_change"]}
#: a block that only reads and never commits: either answer is defensible, so only `--unsafe` is pinned
READ_ONLY_SITES = {"sync_system/webhook_handler.py": ["export_table"]}
#: what `--unsafe` is allowed to change, per scenario: the rows the helper's commit now keeps
UNSAFE_ROW_CHANGES = {
    "preview-writes-but-never-commits": {"users": [[1, "alice@example.com", "Alice", 70], USER_ROWS[1]]},
}
FIX_FLAGS = {"safe": [], "unsafe": ["--unsafe"]}
#: files with no site to repair: they must keep their bytes
UNTOUCHED_FILES = [
    "handlers/__init__.py",
    "handlers/profile.py",
    "handlers/balance.py",
    "core/__init__.py",
    "core/db.py",
    "models.py",
    "pyproject.toml",
]


def _copy_project(destination: Path) -> Path:
    shutil.copytree(EXAMPLE, destination, ignore=shutil.ignore_patterns("__pycache__", "*.db"))
    return destination


def _run_scenarios(project: Path, shim_dir: Path, work_dir: Path) -> dict[str, Any]:
    work_dir.mkdir()
    scenarios = [{k: v for k, v in scenario.items() if k != "expect"} for scenario in SCENARIOS]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("DATABASE_URL", None)
    completed = subprocess.run(
        [sys.executable, str(RUNNER), str(project), str(shim_dir), str(work_dir)],
        input=json.dumps(scenarios),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def _sessionfix_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if importlib.util.find_spec("sessionfix") is None:  # not installed: use the checkout
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO / "src"), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory for both copies, their databases, and the shim init.py both runs see."""
    base = tmp_path_factory.mktemp("sync_example")
    (base / "shim").mkdir()
    (base / "shim" / "init.py").write_text(SHIM, encoding="utf-8")
    return base


@pytest.fixture(scope="module")
def before(workspace: Path) -> dict[str, Any]:
    """The reference: the project as written, with init.py supplied by the shim."""
    project = _copy_project(workspace / "before")
    return {"project": project, "results": _run_scenarios(project, workspace / "shim", workspace / "before_db")}


@pytest.fixture(scope="module")
def fixed(workspace: Path) -> dict[str, dict[str, Any]]:
    """Two copies rewritten concurrently, by `sessionfix fix` and by `sessionfix fix --unsafe`."""
    projects = {mode: _copy_project(workspace / mode) for mode in FIX_FLAGS}
    processes = {
        mode: subprocess.Popen(
            [sys.executable, "-m", "sessionfix", "fix", *flags, str(projects[mode])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_sessionfix_env(),
            cwd=workspace,
        )
        for mode, flags in FIX_FLAGS.items()
    }
    runs = {}
    for mode, process in processes.items():
        stdout, stderr = process.communicate(timeout=300)
        output = f"sessionfix fix {' '.join(FIX_FLAGS[mode])} exited {process.returncode}:\n{stdout}\n{stderr}"
        # 1 means findings remain for a human; a crash also exits 1, but with a traceback
        assert process.returncode in (0, 1) and "Traceback (most recent call last)" not in stderr, output
        runs[mode] = {
            "project": projects[mode],
            "output": output,
            "results": _run_scenarios(projects[mode], workspace / "shim", workspace / f"{mode}_db"),
        }
    return runs


@pytest.fixture(scope="module")
def after(fixed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return fixed["safe"]


@pytest.fixture(scope="module")
def after_unsafe(fixed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return fixed["unsafe"]


def _init_imports(tree: ast.AST) -> list[ast.ImportFrom]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "init"]


def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _function(tree: ast.Module, name: str) -> ast.FunctionDef:
    return next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == name)


def _uses_helper(project: Path, relative: str, function: str) -> bool:
    """Every `with` in the function enters get_db_session_ctx(), and no init import is left there."""
    node = _function(_parse(project / relative), function)
    contexts = [item.context_expr for w in ast.walk(node) if isinstance(w, ast.With) for item in w.items]
    return bool(contexts) and not _init_imports(node) and all(
        isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id == "get_db_session_ctx"
        for c in contexts
    )


def _sites(table: dict[str, list[str]]) -> list[tuple[str, str]]:
    return [(relative, function) for relative, functions in table.items() for function in functions]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario["id"] for scenario in SCENARIOS])
def test_reference_behaviour(before: dict[str, Any], scenario: dict[str, Any]) -> None:
    """The "before" run does what the scenario is about, so the comparison below means something."""
    result = before["results"][scenario["id"]]
    expect = scenario["expect"]
    assert (result["exception"] or {}).get("type") == expect["exception"], result["exception"]
    if "return" in expect:
        assert result["return"] == expect["return"]
    for table, rows in expect.get("tables", {}).items():
        assert result["rows"][table] == rows, table


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario["id"] for scenario in SCENARIOS])
def test_fix_preserves_behaviour(before: dict[str, Any], after: dict[str, Any], scenario: dict[str, Any]) -> None:
    reference = before["results"][scenario["id"]]
    result = after["results"][scenario["id"]]
    assert result["exception"] == reference["exception"]
    assert result["return"] == reference["return"]
    assert result["rows"] == reference["rows"]


@pytest.mark.parametrize(("relative", "function"), _sites(SAFE_SITES))
def test_fix_rewrote_safe_site(after: dict[str, Any], relative: str, function: str) -> None:
    """The fix really ran here, so the comparison above is not between two copies of the same code.

    migrate_legacy_users and import_config are per-row commit loops: every path out of the block
    ends in commit() or rollback() and nothing loaded escapes it, so the helper's commit on exit
    has nothing to do. The issue lists them as "commit inside a loop: keep", i.e. a safe rewrite.
    """
    expected = f"{relative}: {function} should enter get_db_session_ctx() after a safe fix"
    assert _uses_helper(after["project"], relative, function), f"{expected}\n{after['output']}"


def test_fix_removed_dead_init_imports(after: dict[str, Any]) -> None:
    project: Path = after["project"]
    for relative in ("background/mlm_scheduler.py", "sync_system/sync_engine.py"):
        assert _init_imports(_parse(project / relative)) == [], relative
    engine = _function(_parse(project / "sync_system/sync_engine.py"), "export_to_json")
    calls = [node.func for node in ast.walk(engine) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    assert "get_session" in [func.id for func in calls]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[scenario["id"] for scenario in SCENARIOS])
def test_unsafe_fix_changes_only_what_it_calls_unsafe(
    before: dict[str, Any], after_unsafe: dict[str, Any], scenario: dict[str, Any]
) -> None:
    """`--unsafe` hands every block to the helper; only never-committed writes may now persist."""
    reference = before["results"][scenario["id"]]
    result = after_unsafe["results"][scenario["id"]]
    assert result["exception"] == reference["exception"]
    assert result["return"] == reference["return"]
    assert result["rows"] == {**reference["rows"], **UNSAFE_ROW_CHANGES.get(scenario["id"], {})}


@pytest.mark.parametrize(
    ("relative", "function"), _sites(SAFE_SITES) + _sites(UNSAFE_SITES) + _sites(READ_ONLY_SITES)
)
def test_unsafe_fix_rewrote_every_site(after_unsafe: dict[str, Any], relative: str, function: str) -> None:
    assert _uses_helper(after_unsafe["project"], relative, function), after_unsafe["output"]
    assert _init_imports(_parse(after_unsafe["project"] / relative)) == []


@pytest.mark.parametrize(("relative", "function"), _sites(UNSAFE_SITES))
def test_unsafe_site_left_alone_by_safe_fix(
    before: dict[str, Any], after: dict[str, Any], relative: str, function: str
) -> None:
    """A block that writes but never commits keeps its raw session, and so its import."""
    sources = {
        "before": (before["project"] / relative).read_text(encoding="utf-8"),
        "after": (after["project"] / relative).read_text(encoding="utf-8"),
    }
    segments = {
        name: ast.get_source_segment(source, _function(ast.parse(source), function))
        for name, source in sources.items()
    }
    assert segments["after"] == segments["before"]
    module_level = [node for node in ast.parse(sources["after"]).body if isinstance(node, ast.ImportFrom)]
    assert any(node.module == "init" for node in module_level), sources["after"]


@pytest.mark.parametrize("relative", UNTOUCHED_FILES)
def test_files_without_sites_keep_their_bytes(after: dict[str, Any], relative: str) -> None:
    assert (after["project"] / relative).read_bytes() == (EXAMPLE / relative).read_bytes()
