"""All rules, in the order the runner applies them.

Call-site rewrites run before import clean-up (SF001) so it sees what is still used; the
report-only SF000 runs last, on the rewritten module.
"""

from __future__ import annotations

from typing import Iterable

from sessionfix.codemods.bare_raw_factory import BareRawFactory
from sessionfix.codemods.missing_import import MissingImport
from sessionfix.codemods.missing_module_import import MissingModuleImport
from sessionfix.codemods.with_raw_factory import WithRawFactory
from sessionfix.errors import UserError
from sessionfix.rule import Rule

RULES: tuple[type[Rule], ...] = (
    WithRawFactory,
    BareRawFactory,
    MissingModuleImport,
    MissingImport,
)


def find_rule(key: str) -> type[Rule]:
    for rule in RULES:
        if key.upper() == rule.CODE or key.lower() == rule.NAME:
            return rule
    known = ", ".join(f"{r.CODE} ({r.NAME})" for r in sorted(RULES, key=lambda r: r.CODE))
    raise UserError(f"unknown rule '{key}' (known: {known})")


def select_rules(keys: Iterable[str] | None) -> tuple[type[Rule], ...]:
    if not keys:
        return RULES
    chosen = {find_rule(key) for key in keys}
    return tuple(rule for rule in RULES if rule in chosen)
