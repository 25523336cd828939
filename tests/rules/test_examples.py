"""Every rule's own VALID and INVALID examples, run through the whole pipeline.

For an INVALID: the output equals `after` byte for byte (or the input, when `after` is None),
the rule's records match `expect`, the output parses, and a second run changes nothing.
For a VALID: the file is byte-identical and the rule records no Change.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import libcst as cst
import pytest

from sessionfix.config import load_config
from sessionfix.index import ProjectIndex
from sessionfix.model import Change, FileResult
from sessionfix.registry import RULES
from sessionfix.rule import Expect, Invalid, Rule, Valid
from sessionfix.runner import Job, process_file
from tests.conftest import write_project


def _cases() -> list[object]:
    cases = []
    for rule in RULES:
        for example in (*rule.INVALID, *rule.VALID):
            cases.append(pytest.param(rule, example, id=f"{rule.NAME}/{example.id}"))
    return cases


def _run(tmp_path: Path, rule: type[Rule], example: Valid | Invalid, source: str) -> FileResult:
    root = write_project(tmp_path, example.files)
    target = root / "app.py"
    target.write_text(source)
    config = load_config(root)
    settings = config.settings.with_overrides(**dict(example.options))
    return process_file(Job(target, "app.py"), ProjectIndex(root), settings)


def _matches(expect: Expect, record: object) -> bool:
    applicability = record.applicability.value if isinstance(record, Change) else "report"  # type: ignore[attr-defined]
    text = record.reason if isinstance(record, Change) else record.message  # type: ignore[attr-defined]
    return record.rule == expect.rule and applicability == expect.applicability and expect.reason in text  # type: ignore[attr-defined]


def _check_records(result: FileResult, expected: tuple[Expect, ...], rule: type[Rule]) -> None:
    codes = {e.rule for e in expected} | {rule.CODE}
    records = [r for r in (*result.changes, *result.findings) if r.rule in codes]
    unmatched = list(records)
    for expect in expected:
        hit = next((r for r in unmatched if _matches(expect, r)), None)
        assert hit is not None, f"no record for {expect}; got {records}"
        unmatched.remove(hit)
    leftover = [r for r in unmatched if r.rule == rule.CODE]
    assert not leftover, f"unexpected records: {leftover}"


@pytest.mark.parametrize(("rule", "example"), _cases())
def test_example(tmp_path: Path, rule: type[Rule], example: Valid | Invalid) -> None:
    if isinstance(example, Valid):
        source = textwrap.dedent(example.code)
        result = _run(tmp_path, rule, example, source)
        assert result.error is None
        assert result.new_source is None, "a VALID example must stay byte-identical"
        assert not [c for c in result.changes if c.rule == rule.CODE]
        _check_records(result, example.expect, rule)
        return
    before = textwrap.dedent(example.before)
    result = _run(tmp_path, rule, example, before)
    assert result.error is None
    _check_records(result, example.expect, rule)
    if example.after is None:
        assert result.new_source is None, "expected no rewrite"
        return
    after = textwrap.dedent(example.after)
    assert result.new_source is not None, "expected a rewrite"
    assert result.new_source.decode() == after
    cst.parse_module(result.new_source)
    again = _run(tmp_path / "again", rule, example, after)
    assert again.new_source is None and not again.changes, "a second run must change nothing"


def test_every_rule_has_examples_for_each_applicability() -> None:
    for rule in RULES:
        assert rule.INVALID, f"{rule.CODE} has no INVALID examples"
        seen = {e.applicability for example in rule.INVALID for e in example.expect if e.rule == rule.CODE}
        seen |= {e.applicability for example in rule.VALID for e in example.expect if e.rule == rule.CODE}
        assert seen >= {a.value for a in rule.APPLICABILITIES}, f"{rule.CODE}: examples miss {rule.APPLICABILITIES}"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.CODE)
def test_docs_have_the_four_sections(rule: type[Rule]) -> None:
    from sessionfix.docs import render_docs

    text = render_docs(rule)
    positions = [text.find(f"## {title}") for title in ("What it does", "Why is this bad?", "Example", "Fix safety")]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), text
    assert "{example}" not in text and "```python" in text
    assert len(rule.SUMMARY) <= 80
