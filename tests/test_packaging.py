"""codemods/ installs as `sessionfix.codemods` (never a bare top-level `codemods`), from an
editable install and from a built wheel, and each rule runs under `python -m libcst.tool`."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import write_project

REPO = Path(__file__).resolve().parents[1]
PROBE = (
    "import importlib.util, sessionfix.codemods.with_raw_factory as m; "
    "print(m.__file__); print(importlib.util.find_spec('codemods'))"
)


def _python(code: str, cwd: Path, env: dict[str, str] | None = None) -> list[str]:
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_editable_install_imports_codemods_inside_the_package(tmp_path: Path) -> None:
    module_file, bare = _python(PROBE, cwd=tmp_path)
    assert Path(module_file).resolve() == REPO / "codemods" / "with_raw_factory.py"
    assert bare == "None"


def test_wheel_ships_codemods_inside_the_package(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("sessionfix-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "sessionfix/codemods/with_raw_factory.py" in names
    assert not [n for n in names if n.startswith("codemods/")]
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    assert not (target / "codemods").exists()
    env = {**os.environ, "PYTHONPATH": str(target)}
    module_file, bare = _python(PROBE.replace("find_spec('codemods')", "find_spec('codemods')"), cwd=tmp_path, env=env)
    assert Path(module_file).is_relative_to(target)
    assert bare == "None"


def test_rule_runs_under_libcst_tool(tmp_path: Path) -> None:
    job = "from init import Session\n\n\ndef notify(text):\n    with Session() as session:\n        session.add(text)\n        session.commit()\n"
    write_project(tmp_path, **{"jobs.py": job})
    (tmp_path / ".libcst.codemod.yaml").write_text(
        "generated_code_marker: '@generated'\nformatter: []\nblacklist_patterns: []\n"
        "modules: ['sessionfix.codemods']\nrepo_root: '.'\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "libcst.tool", "codemod", "with_raw_factory.WithRawFactory",
         "--no-format", "-j", "1", "jobs.py"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "jobs.py").read_text()
    assert "with get_db_session_ctx() as session:" in text
    assert "session.commit()" not in text
    assert "from core.db import get_db_session_ctx" in text
