"""Core records shared by rules, the runner and every renderer.

Rules return these; renderers read them. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path


class Applicability(str, enum.Enum):
    """Per-site review guidance (ruff's model): only SAFE is applied by default."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    REPORT = "report"


@dataclass(frozen=True, order=True)
class Location:
    path: str  # project-relative POSIX path, as users see it
    line: int
    column: int = 1  # 1-based, like editors and SARIF

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Change:
    """One rewrite a rule applied to the output (SAFE, or UNSAFE under --unsafe)."""

    rule: str  # "SF002"
    location: Location
    applicability: Applicability
    reason: str  # one line, for a reviewer

    @property
    def line(self) -> int:
        return self.location.line


@dataclass(frozen=True)
class Finding:
    """A site left for a human, or classified by the audit; never a rewrite."""

    rule: str
    location: Location
    message: str
    category: str = ""  # audit class: "missing-import", "raw-factory", "leaked", ...
    fix: Applicability | None = None  # the fix available with --unsafe, if any

    @property
    def line(self) -> int:
        return self.location.line


@dataclass
class FileResult:
    """Everything one run learned about one file.

    `new_source` is None when nothing changes (or the file was skipped); `error` is a
    one-line message when the file could not be processed at all.
    """

    path: Path
    display_path: str
    original: bytes
    new_source: bytes | None = None
    changes: list[Change] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None

    @property
    def changed(self) -> bool:
        return self.new_source is not None and self.new_source != self.original

    @property
    def records(self) -> list[Change | Finding]:
        return sorted([*self.changes, *self.findings], key=lambda r: (r.location, r.rule))


@dataclass(frozen=True)
class Fact:
    """One derived property of a helper, with the file:line that proves it."""

    value: bool | None  # None: could not be determined
    evidence: str  # "core/db.py:41: session.commit() after yield" or why unknown


@dataclass(frozen=True)
class HelperSemantics:
    """What a configured session helper does at the end of its block, read from its code."""

    name: str  # dotted name as configured
    kind: str  # "contextmanager", "asynccontextmanager", "class", "sessionmaker", "sessionmaker.begin", "factory", "unknown"
    commits_on_exit: Fact
    rolls_back_on_error: Fact
    closes: Fact
    location: str = ""  # file:line of the definition
    #: the caller's exception leaves the block unchanged on every path (bare `raise` / `raise e`);
    #: False when some path swallows it or raises another one instead. A swap to a helper that does
    #: not propagate changes what the caller sees, so it is never safe. Unknown unless analysed.
    propagates_errors: Fact = Fact(None, "whether the helper re-raises the caller's exception was not analysed")

    @property
    def analysed(self) -> bool:
        return None not in (
            self.commits_on_exit.value,
            self.rolls_back_on_error.value,
            self.closes.value,
            self.propagates_errors.value,
        )


@dataclass(frozen=True)
class Job:
    """One file for the runner: where it is and how this run shows its path."""

    path: Path
    display: str
