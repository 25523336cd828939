"""`sessionfix fix --branch-per-file` as a user runs it, in a real repository."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from typer.testing import CliRunner

from sessionfix.cli import app
from tests.conftest import write_project

JOB = "from init import Session\n\n\ndef notify(text):\n    with Session() as session:\n        session.add(text)\n        session.commit()\n"


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def make_repo(tmp_path: Path) -> Path:
    write_project(tmp_path, **{"jobs/a.py": JOB, "jobs/b.py": JOB, "jobs/__init__.py": ""})
    git(tmp_path, "init", "-q", "-b", "main")
    git(tmp_path, "config", "user.name", "Test")
    git(tmp_path, "config", "user.email", "test@example.com")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "start")
    return tmp_path


def test_branch_per_file_leaves_the_worktree_and_makes_one_commit_each(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    index_before = (repo / ".git" / "index").read_bytes()
    result = CliRunner().invoke(app, ["fix", str(repo), "--branch-per-file", "--format", "json"])
    assert result.exit_code == 0, result.stderr
    manifest = json.loads(result.stdout)["branches"]
    assert [b["branch"] for b in manifest] == ["sessionfix/jobs-a-py", "sessionfix/jobs-b-py"]
    assert all(b["status"] == "created" and b["changes"] == 3 for b in manifest)
    assert (repo / "jobs" / "a.py").read_text() == JOB
    assert (repo / ".git" / "index").read_bytes() == index_before
    assert git(repo, "status", "--porcelain") == ""
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    for entry in manifest:
        changed = git(repo, "diff", "--name-only", "main", entry["branch"]).split()
        assert changed == entry["files"]
        assert git(repo, "rev-list", "--count", f"main..{entry['branch']}").strip() == "1"
    fixed = git(repo, "show", "sessionfix/jobs-a-py:jobs/a.py")
    assert "get_db_session_ctx() as session" in fixed
    subject = git(repo, "log", "-1", "--format=%s", "sessionfix/jobs-a-py").strip()
    assert subject.startswith("sessionfix: jobs/a.py") and "SF002" in subject

    again = CliRunner().invoke(app, ["fix", str(repo), "--branch-per-file", "--group-by", "file"])
    assert again.exit_code == 0 and "skipped-same" in again.stdout


def test_dirty_file_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path)
    (repo / "jobs" / "a.py").write_text(JOB + "# local edit\n")
    result = CliRunner().invoke(app, ["fix", str(repo), "--branch-per-file"])
    assert result.exit_code == 2
    assert "jobs/a.py" in result.stderr and result.stderr.count("\n") == 1
    assert git(repo, "branch", "--list", "sessionfix/*") == ""
