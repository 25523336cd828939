"""`sessionfix check`: one `path:line:col: SFxxx message` line per finding and pending fix."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sessionfix.cli import app
from tests.conftest import write_project

LINE = re.compile(r"^(?P<path>[^:\s]+):(?P<line>\d+):(?P<col>\d+): (?P<rule>SF\d{3}) (?P<message>\S.*)$")

JOBS = """\
from init import Session


def notify(text):
    with Session() as session:
        session.add(text)
        session.commit()
"""

PREVIEW = """\
from init import Session


def preview(item):
    with Session() as session:
        session.add(item)
        session.flush()
        return item.id
"""

CLEAN = """\
from core.db import get_db_session_ctx


def notify(text):
    with get_db_session_ctx() as session:
        session.add(text)
"""


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def test_one_line_per_finding_and_pending_fix_exit_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path, **{"jobs.py": JOBS, "preview.py": PREVIEW, "clean.py": CLEAN})
    monkeypatch.chdir(tmp_path)
    result = invoke("check")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    # exactly the records diff reports: each change (safe fix pending) and each finding
    expected = json.loads(invoke("diff", str(tmp_path), "--format", "json").stdout)
    records = sorted((f["path"], c["line"], c["column"], c["rule"])
                     for f in expected["files"] for c in f["changes"] + f["findings"])
    assert sorted((m["path"], int(m["line"]), int(m["col"]), m["rule"]) for m in parsed if m) == records
    assert "jobs.py:5:10: SF002 [safe] " in result.stdout
    assert "preview.py:5:10: SF002 unsafe fix available with --unsafe" in result.stdout
    assert "clean.py" not in result.stdout
    assert f"{len(lines)} finding(s) and pending fix(es), 0 error(s)" in result.stderr


def test_clean_exits_0_and_prints_nothing(tmp_path: Path) -> None:
    write_project(tmp_path, **{"clean.py": CLEAN})
    result = invoke("check", str(tmp_path / "clean.py"))
    assert result.exit_code == 0
    assert result.stdout == ""


def test_errors_exit_2(tmp_path: Path) -> None:
    write_project(tmp_path, **{"jobs.py": JOBS, "broken.py": "def broken(:\n"})
    result = invoke("check", str(tmp_path))
    assert result.exit_code == 2  # an error outranks findings
    assert "broken.py:1" in result.stderr and "jobs.py:5:10: SF002" in result.stdout
    missing = invoke("check", str(tmp_path / "nope.py"))
    assert missing.exit_code == 2 and "no such file or directory" in missing.stderr
    config = invoke("check", str(tmp_path / "jobs.py"), "--sync-context", "not-dotted")
    assert config.exit_code == 2 and config.stderr.count("\n") == 1


def test_accepts_the_config_options_of_diff(tmp_path: Path) -> None:
    write_project(tmp_path, {"pyproject.toml": "[tool.sessionfix]\n", "core/__init__.py": "",
                             "core/db.py": "from contextlib import contextmanager\n\n\n@contextmanager\n"
                                           "def ctx():\n    yield None\n"},
                  **{"jobs.py": JOBS})
    plain = invoke("check", str(tmp_path / "jobs.py"))
    configured = invoke("check", str(tmp_path / "jobs.py"), "--raw-factory", "init.Session",
                        "--sync-context", "core.db.ctx", "--select", "SF002")
    assert "SF002" not in plain.stdout  # nothing configured: no raw factory to replace
    assert configured.exit_code == 1
    assert {LINE.match(line)["rule"] for line in configured.stdout.splitlines()} == {"SF002"}  # type: ignore[index]


def test_force_exclude_applies_excludes_to_named_files(tmp_path: Path) -> None:
    write_project(tmp_path, **{"legacy/jobs.py": JOBS})
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'exclude = ["legacy/"]\n')
    named = str(tmp_path / "legacy" / "jobs.py")
    assert invoke("check", named).exit_code == 1  # a named file is checked...
    assert invoke("check", named, "--force-exclude").exit_code == 0  # ...unless excludes are forced


def test_files_of_two_projects_use_their_own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_project(tmp_path / "configured", **{"jobs.py": JOBS})
    write_project(tmp_path / "bare", {"pyproject.toml": "[tool.sessionfix]\n"}, **{"jobs.py": JOBS})
    monkeypatch.chdir(tmp_path)
    result = invoke("check", "bare/jobs.py", "configured/jobs.py")
    assert result.exit_code == 1
    found = {(m["path"], m["rule"]) for m in map(LINE.match, result.stdout.splitlines()) if m}
    # `configured` has init.Session as a raw factory: SF002 rewrites it; `bare` only reports the import
    assert ("configured/jobs.py", "SF002") in found and ("bare/jobs.py", "SF000") in found
    assert ("bare/jobs.py", "SF002") not in found
