"""The commands as a user runs them: exit codes, output, and what happens to files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sessionfix.cli import app
from tests.conftest import write_project

JOB = """\
from init import Session


def notify(text):
    # keep this comment
    with Session() as session:
        session.add(text)
        session.commit()
"""

FIXED = """\
from core.db import get_db_session_ctx


def notify(text):
    # keep this comment
    with get_db_session_ctx() as session:
        session.add(text)
"""


def invoke(*args: str) -> object:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def job_project(project: Path) -> Path:
    (project / "jobs.py").write_text(JOB)
    return project


def test_diff_shows_pending_changes_and_exits_1(job_project: Path) -> None:
    result = invoke("diff", str(job_project), "--no-color")
    assert result.exit_code == 1
    assert "-    with Session() as session:" in result.stdout
    assert "+    with get_db_session_ctx() as session:" in result.stdout
    assert "SF002" in result.stderr and "1 file(s) would change" in result.stderr
    assert (job_project / "jobs.py").read_text() == JOB  # diff never writes


def test_fix_then_diff_is_clean(job_project: Path) -> None:
    fixed = invoke("fix", str(job_project))
    assert fixed.exit_code == 0, fixed.stderr
    assert (job_project / "jobs.py").read_text() == FIXED
    assert "fixed jobs.py" in fixed.stdout and "SF002" in fixed.stdout
    again = invoke("diff", str(job_project))
    assert again.exit_code == 0 and again.stdout == ""


def test_diff_json(job_project: Path) -> None:
    result = invoke("diff", str(job_project), "--format", "json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    (entry,) = data["files"]
    assert entry["path"] == "jobs.py" and entry["changed"]
    assert {c["rule"] for c in entry["changes"]} == {"SF001", "SF002"}
    assert all(c["applicability"] == "safe" and c["reason"] for c in entry["changes"])
    assert entry["diff"].startswith("--- a/jobs.py")
    assert data["summary"]["changed_files"] == 1


def test_fix_reports_what_is_left_and_exits_1(project: Path) -> None:
    (project / "draft.py").write_text("from init import Session\n\n\ndef d(x):\n    with Session() as s:\n        s.add(x)\n")
    result = invoke("fix", str(project))
    assert result.exit_code == 1
    assert "draft.py:5:10: SF002 unsafe fix available with --unsafe" in result.stderr
    assert (project / "draft.py").read_text().startswith("from init import Session")
    unsafe = invoke("fix", str(project), "--unsafe")
    assert "get_db_session_ctx() as s" in (project / "draft.py").read_text()
    assert unsafe.exit_code == 0, unsafe.stderr


def test_untouched_files_keep_bytes_and_mtime(job_project: Path) -> None:
    other = job_project / "clean.py"
    other.write_bytes(b"x = 1\r\n")
    os.utime(other, (1_000_000, 1_000_000))
    invoke("fix", str(job_project))
    assert other.read_bytes() == b"x = 1\r\n"
    assert other.stat().st_mtime == 1_000_000


def test_fix_keeps_bom_crlf_encoding_and_mode(project: Path) -> None:
    source = "\ufeff" + JOB.replace("\n", "\r\n")
    target = project / "jobs.py"
    target.write_bytes(source.encode("utf-8"))
    target.chmod(0o754)
    latin = project / "latin.py"
    latin.write_bytes(("# -*- coding: latin-1 -*-\n# café\n" + JOB).encode("latin-1"))
    assert invoke("fix", str(project)).exit_code == 0
    data = target.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert data.decode("utf-8-sig").replace("\r\n", "\n") == FIXED
    assert stat.S_IMODE(target.stat().st_mode) == 0o754
    assert latin.read_bytes().decode("latin-1").endswith(FIXED.split("\n", 2)[2])
    assert "café".encode("latin-1") in latin.read_bytes()


def test_syntax_error_is_one_line_and_other_files_still_run(job_project: Path) -> None:
    broken = job_project / "broken.py"
    broken.write_text("from init import Session\ndef f(:\n    pass\n")  # a file the rules need: parsed
    result = invoke("fix", str(job_project))
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if "broken.py" in line]
    assert lines == ["broken.py:2: syntax error: invalid syntax; file skipped"]
    assert broken.read_text() == "from init import Session\ndef f(:\n    pass\n"
    assert (job_project / "jobs.py").read_text() == FIXED


def test_newer_syntax_is_parsed_and_verified(project: Path) -> None:
    code = JOB + "\n\ntype Pair[T] = tuple[T, T]\n\n\ndef g():\n    try:\n        pass\n    except ValueError, TypeError:\n        pass\n"
    (project / "new.py").write_text(code)
    result = invoke("fix", str(project))
    assert result.exit_code == 0, result.stderr
    assert (project / "new.py").read_text().startswith("from core.db import get_db_session_ctx")


@pytest.mark.parametrize(
    ("pyproject", "message"),
    [
        ('[tool.sessionfix]\nsync-contxt = "a.b"\n', "pyproject.toml:2: unknown key 'sync-contxt'"),
        ('[tool.sessionfix]\nraw-factories = "init.Session"\n', "pyproject.toml:2: 'raw-factories' must be a list"),
        ('[tool.sessionfix]\nsync-context = "nodots"\n', "is not a dotted name"),
        ("[tool.sessionfix\n", "invalid TOML"),
        ('[tool.sessionfix]\nsync-context = "core.db.get_db_session_ctxx"\n',
         "sync-context core.db.get_db_session_ctxx: core/db.py defines no get_db_session_ctxx"),
        ('[tool.sessionfix]\nsync-factory = "nowhere.get_session"\n', "module nowhere is neither in the project"),
    ],
)
def test_config_errors_are_one_line_exit_2(job_project: Path, pyproject: str, message: str) -> None:
    (job_project / "pyproject.toml").write_text(pyproject)
    result = invoke("fix", str(job_project))
    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert (job_project / "jobs.py").read_text() == JOB


def test_helper_shadowed_by_package_is_refused(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        {
            "pyproject.toml": '[tool.sessionfix]\nsync-context = "src.db.get_session"\nraw-factories = ["init.Session"]\n',
            "src/__init__.py": "",
            "src/db.py": "def get_session():\n    pass\n",
            "src/db/__init__.py": "",
        },
        **{"jobs.py": JOB},
    )
    result = invoke("fix", str(tmp_path))
    assert result.exit_code == 2
    assert "sync-context src.db.get_session: src/db/__init__.py defines no get_session" in result.stderr
    assert (tmp_path / "jobs.py").read_text() == JOB


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["diff", "does-not-exist"], "does-not-exist: no such file or directory"),
        (["diff", "--select", "SF999"], "unknown rule 'SF999'"),
        (["rules", "nope"], "unknown rule 'nope'"),
        (["diff", "--sync-context", "x"], "--sync-context: 'x' is not a dotted name"),
    ],
)
def test_user_mistakes(job_project: Path, args: list[str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(job_project)
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_cli_option_overrides_config(job_project: Path) -> None:
    (job_project / "core" / "db.py").write_text(
        (job_project / "core" / "db.py").read_text() + "\n\nother_ctx = get_db_session_ctx\n"
    )
    result = invoke("diff", str(job_project), "--sync-context", "core.db.other_ctx")
    assert "+    with other_ctx() as session:" in result.stdout


def test_exclude_and_gitignore(job_project: Path) -> None:
    (job_project / "skipme").mkdir()
    (job_project / "skipme" / "jobs.py").write_text(JOB)
    (job_project / "ignored.py").write_text(JOB)
    subprocess.run(["git", "init", "-q", str(job_project)], check=True)
    (job_project / ".gitignore").write_text("ignored.py\n")
    result = invoke("diff", str(job_project), "--exclude", "skipme/", "--format", "json")
    assert [f["path"] for f in json.loads(result.stdout)["files"]] == ["jobs.py"]


def test_internal_error_leaves_file_alone(job_project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sessionfix.codemods.with_raw_factory import WithRawFactory

    def boom(self: object, node: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(WithRawFactory, "visit_Module", boom)
    result = invoke("fix", str(job_project))
    assert result.exit_code == 2
    assert "jobs.py: internal error in SF002 (RuntimeError: boom); file left unchanged" in result.stderr
    assert (job_project / "jobs.py").read_text() == JOB
    try:
        with pytest.raises(RuntimeError, match="boom"):
            CliRunner().invoke(app, ["fix", str(job_project), "--debug", "--jobs", "1", "--no-cache"],
                               catch_exceptions=False)
    finally:
        os.environ.pop("SESSIONFIX_DEBUG", None)  # --debug sets it for worker processes
    assert (job_project / "jobs.py").read_text() == JOB


def test_rules_lists_and_documents() -> None:
    listing = invoke("rules", "--no-color")
    for code in ("SF000", "SF001", "SF002", "SF003"):
        assert code in listing.stdout
    docs = invoke("rules", "with-raw-factory", "--no-color")
    for section in ("What it does", "Why is this bad?", "Example", "Fix safety", "get_db_session_ctx"):
        assert section in docs.stdout


def test_console_script_runs(job_project: Path) -> None:
    """The installed entry point, not just the typer app."""
    result = subprocess.run([sys.executable, "-m", "sessionfix", "diff", str(job_project)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "get_db_session_ctx" in result.stdout


def test_file_libcst_cannot_reproduce_is_never_rewritten(project: Path) -> None:
    """libcst drops a trailing whitespace-only line without newline; we must not write that."""
    target = project / "jobs.py"
    target.write_bytes(JOB.encode() + b"\n ")
    result = invoke("fix", str(project))
    assert result.exit_code == 2
    assert "jobs.py: libcst does not reproduce this file byte for byte" in result.stderr
    assert target.read_bytes() == JOB.encode() + b"\n "


def test_sync_example_diff_fix_diff(tmp_path: Path) -> None:
    import shutil

    example = tmp_path / "sync_project"
    shutil.copytree(Path(__file__).resolve().parents[2] / "examples" / "sync_project", example)
    before = invoke("diff", str(example))
    assert before.exit_code == 1 and "+    with get_db_session_ctx() as session:" in before.stdout
    fixed = invoke("fix", str(example))
    assert fixed.exit_code in (0, 1), fixed.stderr
    after = invoke("diff", str(example))
    assert after.exit_code == 0 and after.stdout == ""


def test_each_project_uses_its_own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory holding several projects: every file gets its nearest pyproject.toml."""
    write_project(tmp_path / "one", **{"jobs.py": JOB})
    write_project(
        tmp_path / "two",
        {
            "pyproject.toml": '[tool.sessionfix]\nsync-context = "db.ctx"\nraw-factories = ["legacy.Maker"]\n',
            "db.py": "from contextlib import contextmanager\n\n\n@contextmanager\ndef ctx():\n    yield None\n",
        },
        **{"jobs.py": JOB.replace("from init import Session", "from legacy import Maker as Session")},
    )
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'outer'\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("diff", ".", "--format", "json")
    files = {f["path"]: f for f in json.loads(result.stdout)["files"]}
    assert set(files) == {"one/jobs.py", "two/jobs.py"}
    assert "+    with get_db_session_ctx() as session:" in files["one/jobs.py"]["diff"]
    assert "+    with ctx() as session:" in files["two/jobs.py"]["diff"]
    assert all(c["path"] == "two/jobs.py" for c in files["two/jobs.py"]["changes"])


