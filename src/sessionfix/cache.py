"""Results of earlier runs, under `.sessionfix_cache/` at the project root.

A file's entry is valid while its bytes are the same, and every module its result consulted
still resolves to the same thing (the same project file with the same bytes, or still installed,
or still missing). Everything that is the same for every file (sessionfix's version, the
resolved configuration, the rules, the prefilter's tokens, the configured helpers' and raw
factories' modules) goes into the name of the results file, so a change there starts afresh.
The cache is an optimisation only: any error reading or writing it is a warning at most.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import importlib.metadata
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from sessionfix.index import ModuleInfo, ProjectIndex
from sessionfix.model import Applicability, Change, FileResult, Finding, Location
from sessionfix.replay import CACHE_DIR, own_files
from sessionfix.source import write_atomic

#: bump when the entry format changes
FORMAT = 1
_KEEP = 4  # results files kept (one per configuration recently used)


def digest(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class TrackingIndex(ProjectIndex):
    """A ProjectIndex that can record the modules a file's processing consulted."""

    consulted: set[str] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._facts: dict[str, str] = {}
        self._digests: dict[Path, str] = {}

    def module(self, name: str) -> ModuleInfo | None:
        if self.consulted is not None:
            self.consulted.add(name)
        return super().module(name)

    def fact(self, name: str) -> str:
        """What `name` resolves to now, as text: a project file and its hash, installed, or missing."""
        known = self._facts.get(name)
        if known is not None:
            return known
        found = self._find_in_project(name)
        if found is not None:
            file, _ = found
            if file.is_file():
                fact = f"project {self.display(file)} {self.file_digest(file)}"
            else:
                fact = f"namespace {self.display(file)}"
        else:
            fact = "installed" if self._in_environment(name) else "missing"
        self._facts[name] = fact
        return fact

    def known_digests(self, digests: dict[Path, str]) -> None:
        """Hashes of files read moments ago (a file that changes after this is seen as it was)."""
        for path, value in digests.items():
            self._digests.setdefault(path, value)

    def file_digest(self, path: Path) -> str:
        if path not in self._digests:
            try:
                self._digests[path] = digest(path.read_bytes())
            except OSError:
                self._digests[path] = "unreadable"
        return self._digests[path]


@contextlib.contextmanager
def consulting(project: ProjectIndex) -> Iterator[set[str] | None]:
    """The module names `project` is asked about inside the block (what a cached answer
    depends on); None when it is no TrackingIndex and records nothing."""
    if not isinstance(project, TrackingIndex):
        yield None
        return
    project.consulted = found = set()
    try:
        yield found
    finally:
        project.consulted = None


def installation_stamp() -> str:
    """sessionfix's own files as installed (name, size, modification time): a change to any
    rule, even without a new version number (an editable install), makes this differ."""
    stamp = []
    for path in own_files():
        try:
            info = os.stat(path)
        except OSError:
            continue
        stamp.append(f"{path}:{info.st_size}:{info.st_mtime_ns}")
    return hashlib.sha256("\n".join(stamp).encode("utf-8", "surrogateescape")).hexdigest()


def checked_helpers(project: TrackingIndex, root: Path | None, checks: Iterable[tuple[str, str]]) -> None:
    """`project.require` for each (option, dotted name). With a cache `root`, a check passed by
    an earlier run is not repeated while every module it consulted is unchanged: repeating it
    means parsing the helper's module, which a run answered from the cache never does otherwise."""
    path = root / CACHE_DIR / "helpers.json" if root is not None else None
    stored = read_json(path) if path is not None else None
    stored = stored if isinstance(stored, dict) else {}
    passed: dict[str, dict[str, str]] = {}
    for option, dotted in checks:
        key = f"{option}={dotted}"
        deps = stored.get(key)
        if isinstance(deps, dict) and deps and all(project.fact(name) == fact for name, fact in deps.items()):
            passed[key] = deps
            continue
        project.consulted = set()
        try:
            project.require(option, dotted)
        finally:
            consulted, project.consulted = project.consulted, None
        passed[key] = {name: project.fact(name) for name in sorted(consulted)}
    if path is not None and passed != stored:
        try:
            write_json(path.parent, path, passed)
        except OSError:
            pass  # the results cache warns about an unwritable directory


def _libcst_version() -> str:
    """libcst's version without importing it (a run answered from the cache never needs it)."""
    try:
        return importlib.metadata.version("libcst")
    except importlib.metadata.PackageNotFoundError:
        return ""


