"""The audit as a Markdown report, laid out like the teams' own audits: summary, table, fix plan."""

from __future__ import annotations

from pathlib import Path

from sessionfix import __version__
from sessionfix.audit import Audit, FileAudit, Site, category, record_category, record_fix
from sessionfix.model import Applicability, Change, Finding
from sessionfix.report.diff import unified_diff

#: what a class of problem does to the program, for the executive summary
_CONSEQUENCE = {
    "missing-import": "import from a module that does not exist: they fail with `ModuleNotFoundError` when the import runs",
    "raw-factory": "make sessions with a raw factory instead of the project's helper",
    "leaked": "open a session that is not closed on every path",
    "fallback": "make their own session when the caller passes none, and never close it",
    "unbound": "make a `Session` with no bind, which cannot run a query",
    "bare-helper": "call a context-manager helper without `with`, so they hold a context manager, not a session",
}
_STATUS = {
    "compliant": "✅ GOOD",
    "safe-fix": "❌ **FIX (safe)**",
    "unsafe-fix": "❌ **FIX (unsafe)**",
    "review": "❌ **REVIEW**",
    "error": "⚠️ **ERROR**",
}
_FIX = {"safe-fix": "**safe**", "unsafe-fix": "**--unsafe**", "review": "**by hand**", "compliant": "No", "error": "-"}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _code(text: str) -> str:
    tick = "``" if "`" in text else "`"
    pad = " " if tick == "``" else ""
    return f"{tick}{pad}{text}{pad}{tick}" if text else ""


def _percent(audit: Audit) -> str:
    value = audit.compliance
    if value is None:
        return "n/a (no file touches sessions)"
    mark = "✅" if value == 100 else "❌"
    return f"{mark} **{value:.0f}%** ({len(audit.compliant)}/{len(audit.touching)} files correct)"


def _fix_word(site: Site) -> str:
    if not site.problem:
        return "-"
    return {Applicability.SAFE: "safe", Applicability.UNSAFE: "unsafe (--unsafe)"}.get(site.fix, "by hand")  # type: ignore[arg-type]


def render_markdown(audit: Audit, diffs: bool = True) -> str:
    """The whole report; `diffs=False` leaves out the per-file diffs."""
    out: list[str] = []
    name = Path(audit.root).name
    needing = [f for f in audit.touching if f.status != "compliant"]
    out += [f"# Session usage audit: {name}", ""]
    status = "✅ **all files that touch sessions are correct**" if not needing else \
        f"❌ **{len(needing)} file(s) need changes**"
    out += [f"**Status**: {status}  ", f"**Overall compliance**: {_percent(audit)}  ",
            f"**Checked by**: sessionfix {__version__}, {audit.checked} Python file(s) under `{name}`  ",
            f"**Configuration**: {_settings(audit)}", "", "---", ""]
    out += _summary(audit, needing)
    out += _patterns(audit)
    out += _table(audit)
    out += _plan(audit, needing, diffs)
    out += _other(audit)
    out += _errors(audit)
    out += _next_steps(audit, needing)
    return "\n".join(out).rstrip() + "\n"


def _settings(audit: Audit) -> str:
    s = audit.settings
    parts = [f"{label} {_code(value)}" for label, value in (
        ("sync-context", s.sync_context), ("sync-factory", s.sync_factory), ("async-context", s.async_context))
        if value]
    if s.raw_factories:
        parts.append("raw factories " + ", ".join(_code(r) for r in s.raw_factories))
    return "; ".join(parts) if parts else "none (only the classification below; no rewrite can be planned)"


def _summary(audit: Audit, needing: list[FileAudit]) -> list[str]:
    out = ["## Executive Summary", ""]
    touching = audit.touching
    out.append(f"- **{len(touching)}** file(s) touch sessions: **{len(audit.compliant)}** correct, "
               f"**{len(needing)}** need changes.")
    for key, sites, files in audit.category_counts():
        if category(key).problem:
            consequence = _CONSEQUENCE.get(key, f"have sites classified as {category(key).label}")
            out.append(f"- **{files}** file(s) {consequence} ({sites} site(s)).")
    fixes = audit.fix_counts()
    if any(fixes.values()):
        out.append(f"- Fixes: **{fixes['safe']}** site(s) fixed safely by `sessionfix fix`; "
                   f"**{fixes['unsafe']}** need `--unsafe` (the behaviour change is named below); "
                   f"**{fixes['review']}** need a human.")
    if audit.errors:
        out.append(f"- ⚠️ **{len(audit.errors)}** file(s) could not be read; see Errors.")
    return out + ["", "---", ""]


def _patterns(audit: Audit) -> list[str]:
    rows = audit.category_counts()
    if not rows:
        return []
    out = ["## Session Usage Patterns", "", "| Pattern | Sites | Files | Status |", "|---|---|---|---|"]
    for key, sites, files in rows:
        cat = category(key)
        out.append(f"| {cat.label} | {sites} | {files} | {'❌ fix' if cat.problem else '✅ correct'} |")
    out.append("")
    for key, _, files in rows:
        cat = category(key)
        if cat.problem:
            continue
        paths = sorted({f.path for f in audit.files for s in f.sites if s.category == key})
        out += [f"**{cat.label.capitalize()}** ({files} file(s)): " + ", ".join(_code(p) for p in paths), ""]
    return out + ["---", ""]


