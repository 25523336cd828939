"""The audit as rich tables, for a terminal: one row per site, the summary underneath."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from sessionfix.audit import Audit, category, record_text
from sessionfix.model import Applicability

_FIX_STYLE = {Applicability.SAFE: ("safe", "green"), Applicability.UNSAFE: ("unsafe", "yellow")}


def print_table(console: Console, audit: Audit) -> None:
    table = Table(title="Session sites", show_lines=False)
    for column in ("file", "line", "pattern", "fix", "detail"):
        table.add_column(column, overflow="fold")
    for file in sorted(audit.files, key=lambda f: (f.status == "compliant", f.path)):
        if file.result.error:
            table.add_row(Text(file.path, style="bold red"), "", Text("error", style="bold red"), "",
                          Text(file.result.error))
            continue
        for index, site in enumerate(file.sites):
            cat = category(site.category)
            shown = Text(file.path if index == 0 else "", style="bold" if file.problems else "")
            if cat.problem:
                label, style = _FIX_STYLE.get(site.fix, ("by hand", "red"))  # type: ignore[arg-type]
                fix = Text(label, style=style)
            else:
                fix = Text("-", style="dim")
            table.add_row(shown, str(site.location.line), Text(cat.label, style="red" if cat.problem else "green"),
                          fix, Text(site.detail, style="" if cat.problem else "dim"))
        for number, record in enumerate(file.other):
            shown = Text(file.path if not file.sites and number == 0 else "")
            table.add_row(shown, str(record.location.line), Text(f"other ({record.rule})", style="yellow"),
                          Text("-", style="dim"), Text(record_text(record)))
    console.print(table)
    console.print(summary_text(audit))


def summary_text(audit: Audit) -> Text:
    text = Text()
    compliance = audit.compliance
    if compliance is None:
        text.append("No file touches sessions.", style="bold")
    else:
        style = "bold green" if compliance == 100 else "bold red"
        text.append(f"Compliance {compliance:.0f}%", style=style)
        text.append(f" ({len(audit.compliant)}/{len(audit.touching)} files that touch sessions are correct)")
    fixes = audit.fix_counts()
    if any(fixes.values()):
        text.append(f"\nFixes: {fixes['safe']} safe (sessionfix fix), {fixes['unsafe']} unsafe (--unsafe), "
                    f"{fixes['review']} by hand")
    if audit.errors:
        text.append(f"\n{len(audit.errors)} file(s) could not be read", style="bold red")
    return text
