"""All rules, in the order the runner applies them.

Every module of `sessionfix.codemods` is loaded and each `Rule` subclass defined there is
registered; `ORDER` sets the sequence: call-site rewrites first, import clean-up (SF001) after
them so it sees what is still used, the report-only SF000 last, on the rewritten module.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Iterable

import sessionfix.codemods
from sessionfix.errors import UserError
from sessionfix.rule import Rule


def _load() -> tuple[type[Rule], ...]:
    found: dict[str, type[Rule]] = {}
    for info in pkgutil.iter_modules(sessionfix.codemods.__path__):
        module = importlib.import_module(f"sessionfix.codemods.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Rule) and "CODE" in value.__dict__:
                found[value.CODE] = value
    return tuple(sorted(found.values(), key=lambda rule: (rule.ORDER, rule.CODE)))


RULES: tuple[type[Rule], ...] = _load()


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