def _table(audit: Audit) -> list[str]:
    if not audit.touching:
        return []
    out = ["## Summary Table", "", "| File | Imports | Pattern | Status | Fix Required |",
           "|------|---------|---------|--------|--------------|"]
    ordered = sorted(audit.touching, key=lambda f: (f.status != "compliant", f.path))
    for file in ordered:
        imports = ", ".join(_code(i) for i in file.imports) or "-"
        labels = ", ".join(category(k).label for k in file.categories)
        if file.status == "compliant":
            out.append(f"| {_cell(file.path)} | {_cell(imports)} | {labels} | {_STATUS[file.status]} | No |")
        else:
            out.append(f"| **{_cell(file.path)}** | {_cell(imports)} | **{labels}** | {_STATUS[file.status]} "
                       f"| {_FIX[file.status]} |")
    touching, good = len(audit.touching), len(audit.compliant)
    out += ["", "**Statistics**:", f"- Total files touching sessions: **{touching}**",
            f"- ✅ Correct: **{good}** ({100 * good / touching:.0f}%)",
            f"- ❌ Need changes: **{touching - good}** ({100 * (touching - good) / touching:.0f}%)",
            "", "---", ""]
    return out


def _plan(audit: Audit, needing: list[FileAudit], diffs: bool) -> list[str]:
    if not needing:
        return []
    out = ["## Fix Plan", ""]
    order = {"safe-fix": 0, "unsafe-fix": 1, "review": 2}
    for number, file in enumerate(sorted(needing, key=lambda f: (order.get(f.status, 3), f.path)), start=1):
        out += [f"### Fix {number}: {file.path}", ""]
        out += ["| Line | Pattern | Code | Fix | Why |", "|---|---|---|---|---|"]
        for site in file.problems:
            out.append(f"| {site.location.line} | {category(site.category).label} | {_cell(_code(site.code))} "
                       f"| {_fix_word(site)} | {_cell(site.detail)} |")
        out.append("")
        out += _records(file)
        diff = unified_diff(file.result) if diffs and file.result.changed else ""
        if diff:
            out += ["What `sessionfix fix` changes:", "", "```diff", diff.rstrip("\n"), "```", ""]
        lines = sorted({r.location.line for s in file.problems for r in s.records if isinstance(r, Change)})
        if lines:
            out += ["**Lines to change**: " + ", ".join(str(n) for n in lines), ""]
    return out + ["---", ""]


def _records(file: FileAudit) -> list[str]:
    safe, unsafe, manual = [], [], []
    for site in file.problems:
        for record in site.records:
            fix = record_fix(record)
            text = record.reason if isinstance(record, Change) else record.message
            line = f"- `{record.location.line}:{record.location.column}` {record.rule} " \
                   f"({category(record_category(record)).label}): {text}"
            (safe if fix is Applicability.SAFE else unsafe if fix is Applicability.UNSAFE else manual).append(line)
        if not site.records:
            manual.append(f"- `{site.location.line}:{site.location.column}` audit "
                          f"({category(site.category).label}): {site.detail}; no rule fixes this yet")
    out: list[str] = []
    for title, items in (("Safe fixes (applied by `sessionfix fix`):", safe),
                         ("Unsafe fixes (applied only with `--unsafe`; each changes behaviour as stated):", unsafe),
                         ("Left for a human:", manual)):
        if items:
            out += [f"**{title}**", "", *items, ""]
    return out


def _other(audit: Audit) -> list[str]:
    lines = [f"- `{r.location}` {r.rule}: {r.message if isinstance(r, Finding) else r.reason}"
             for f in audit.files for r in f.other]
    if not lines:
        return []
    return ["## Other Findings", "", "Not about sessions, so not counted above:", "", *lines, "", "---", ""]


def _errors(audit: Audit) -> list[str]:
    if not audit.errors:
        return []
    return ["## Errors", "", *(f"- {_code(e)}" for e in audit.errors), "", "---", ""]


def _next_steps(audit: Audit, needing: list[FileAudit]) -> list[str]:
    if not needing:
        return ["## Next Steps", "", "1. Keep it that way: add the `sessionfix-check` pre-commit hook.", ""]
    fixes = audit.fix_counts()
    steps = ["Review this plan; `sessionfix diff` shows every change it lists."]
    if fixes["safe"]:
        steps.append("Apply the safe fixes: `sessionfix fix --branch-per-file` puts each file on its own branch "
                     "for review (or `sessionfix fix` in place).")
    if fixes["unsafe"]:
        steps.append("Decide on the unsafe fixes one by one: `sessionfix diff --unsafe` shows them.")
    if fixes["review"]:
        steps.append("Fix the sites left for a human by hand.")
    steps.append("Add the `sessionfix-check` pre-commit hook (or `sessionfix check` in CI) so the patterns "
                 "do not come back.")
    return ["## Next Steps", "", *(f"{n}. {s}" for n, s in enumerate(steps, start=1)), ""]