def run_key(*, version: str, settings: str, prefilter: str, facts: Iterable[str]) -> str:
    """What every entry of one results file shares."""
    parts = [str(FORMAT), version, _libcst_version(),
             f"{sys.version_info[0]}.{sys.version_info[1]}", settings, prefilter, *facts]
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogateescape")).hexdigest()


def _location(location: Location) -> list[Any]:
    return [location.path, location.line, location.column]


def encode_result(result: FileResult) -> dict[str, Any]:
    return {
        "changes": [[c.rule, *_location(c.location), c.applicability.value, c.reason] for c in result.changes],
        "findings": [[f.rule, *_location(f.location), f.message, f.category, f.fix.value if f.fix else None]
                     for f in result.findings],
        "new": base64.b64encode(result.new_source).decode("ascii") if result.new_source is not None else None,
        "error": result.error,
    }


def decode_result(data: dict[str, Any], path: Path, display: str, original: bytes) -> FileResult:
    result = FileResult(path, display, original)
    # Records belong to this file: show them under the path this run uses (the cwd may differ).
    result.changes = [Change(rule, Location(display, line, col), Applicability(app), reason)
                      for rule, _, line, col, app, reason in data["changes"]]
    result.findings = [Finding(rule, Location(display, line, col), message, category, Applicability(fix) if fix else None)
                       for rule, _, line, col, message, category, fix in data["findings"]]
    result.new_source = base64.b64decode(data["new"]) if data["new"] is not None else None
    result.error = data["error"]
    return result


@dataclass
class Entry:
    digest: str
    deps: dict[str, str]
    result: dict[str, Any]


class ResultCache:
    """One results file, loaded at the start of a run and replaced atomically at its end."""

    def __init__(self, root: Path, key: str, warn: Callable[[str], None] = lambda message: None) -> None:
        self.directory = root / CACHE_DIR
        self.path = self.directory / f"results-{key[:32]}.json"
        self.key = key
        self.warn = warn
        self.entries: dict[str, Entry] = {}
        self.dirty = False
        self._warned = False
        try:
            data = json.loads(self.path.read_bytes())
            if data.get("key") == key:
                self.entries = {name: Entry(e["digest"], e["deps"], e["result"]) for name, e in data["files"].items()}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            self._warn(f"ignoring unreadable cache {self.path} ({exc})")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            self.warn(f"sessionfix: warning: {message}")

    def get(self, display: str, file_digest: str, fact: Callable[[str], str]) -> dict[str, Any] | None:
        entry = self.entries.get(display)
        if entry is None or entry.digest != file_digest:
            return None
        if any(fact(name) != value for name, value in entry.deps.items()):
            return None
        return entry.result

    def put(self, display: str, file_digest: str, deps: dict[str, str], result: FileResult) -> None:
        self.entries[display] = Entry(file_digest, deps, encode_result(result))
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        files = {name: {"digest": e.digest, "deps": e.deps, "result": e.result} for name, e in self.entries.items()}
        try:
            write_json(self.directory, self.path, {"key": self.key, "files": files})
            self._prune()
        except OSError as exc:
            self._warn(f"could not write the cache in {self.directory} ({exc.strerror or exc}); results are not cached")

    def _prune(self) -> None:
        prune(self.directory, "results-*.json", _KEEP)


def prune(directory: Path, pattern: str, keep: int) -> None:
    """Remove all but the `keep` most recently written files matching `pattern`."""
    found = []
    for path in directory.glob(pattern):
        try:
            found.append((path.stat().st_mtime_ns, path))
        except OSError:
            continue
    for _, old in sorted(found, reverse=True)[keep:]:
        old.unlink(missing_ok=True)


def write_json(directory: Path, path: Path, data: object) -> None:
    """Write `data` to `path` in one rename; the directory says it is a cache (and git ignores it)."""
    directory.mkdir(exist_ok=True)
    ignore = directory / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# created by sessionfix\n*\n")
        (directory / "CACHEDIR.TAG").write_text(
            "Signature: 8a477f597d28d172789f06886806bc55\n# sessionfix cache: see https://bford.info/cachedir/\n"
        )
    write_atomic(path, json.dumps(data, separators=(",", ":")).encode("utf-8"))


def read_json(path: Path) -> Any:
    """The JSON in `path`, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def clear(root: Path) -> int:
    """Remove the cache under `root`; how many files were removed."""
    directory = root / CACHE_DIR
    if not directory.is_dir():
        return 0
    removed = 0
    for path in sorted(directory.iterdir()):
        if path.is_file() or path.is_symlink():
            path.unlink()
            removed += 1
    directory.rmdir()
    return removed
