"""Process files in a pool of worker processes, in chunks, with results in the order given.

Each worker gets the run's state once (inherited with fork on Linux, pickled elsewhere) and
returns small records: bytes travel back only for files that change (or when asked to keep
them), so the parent's memory is bounded by what it keeps, not by the tree.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, TypeVar

from sessionfix.cache import consulting, digest
from sessionfix.config import Settings
from sessionfix.index import ProjectIndex
from sessionfix.model import FileResult, Job
from sessionfix.prefilter import Prefilter, ascii_readable, held_tokens, import_may_fail, may_bind, module_attributes

if TYPE_CHECKING:
    from sessionfix.rule import Rule

_R = TypeVar("_R")


@dataclass
class WorkState:
    """Everything a worker needs; built once per run."""

    project: ProjectIndex
    settings: Settings
    rules: tuple[type[Rule], ...]
    prefilter: Prefilter | None
    keep_original: bool
    #: path -> (digest, prefilter tokens it holds), from the first pass: a worker that reads the
    #: same bytes again need not look for the tokens again (None: no first pass to go by)
    held: Mapping[Path, tuple[str | None, frozenset[bytes]]] | None = None


@dataclass
class Outcome:
    """One file's result, with what the cache needs to store it (digest None: do not cache)."""

    result: FileResult
    digest: str | None = None
    deps: dict[str, str] | None = None
    parsed: bool = False


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def work_one(state: WorkState, job: Job) -> Outcome:
    try:
        raw = job.path.read_bytes()
    except OSError as exc:
        result = FileResult(job.path, job.display, b"")
        result.error = f"{job.display}: cannot read ({exc.strerror}); file skipped"
        return Outcome(result)
    project = state.project
    file_digest = digest(raw)
    with consulting(project) as consulted:
        if state.prefilter is None:
            rules = state.rules
        else:
            first = state.held.get(job.path) if state.held is not None else None
            held = first[1] if first is not None and first[0] == file_digest else None  # unchanged since
            rules = state.prefilter.rules_for(raw, job.path, held)
        if rules:
            from sessionfix.runner import process_source  # libcst: only once a file needs a rule

            result = process_source(raw, job, project, state.settings, rules)
        else:
            result = FileResult(job.path, job.display, raw)
    deps = {name: project.fact(name) for name in sorted(consulted)} if consulted is not None else None  # type: ignore[attr-defined]
    if not state.keep_original and not result.changed:
        result.original = b""
    return Outcome(result, file_digest, deps, parsed=bool(rules))


_STATE: WorkState | None = None
#: what a pool's tasks index into: the jobs of `run_jobs`, or the paths and extra argument of
#: `_in_workers`. It reaches each worker through the pool's initializer, which a forked worker
#: inherits without pickling, so a task is a pair of indices, not a list of paths.
_ITEMS: Any = None


def _initialise(state: WorkState | None, items: Any) -> None:
    global _STATE, _ITEMS
    _STATE, _ITEMS = state, items


#: what a worker sends back for a file with nothing to show: (digest, deps, parsed)
_Plain = tuple[str | None, dict[str, str] | None, bool]


def _compact(outcome: Outcome) -> Outcome | _Plain:
    """The outcome, or only what the parent cannot rebuild when the file has nothing to show
    (most files): the parent then makes its FileResult from the job, which spares pickling
    one result with its path per file (the parent's unpickling is a serial cost of the run)."""
    result = outcome.result
    if result.original or result.new_source is not None or result.changes or result.findings or result.error:
        return outcome
    return outcome.digest, outcome.deps, outcome.parsed


def _expand(job: Job, sent: Outcome | _Plain) -> Outcome:
    if isinstance(sent, Outcome):
        return sent
    file_digest, deps, parsed = sent
    return Outcome(FileResult(job.path, job.display, b""), file_digest, deps, parsed)


def _work_chunk(span: tuple[int, int]) -> list[Outcome | _Plain]:
    assert _STATE is not None
    return [_compact(work_one(_STATE, job)) for job in _ITEMS[span[0]:span[1]]]


#: what the first pass learns of a file: its hash (None: unreadable), which tokens it holds,
#: whether its bytes alone show what those stand for, and `imports_resolve`'s answer
Scan = tuple[str | None, frozenset[bytes], bool, tuple[str, ...] | None]


def scan_one(path: Path, tokens: Sequence[bytes], project: ProjectIndex | None = None) -> Scan:
    """What the first pass learns of the file at `path` (see `Scan`). With a `project`, a file
    that holds no token has its imports checked too (the one thing the prefilter asks of such
    a file, and one that no token found later changes): when none can fail, the run needs no
    second look at the file (see `Prefilter.needs_nothing`)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None, frozenset(), False, None
    held = held_tokens(tokens, raw)
    resolved = imports_resolve(raw, path, project) if project is not None and not held else None
    return digest(raw), held, bool(held) and module_attributes(raw, held) is not None, resolved


def imports_resolve(raw: bytes, path: Path, project: ProjectIndex) -> tuple[str, ...] | None:
    """The project names the import check consulted (what a cached answer depends on), when
    the file's identifiers are plain bytes and none of its imports may fail; else None."""
    if not ascii_readable(raw):
        return None
    with consulting(project) as consulted:
        fails = import_may_fail(raw, project, project.module_name_for(path)[1])
    return None if fails else tuple(sorted(consulted or ()))


