"""The per-file pipeline: parse -> rules in order -> verify. A pure function of its inputs,
so files can be processed independently (and, later, in parallel)."""

from __future__ import annotations

import contextlib
import difflib
import os
import functools
from dataclasses import replace
from typing import Iterator, Sequence

import libcst as cst
from libcst.codemod import CodemodContext, SkipFile
from libcst.metadata import MetadataWrapper

from sessionfix.config import Settings
from sessionfix.index import ProjectIndex
from sessionfix.metadata import Wrapper
from sessionfix.errors import DEBUG_ENV
from sessionfix.model import Change, FileResult, Finding, Job, Location
from sessionfix.registry import RULES
from sessionfix.rule import Rule, TreeWrapper, node_index
from sessionfix.source import SourceError, parse, verify_rewrite




class LineMap:
    """Maps line numbers of an intermediate rewrite back to the original file (worked out on
    first use: most rules record nothing, or only at nodes the file was parsed into)."""

    def __init__(self, parsed: Wrapper, current: Wrapper) -> None:
        self.parsed = parsed
        self.current = current
        self.identity = current.module is parsed.module
        self.opcodes: list[tuple[str, int, int, int, int]] | None = None

    def __call__(self, line: int) -> int:
        if self.identity:
            return line
        if self.opcodes is None:
            lines = self.parsed.code.splitlines()
            matcher = difflib.SequenceMatcher(None, lines, self.current.code.splitlines(), autojunk=False)
            self.opcodes = matcher.get_opcodes()
            self.original_count = len(lines)
        index = line - 1
        for tag, i1, i2, j1, j2 in self.opcodes:
            if j1 <= index < j2:
                if tag == "equal":
                    return i1 + (index - j1) + 1
                return min(i1 + (index - j1), max(i2 - 1, i1)) + 1
        return max(1, self.original_count)


def _with_path(record: Change | Finding, path: str) -> Change | Finding:
    """The record under the path as this run shows it (rules already report lines on disk)."""
    location = record.location
    return replace(record, location=Location(path, location.line, location.column))


def _wrap(module: cst.Module, derived_from: MetadataWrapper | None = None) -> TreeWrapper:
    """A wrapper over `module` itself, not over a copy as libcst makes by default: nodes that
    earlier rules left alone keep their identity, and so their place in the parsed file (see
    Rule.location) and their parents (see TreeWrapper). A rewrite that put one node object in two
    places still gets a copy."""
    index = node_index(module, unless_shared=True)
    if index is None:
        return TreeWrapper(module)
    wrapper = TreeWrapper(module, unsafe_skip_copy=True)
    wrapper.node_index = index
    wrapper.derived_from = derived_from
    return wrapper


@contextlib.contextmanager
def _shared_metadata(rule: Rule, wrapper: MetadataWrapper, module: cst.Module) -> Iterator[cst.Module]:
    """Codemod._handle_metadata_reference with a wrapper the runner owns, so rules that leave
    the tree unchanged hand their computed metadata (scopes, names, positions) to the next."""
    if module is not wrapper.module:  # e.g. a second pass: fall back to a fresh wrapper
        wrapper = _wrap(module)
    previous = rule.context.wrapper
    with rule.resolve(wrapper):
        rule.context = replace(rule.context, wrapper=wrapper)
        try:
            yield wrapper.module
        finally:
            rule.context = replace(rule.context, wrapper=previous)


def process_source(
    raw: bytes,
    job: Job,
    project: ProjectIndex,
    settings: Settings,
    rules: Sequence[type[Rule]] = RULES,
) -> FileResult:
    result = FileResult(job.path, job.display, raw)
    try:
        tree = parse(raw)
    except SourceError as exc:
        result.error = f"{job.display}:{exc.line}: {exc.message}; file skipped"
        return result
    module_name, package = project.module_name_for(job.path)
    wrapper = TreeWrapper(tree, unsafe_skip_copy=True)  # a parsed tree shares no nodes
    origin = wrapper
    current = wrapper.module
    for rule_class in rules:
        context = CodemodContext(
            filename=str(job.path),
            full_module_name=module_name or None,
            full_package_name=package if module_name else None,
        )
        rule = rule_class(context, settings=settings, project=project)
        if current is not wrapper.module:
            wrapper = _wrap(current, wrapper)
            current = wrapper.module
        rule._handle_metadata_reference = functools.partial(_shared_metadata, rule, wrapper)  # type: ignore[method-assign]
        rule.line_map = LineMap(origin, wrapper)  # so locations and messages use lines on disk
        rule.origin = origin
        try:
            rewritten = rule.transform_module(current)
        except SkipFile:
            continue
        except Exception as exc:  # a bug in a rule must not cost the user their file
            if os.environ.get(DEBUG_ENV):
                raise
            detail = (str(exc).strip().splitlines() or [""])[0][:160]
            result.error = (f"{job.display}: internal error in {rule_class.CODE} "
                            f"({type(exc).__name__}: {detail}); file left unchanged (--debug shows the traceback)")
            result.changes, result.findings = [], []
            return result
        for record in rule.records:
            mapped = _with_path(record, job.display)
            (result.changes if isinstance(mapped, Change) else result.findings).append(mapped)
        if rewritten is not current and not rewritten.deep_equals(current):
            current = rewritten  # else keep the tree whose metadata the next rule can reuse
    new = (wrapper.code if current is wrapper.module else current.code).encode(current.encoding)
    if new != raw and not result.changes:
        new = raw  # no rule claimed a change: whatever differs is libcst's, not ours to write
    if new != raw and origin.code.encode(tree.encoding) != raw:
        result.error = (f"{job.display}: libcst does not reproduce this file byte for byte, so it is "
                        "not rewritten (findings are still reported)")
        result.changes = []
        return result
    if new != raw:
        problem = verify_rewrite(raw, new, str(job.path))
        if problem is not None:
            result.error = f"{job.display}: internal error: {problem}; file left unchanged"
            result.changes = []
            return result
        result.new_source = new
    result.changes.sort(key=lambda c: (c.location, c.rule))
    result.findings.sort(key=lambda f: (f.location, f.rule))
    return result


def process_file(job: Job, project: ProjectIndex, settings: Settings,
                 rules: Sequence[type[Rule]] = RULES) -> FileResult:
    try:
        raw = job.path.read_bytes()
    except OSError as exc:
        result = FileResult(job.path, job.display, b"")
        result.error = f"{job.display}: cannot read ({exc.strerror}); file skipped"
        return result
    return process_source(raw, job, project, settings, rules)
