"""The `sessionfix-check` pre-commit hook, end to end with `pre-commit try-repo`.

try-repo clones the hook repository at a commit and pip-installs it into a fresh environment
(from PyPI: libcst, typer, ...), so this is the slowest test; it makes exactly one install.
try-repo builds that environment in a store of its own that it deletes afterwards, so a second
run would install again: one run checks a failing file and a clean one side by side.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import write_project

REPO = Path(__file__).resolve().parents[2]
#: what `pip install .` needs, copied from the working tree so the hook runs the code under test
SOURCES = ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml", "src", "codemods")

JOBS = """\
from init import Session


def notify(text):
    with Session() as session:
        session.add(text)
        session.commit()
"""

CLEAN = """\
from core.db import get_db_session_ctx


def notify(text):
    with get_db_session_ctx() as session:
        session.add(text)
"""


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def committed_repo(path: Path) -> Path:
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "-c", "user.name=sessionfix tests", "-c", "user.email=tests@example.invalid",
        "commit", "-q", "-m", "fixture")
    return path


def hook_repo(path: Path) -> Path:
    """This repository's working tree as a one-commit repository (try-repo wants a commit)."""
    path.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in SOURCES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, path / name, ignore=ignore)
        else:
            shutil.copy2(source, path / name)
    return committed_repo(path)


def test_manifest_declares_the_check_hook() -> None:
    (hook,) = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text(encoding="utf-8"))
    assert hook["id"] == "sessionfix-check"
    assert hook["entry"].split()[:2] == ["sessionfix", "check"]
    assert hook["language"] == "python" and hook["types"] == ["python"]
    assert hook["pass_filenames"] is True and hook["require_serial"] is True


def test_try_repo_fails_on_findings_and_names_only_the_bad_file(tmp_path: Path) -> None:
    hooks = hook_repo(tmp_path / "hooks")
    target = write_project(tmp_path / "target", **{"jobs.py": JOBS, "clean.py": CLEAN})
    # The hook's environment has sessionfix, not the project's packages: declared dependencies are
    # how sessionfix knows sqlalchemy is not a missing import there.
    pyproject = target / "pyproject.toml"
    pyproject.write_text('[project]\nname = "target"\ndependencies = ["sqlalchemy>=2.0"]\n\n' + pyproject.read_text())
    committed_repo(target)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("GIT_", "PRE_COMMIT"))}
    env.update(PRE_COMMIT_HOME=str(tmp_path / "pre-commit-home"), PRE_COMMIT_COLOR="never",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    result = subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(hooks), "sessionfix-check", "--all-files",
         "--color", "never", "--verbose"],
        cwd=target, env=env, capture_output=True, text=True, timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "sessionfix check" in output and "Failed" in output
    assert "- exit code: 1" in output
    assert "jobs.py:5:10: SF002 [safe]" in output  # the hook found the project's config
    assert "jobs.py:1:18: SF001 [safe]" in output
    assert "clean.py:" not in output and "core/db.py:" not in output  # clean files, same run
    assert (target / "jobs.py").read_text() == JOBS  # a check never writes
