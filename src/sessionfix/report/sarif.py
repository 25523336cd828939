"""The audit as SARIF 2.1.0, for code-scanning tools.

One result per site that needs work, and one per record about code that touches no session. Its rule is the sessionfix rule that reported the site's
class (SF002, ...); a site only the audit's own classification found (say, a session no rule
covers yet) gets the pseudo-rule `audit/<class>`. The other records at the same site become
related locations. Correct sites (type hints, helper-managed, ...) are not results: code
scanning shows problems, and the Markdown or JSON report lists everything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sessionfix import __version__
from sessionfix.audit import Audit, Site, category, record_category, record_text
from sessionfix.docs import render_docs
from sessionfix.model import Applicability
from sessionfix.registry import RULES

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_FIX_TEXT = {Applicability.SAFE: "safe fix: `sessionfix fix` applies it",
             Applicability.UNSAFE: "unsafe fix: `sessionfix fix --unsafe` applies it, changing behaviour as stated"}


def _region(site: Site) -> dict[str, int]:
    region = {"startLine": site.location.line, "startColumn": site.location.column}
    if site.end > (site.location.line, site.location.column):
        region.update(endLine=site.end[0], endColumn=site.end[1])
    return region


def _location(path: str, region: dict[str, int], message: str | None = None) -> dict[str, Any]:
    location: dict[str, Any] = {"physicalLocation": {
        "artifactLocation": {"uri": path, "uriBaseId": "%SRCROOT%"}, "region": region}}
    if message is not None:
        location["message"] = {"text": message}
    return location


def _rule_descriptors() -> list[dict[str, Any]]:
    descriptors = []
    for rule in sorted(RULES, key=lambda r: r.CODE):
        docs = render_docs(rule)
        descriptors.append({
            "id": rule.CODE, "name": rule.NAME,
            "shortDescription": {"text": rule.SUMMARY},
            "fullDescription": {"text": rule.SUMMARY},
            "help": {"text": docs, "markdown": docs},
            "defaultConfiguration": {"level": "warning"},
            "properties": {"applicabilities": [a.value for a in rule.APPLICABILITIES]},
        })
    return descriptors


def _audit_descriptor(key: str) -> dict[str, Any]:
    cat = category(key)
    text = f"Session site classified as {cat.label} by sessionfix audit; no rule reported it."
    return {"id": f"audit/{key}", "name": key, "shortDescription": {"text": text},
            "defaultConfiguration": {"level": cat.level}}


def render_sarif(audit: Audit) -> dict[str, Any]:
    rules = _rule_descriptors()
    index = {r["id"]: n for n, r in enumerate(rules)}
    results = []
    for file in audit.files:
        for site in file.problems:
            own = [r for r in site.records if record_category(r) == site.category]
            primary = own[0] if own else None
            rule_id = primary.rule if primary is not None else f"audit/{site.category}"
            if rule_id not in index:
                index[rule_id] = len(rules)
                rules.append(_audit_descriptor(site.category) if primary is None else {"id": rule_id})
            fix = _FIX_TEXT.get(site.fix, "no automatic fix: needs a human")  # type: ignore[arg-type]
            cat = category(site.category)
            results.append({
                "ruleId": rule_id, "ruleIndex": index[rule_id], "kind": "fail", "level": cat.level,
                "message": {"text": f"{cat.label}: {site.detail} ({fix})"},
                "locations": [_location(file.path, _region(site))],
                "relatedLocations": [
                    _location(file.path, {"startLine": r.location.line, "startColumn": r.location.column},
                              f"{r.rule}: {record_text(r)}")
                    for r in site.records if r is not primary
                ],
                "properties": {"category": site.category, "fix": site.fix.value if site.fix else None,
                               "foundBy": site.found_by},
            })
        for record in file.other:
            if record.rule not in index:
                index[record.rule] = len(rules)
                rules.append({"id": record.rule})
            region = {"startLine": record.location.line, "startColumn": record.location.column}
            results.append({
                "ruleId": record.rule, "ruleIndex": index[record.rule], "kind": "fail", "level": "warning",
                "message": {"text": record_text(record)}, "locations": [_location(file.path, region)],
                "relatedLocations": [], "properties": {"category": "other"},
            })
    for result in results:
        for related_number, related in enumerate(result["relatedLocations"]):
            related["id"] = related_number
        if not result["relatedLocations"]:
            del result["relatedLocations"]
    root = Path(audit.root).as_uri().rstrip("/") + "/"
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "sessionfix", "version": __version__, "semanticVersion": __version__,
                                "rules": rules}},
            "originalUriBaseIds": {"%SRCROOT%": {"uri": root}},
            "columnKind": "unicodeCodePoints",
            "invocations": [{
                "executionSuccessful": not audit.errors,
                "toolExecutionNotifications": [
                    {"level": "error", "message": {"text": error}} for error in audit.errors
                ],
            }],
            "results": results,
        }],
    }