def test_line_numbers_in_messages_refer_to_the_file_on_disk(project: Path) -> None:
    """SF002 removes lines above; a later rule's "line N" must still point at the original."""
    source = JOB + textwrap.dedent(
        """

        def leak(model):
            session = get_session()
            rows = session.query(model).all()
            return rows
        """
    )
    source = source.replace("from init import Session", "from init import Session\nfrom core.db import get_session")
    (project / "jobs.py").write_text(source)
    rows_line = source.splitlines().index("    rows = session.query(model).all()") + 1
    data = json.loads(invoke("diff", str(project), "--format", "json").stdout)
    (entry,) = data["files"]
    messages = [f["message"] for f in entry["findings"] if f["rule"] == "SF021"]
    assert messages and f"at line {rows_line}" in messages[0], messages


def test_package_reexport_of_a_dead_import_is_kept(project: Path) -> None:
    """legacy/compat.py imports the name from the package: removing it there would break that."""
    (project / "legacy").mkdir()
    (project / "legacy" / "__init__.py").write_text("from init import Session as LegacySession\n")
    (project / "legacy" / "compat.py").write_text("from legacy import LegacySession\n")
    result = invoke("fix", str(project))
    assert (project / "legacy" / "__init__.py").read_text() == "from init import Session as LegacySession\n"
    assert "re-exports it" in result.stderr and result.exit_code == 1


def test_the_helpers_own_body_is_left_alone(tmp_path: Path) -> None:
    """The raw factory inside the helper is where it belongs: no rewrite and no finding there."""
    db = (
        "from contextlib import contextmanager\n\nfrom sqlalchemy.orm import sessionmaker\n\n"
        "SessionLocal = sessionmaker()\n\n\n@contextmanager\ndef get_db():\n"
        "    with SessionLocal() as session:\n        yield session\n        session.commit()\n"
    )
    job = "from db import SessionLocal\n\n\ndef save(x):\n    with SessionLocal() as s:\n        s.add(x)\n        s.commit()\n"
    write_project(
        tmp_path,
        {"pyproject.toml": '[tool.sessionfix]\nsync-context = "db.get_db"\nraw-factories = ["db.SessionLocal"]\n',
         "db.py": db},
        **{"job.py": job},
    )
    result = invoke("fix", str(tmp_path), "--unsafe")
    assert (tmp_path / "db.py").read_text() == db
    assert "db.py" not in result.stderr, result.stderr
    assert "with get_db() as s:" in (tmp_path / "job.py").read_text(), result.stderr
