"""Rule documentation: the rule's own docstring, its Example rendered from its first INVALID."""

from __future__ import annotations

import textwrap

from sessionfix.rule import Rule


def render_example(rule: type[Rule]) -> str:
    fixable = [example for example in rule.INVALID if example.after is not None]
    if not fixable:
        fixable = list(rule.INVALID)
    if not fixable:
        return "(no example)"
    example = fixable[0]
    before = textwrap.dedent(example.before).strip()
    parts = ["```python", before, "```"]
    if example.after is not None:
        parts += ["", "Use instead:", "", "```python", textwrap.dedent(example.after).strip(), "```"]
    return "\n".join(parts)


def render_docs(rule: type[Rule]) -> str:
    body = rule.docs().replace("{example}", render_example(rule))
    return f"# {rule.CODE} {rule.NAME}\n\n{rule.SUMMARY}\n\n{body}\n"