def _scan_chunk(span: tuple[int, int]) -> list[Scan]:
    paths, (tokens, project) = _ITEMS
    return [scan_one(path, tokens, project) for path in paths[span[0]:span[1]]]


def _may_bind_chunk(span: tuple[int, int]) -> list[bool]:
    paths, tokens = _ITEMS
    return [may_bind(path, tokens) for path in paths[span[0]:span[1]]]


def _in_workers(work: Callable[[tuple[int, int]], list[_R]], paths: Sequence[Path], extra: Any,
                workers: int) -> list[_R]:
    """`work` over chunks of `paths` (each with `extra`) by `workers` processes, in order: the
    parent's passes over a large tree, which it otherwise makes alone while the cores wait."""
    if not paths:
        return []
    size = max(1, min(256, len(paths) // (workers * 8)))
    spans = [(i, min(i + size, len(paths))) for i in range(0, len(paths), size)]
    with _context().Pool(min(workers, len(spans)), initializer=_initialise, initargs=(None, (paths, extra))) as pool:
        return [found for part in pool.map(work, spans) for found in part]


def scan_all(paths: Sequence[Path], tokens: Sequence[bytes], workers: int,
             project: ProjectIndex | None = None) -> list[Scan]:
    """`scan_one` for each path, in order, by `workers` processes."""
    return _in_workers(_scan_chunk, paths, (tokens, project), workers)


def may_bind_all(paths: Sequence[Path], tokens: frozenset[bytes], workers: int) -> list[bool]:
    """`prefilter.may_bind` for each path, in order, by `workers` processes."""
    return _in_workers(_may_bind_chunk, paths, tokens, workers)


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def chunk(jobs: Sequence[Job], size: int, heavy: Callable[[Job], bool]) -> list[list[Job]]:
    """Consecutive jobs in chunks of up to `size`; a heavy job (one that may be parsed) goes
    alone, so the few slow files spread over the workers instead of queueing in one chunk."""
    chunks: list[list[Job]] = []
    light: list[Job] = []
    for job in jobs:
        if heavy(job):
            if light:
                chunks.append(light)
                light = []
            chunks.append([job])
        else:
            light.append(job)
            if len(light) == size:
                chunks.append(light)
                light = []
    if light:
        chunks.append(light)
    return chunks


#: the collector's first threshold while files are processed (Python's default is 700)
COLLECT_AFTER = 50_000


#: how many `collecting_rarely` blocks are open (runs may overlap: only the first one in sets
#: the collector up, and only the last one out puts it back)
_rarely = 0
_saved: tuple[tuple[int, ...], bool] = ((), False)


@contextlib.contextmanager
def collecting_rarely() -> Iterator[None]:
    """Fewer garbage collections while files are processed, and none over what exists already.

    libcst allocates millions of short-lived objects per parsed file, and at Python's default
    thresholds the collector kept walking every object alive: 14% of a cold run's CPU time (as
    in mypy, which raises its thresholds for the same reason). Objects that exist before the
    workers fork are frozen, so no worker walks (and so copies) the parent's memory either.
    A host that froze objects of its own, or turned collection off by a zero threshold, keeps
    its settings: nothing is frozen or unfrozen for it, and its threshold is left alone.
    """
    global _rarely, _saved
    if _rarely == 0:
        threshold = gc.get_threshold()
        freeze = gc.get_freeze_count() == 0
        _saved = (threshold, freeze)
        if threshold[0] != 0:
            gc.set_threshold(max(COLLECT_AFTER, threshold[0]), max(threshold[1], 20), max(threshold[2], 20))
        if freeze:
            gc.freeze()
    _rarely += 1
    try:
        yield
    finally:
        _rarely -= 1
        if _rarely == 0:
            threshold, freeze = _saved
            if freeze:
                gc.unfreeze()
            gc.set_threshold(*threshold)


def run_jobs(state: WorkState, jobs: Sequence[Job], workers: int,
             heavy: Callable[[Job], bool] = lambda job: False) -> Iterator[Outcome]:
    """Outcomes for `jobs`, in their order, computed by `workers` processes (1: in this one)."""
    with collecting_rarely():
        if workers <= 1 or len(jobs) < 2:
            for job in jobs:
                yield work_one(state, job)
            return
        workers = min(workers, len(jobs))
        size = max(1, min(16, len(jobs) // (workers * 4)))
        chunks = chunk(jobs, size, heavy)
        spans = []
        start = 0
        for part in chunks:  # consecutive jobs: each chunk is a span of indices
            spans.append((start, start + len(part)))
            start += len(part)
        with _context().Pool(workers, initializer=_initialise, initargs=(state, jobs)) as pool:
            for (begin, end), outcomes in zip(spans, pool.imap(_work_chunk, spans)):
                for job, sent in zip(jobs[begin:end], outcomes):
                    yield _expand(job, sent)
