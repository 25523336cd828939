"""The audit: every file that touches sessions, each site in it classified, and the fixes on offer.

Two sources meet here. The rules' own records (a diff-mode run: Changes it would apply, Findings
it leaves for a human) say what is wrong and how safely it can be fixed. The audit's visitor
(sessionfix.sites) names every session site, including the correct ones no rule records. A
record is attached to the innermost site whose span holds it; a record outside every site is a
site of its own. The worst class present wins. Renderers (sessionfix.report.*) only format this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from sessionfix import __version__
from sessionfix.config import Settings
from sessionfix.index import ProjectIndex
from sessionfix.model import Applicability, Change, FileResult, Finding, Location
from sessionfix.registry import RULES
from sessionfix.report.records import change_json, finding_json
from sessionfix.sites import SiteCandidate, collect_sites, innermost
from sessionfix.source import SourceError, parse


@dataclass(frozen=True)
class Category:
    key: str
    label: str  # as the report says it
    problem: bool
    rank: int  # lower is worse; decides a site with several classes
    level: str = "warning"  # SARIF level for problem sites


CATEGORIES: dict[str, Category] = {c.key: c for c in (
    Category("fallback", "fallback", True, 0),
    Category("bare-helper", "helper called without with", True, 1, "error"),
    Category("leaked", "leaked", True, 2),
    Category("unbound", "unbound", True, 3, "error"),
    Category("raw-factory", "raw factory", True, 4),
    Category("missing-import", "missing-module import", True, 5, "error"),
    Category("manual-correct", "manual but correct", False, 20),
    Category("helper-managed", "helper-managed", False, 21),
    Category("type-hint", "type hint only", False, 22),
)}

#: the class of a rule's Changes (which carry none), for rules without a CATEGORY attribute
RULE_CATEGORIES: dict[str, str] = {
    "SF000": "missing-import", "SF001": "missing-import", "SF002": "raw-factory", "SF003": "raw-factory",
    "SF010": "raw-factory", "SF011": "raw-factory", "SF012": "bare-helper", "SF020": "fallback",
    "SF021": "leaked", "SF022": "unbound",
}


def category(key: str) -> Category:
    """A known class, or one a newer rule introduced (a problem, ranked after the known ones)."""
    return CATEGORIES.get(key) or Category(key, key.replace("-", " "), True, 10)


def record_category(record: Change | Finding) -> str:
    if isinstance(record, Finding) and record.category:
        return record.category
    rule = next((r for r in RULES if r.CODE == record.rule), None)
    declared = getattr(rule, "CATEGORY", None)
    if isinstance(declared, str) and declared:
        return declared
    return RULE_CATEGORIES.get(record.rule, rule.NAME if rule is not None else record.rule)


def record_fix(record: Change | Finding) -> Applicability | None:
    """The fix a record offers: a Change is one; a Finding may name an unsafe one."""
    return record.applicability if isinstance(record, Change) else record.fix


def record_text(record: Change | Finding) -> str:
    return record.reason if isinstance(record, Change) else record.message


@dataclass
class Site:
    location: Location
    end: tuple[int, int]
    category: str
    detail: str
    code: str  # the site's first source line, for the report
    found_by: str  # "audit" (the visitor) or the rule codes that reported it
    records: list[Change | Finding] = field(default_factory=list)

    @property
    def problem(self) -> bool:
        return category(self.category).problem

    @property
    def fix(self) -> Applicability | None:
        """The least safe fix (SAFE < UNSAFE) among the records of the site's own class.

        A record of another class does not fix this site: SF003 swapping the raw factory in a
        fallback leaves the fallback as it was. None: a human must decide.
        """
        offered = {record_fix(r) for r in self.records if record_category(r) == self.category}
        offered -= {None, Applicability.REPORT}
        if not offered:
            return None
        return Applicability.UNSAFE if Applicability.UNSAFE in offered else Applicability.SAFE


@dataclass
class FileAudit:
    path: str
    sites: list[Site]
    imports: list[str]
    result: FileResult
    #: records about code that touches no session (an unrelated missing import): listed, not classified
    other: list[Change | Finding] = field(default_factory=list)

    @property
    def problems(self) -> list[Site]:
        return [s for s in self.sites if s.problem]

    @property
    def status(self) -> str:
        """"error", "compliant", "safe-fix", "unsafe-fix" or "review"."""
        if self.result.error:
            return "error"
        problems = self.problems
        if not problems:
            return "compliant"
        fixes = [s.fix for s in problems]
        if None in fixes:
            return "review"
        return "unsafe-fix" if Applicability.UNSAFE in fixes else "safe-fix"

    @property
    def categories(self) -> list[str]:
        """The classes present, worst first."""
        keys = {s.category for s in self.sites}
        return sorted(keys, key=lambda k: (category(k).rank, k))


@dataclass
class Audit:
    root: str
    settings: Settings
    files: list[FileAudit]  # files that touch sessions, plus files with errors
    checked: int  # files looked at

    @property
    def touching(self) -> list[FileAudit]:
        return [f for f in self.files if f.sites]

    @property
    def compliant(self) -> list[FileAudit]:
        return [f for f in self.touching if f.status == "compliant"]

    @property
    def compliance(self) -> float | None:
        """Files with no finding / files that touch sessions, in percent (None: no such file)."""
        touching = self.touching
        return 100.0 * len(self.compliant) / len(touching) if touching else None

    @property
    def errors(self) -> list[str]:
        return [f.result.error for f in self.files if f.result.error]

    def sites(self) -> Iterable[Site]:
        for file in self.files:
            yield from file.sites

    def category_counts(self) -> list[tuple[str, int, int]]:
        """(class, sites, files) for every class present, worst first."""
        counts: dict[str, tuple[int, set[str]]] = {}
        for file in self.files:
            for site in file.sites:
                n, paths = counts.get(site.category, (0, set()))
                counts[site.category] = (n + 1, paths | {file.path})
        return [(k, n, len(p)) for k, (n, p) in sorted(counts.items(), key=lambda i: (category(i[0]).rank, i[0]))]

    def fix_counts(self) -> dict[str, int]:
        """Problem sites by the fix on offer: safe, unsafe (--unsafe), review (none)."""
        counts = {"safe": 0, "unsafe": 0, "review": 0}
        for site in self.sites():
            if site.problem:
                counts[site.fix.value if site.fix is not None else "review"] += 1
        return counts


def _first_line(lines: Sequence[str], line: int) -> str:
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def audit_file(result: FileResult, project: ProjectIndex, settings: Settings) -> FileAudit:
    """Classify one processed file: the visitor's sites, with the rules' records attached."""
    if result.error:
        return FileAudit(result.display_path, [], [], result)
    try:
        tree = parse(result.original)
    except SourceError:  # the runner parsed it already; be safe anyway
        return FileAudit(result.display_path, [], [], result, result.records)
    module, package = project.module_name_for(result.path)
    found = collect_sites(tree, project, settings, module, package)
    candidates = found.sites
    lines = tree.code.splitlines()
    attached: dict[SiteCandidate | int, list[Change | Finding]] = {}
    other: list[Change | Finding] = []
    for record in result.records:
        line, column = record.location.line, record.location.column
        holder = innermost(candidates, line, column)
        if holder is None and innermost(found.other_imports, line, column) is not None:
            other.append(record)  # about an import that brings in no session name
            continue
        attached.setdefault(holder if holder is not None else line, []).append(record)
    sites = []
    for candidate in candidates:
        records = attached.pop(candidate, [])
        sites.append(_site(result.display_path, candidate, records, lines))
    for line, records in attached.items():
        assert isinstance(line, int)
        sites.append(_site(result.display_path, None, records, lines))
    sites.sort(key=lambda s: (s.location, s.category))
    return FileAudit(result.display_path, sites, sorted(found.imports), result, other)


def _site(path: str, candidate: SiteCandidate | None, records: list[Change | Finding],
          lines: Sequence[str]) -> Site:
    records = sorted(records, key=lambda r: (r.location, r.rule))
    ranked = sorted(((category(record_category(r)).rank, record_category(r), record_text(r)) for r in records))
    rules = ", ".join(sorted({r.rule for r in records}))
    if candidate is None:
        first = records[0].location
        _, key, text = ranked[0]
        return Site(first, (first.line, first.column), key, text, _first_line(lines, first.line), rules, records)
    key, detail = candidate.category, candidate.detail
    if ranked and ranked[0][0] < category(key).rank:
        _, key, detail = ranked[0]
    line, column = candidate.start
    found_by = ", ".join(x for x in ("audit", rules) if x)
    return Site(Location(path, line, column), candidate.end, key, detail, _first_line(lines, line), found_by, records)


def build_audit(results: Sequence[FileResult], project: ProjectIndex, settings: Settings) -> Audit:
    files = [audit_file(r, project, settings) for r in results]
    kept = [f for f in files if f.sites or f.other or f.result.error]
    return Audit(project.root.as_posix(), settings, kept, len(results))


# -- JSON --------------------------------------------------------------------------------------

def site_json(site: Site) -> dict[str, Any]:
    return {
        "line": site.location.line, "column": site.location.column,
        "end_line": site.end[0], "end_column": site.end[1],
        "category": site.category, "label": category(site.category).label, "problem": site.problem,
        "detail": site.detail, "code": site.code, "found_by": site.found_by,
        "fix": site.fix.value if site.fix is not None else None,
        "changes": [change_json(r) for r in site.records if isinstance(r, Change)],
        "findings": [finding_json(r) for r in site.records if isinstance(r, Finding)],
    }


def audit_json(audit: Audit) -> dict[str, Any]:
    compliance = audit.compliance
    return {
        "version": __version__,
        "root": audit.root,
        "summary": {
            "files_checked": audit.checked,
            "files_touching_sessions": len(audit.touching),
            "files_compliant": len(audit.compliant),
            "compliance_percent": round(compliance, 1) if compliance is not None else None,
            "sites": {k: n for k, n, _ in audit.category_counts()},
            "fixes": audit.fix_counts(),
            "errors": len(audit.errors),
        },
        "files": [
            {"path": f.path, "status": f.status, "imports": f.imports, "error": f.result.error,
             "sites": [site_json(s) for s in f.sites],
             "other_changes": [change_json(r) for r in f.other if isinstance(r, Change)],
             "other_findings": [finding_json(r) for r in f.other if isinstance(r, Finding)]}
            for f in audit.files
        ],
    }
