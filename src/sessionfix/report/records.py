"""Plain-text and JSON forms of changes and findings."""

from __future__ import annotations

from typing import Any, Sequence

from sessionfix import __version__
from sessionfix.model import Change, FileResult, Finding


def record_line(record: Change | Finding) -> str:
    if isinstance(record, Change):
        return f"{record.location}: {record.rule} [{record.applicability.value}] {record.reason}"
    return f"{record.location}: {record.rule} {record.message}"


def change_json(change: Change) -> dict[str, Any]:
    return {
        "rule": change.rule, "path": change.location.path, "line": change.location.line,
        "column": change.location.column, "applicability": change.applicability.value, "reason": change.reason,
    }


def finding_json(finding: Finding) -> dict[str, Any]:
    return {
        "rule": finding.rule, "path": finding.location.path, "line": finding.location.line,
        "column": finding.location.column, "message": finding.message, "category": finding.category,
        "fix": finding.fix.value if finding.fix is not None else None,
    }


def results_json(results: Sequence[FileResult], diffs: dict[str, str] | None = None) -> dict[str, Any]:
    files = []
    for result in results:
        if not (result.changed or result.findings or result.error):
            continue
        entry: dict[str, Any] = {
            "path": result.display_path,
            "changed": result.changed,
            "changes": [change_json(c) for c in result.changes],
            "findings": [finding_json(f) for f in result.findings],
            "error": result.error,
        }
        if diffs is not None:
            entry["diff"] = diffs.get(result.display_path, "")
        files.append(entry)
    return {
        "version": __version__,
        "files": files,
        "summary": summary_counts(results),
    }


def summary_counts(results: Sequence[FileResult]) -> dict[str, int]:
    return {
        "files": len(results),
        "changed_files": sum(r.changed for r in results),
        "changes": sum(len(r.changes) for r in results if r.changed),
        "findings": sum(len(r.findings) for r in results),
        "errors": sum(r.error is not None for r in results),
    }
