"""One run over a set of paths: configuration, validation, discovery, processing.

Processing reads every file once (its hash, and which prefilter tokens it holds; on a large
tree in worker processes), takes what it can from the cache, answers the files that first pass
settles (no token, no import that may fail), and hands the rest to `sessionfix.parallel`, where
the prefilter decides, from the bytes, which rules each file needs; files no rule needs are
never parsed. Results come back in file order whatever the number of jobs.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import pathspec

from sessionfix import __version__
from sessionfix.cache import (CACHE_DIR, ResultCache, TrackingIndex, checked_helpers, decode_result, digest,
                              installation_stamp, read_json, run_key, write_json)
from sessionfix.config import ProjectConfig, Settings, declared_dependencies, find_pyproject, load_config
from sessionfix.discover import discover
from sessionfix.index import ProjectIndex
from sessionfix.model import FileResult, Job
from sessionfix.prefilter import Prefilter, held_tokens

if TYPE_CHECKING:  # both import libcst: a run the cache answers never needs them
    from sessionfix.parallel import Outcome
    from sessionfix.rule import Rule

#: from this many files on, a cold run's first pass is shared among its worker processes
SCAN_IN_PARALLEL = 1000

#: configured names that must resolve before anything is written
HELPER_OPTIONS = (("sync-context", "sync_context"), ("sync-factory", "sync_factory"),
                  ("async-context", "async_context"))


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass
class Scanned:
    """What the first pass learned about one file, without keeping its bytes."""

    digest: str | None  # None: unreadable
    tokens: frozenset[bytes]
    #: the bytes alone show what the tokens stand for (`module_attributes`): likely no parse
    settled: bool = False
    #: no import can fail, and these project names told so (`parallel.imports_resolve`);
    #: None: not known (or one may fail)
    resolved: tuple[str, ...] | None = None


@dataclass
class Run:
    config: ProjectConfig
    settings: Settings
    project: ProjectIndex
    files: list[Path]
    #: None: every registered rule, imported only when some file has to be processed
    rules: Sequence[type[Rule]] | None = None
    #: worker processes (1: all in this process)
    jobs: int = 1
    #: read and write `.sessionfix_cache/` (needs a TrackingIndex, as `prepare` makes)
    use_cache: bool = False
    #: decide from the bytes which rules a file needs, and parse none of the files no rule needs
    #: (so their syntax errors go unreported; results are otherwise the same)
    prefilter: bool = False
    #: keep `original` bytes in results of unchanged files (diff/fix do not need them)
    keep_original: bool = True
    warn: Callable[[str], None] = _stderr
    #: the paths as given (to tell whether the run covers the whole project)
    targets: list[Path] = field(default_factory=list)
    #: set by process(): files parsed and files answered from the cache
    parsed: int = 0
    cached: int = 0
    _scanned: dict[Path, Scanned] = field(default_factory=dict, repr=False)
    #: the tokens `_scanned` was last computed for (each file's `tokens` are those among them)
    _looked: frozenset[bytes] = field(default_factory=frozenset, repr=False)
    _cwd: Path | None = field(default=None, repr=False)

    @property
    def rule_classes(self) -> Sequence[type[Rule]]:
        if self.rules is None:
            from sessionfix.registry import RULES

            return RULES
        return self.rules

    def display(self, path: Path) -> str:
        """Relative to the current directory when under it (diff headers apply from there),
        else relative to the project root."""
        if self._cwd is None:
            self._cwd = Path.cwd().resolve()
        try:  # files from `discover` are resolved already; resolving costs a stat per part
            return (path if path.is_absolute() else path.resolve()).relative_to(self._cwd).as_posix()
        except ValueError:
            return self.project.display(path)

    # -- the first pass ---------------------------------------------------------------------

    def _scan(self, paths: Sequence[Path], tokens: Sequence[bytes], known: Mapping[str, Any] | None = None,
              workers: int = 1, imports: bool = False) -> None:
        """Hash every file and note which tokens it holds; `known` (from `_scan_record`) answers
        the second for files whose hash it lists, when it was made for the same tokens. With
        nothing known and `workers` > 1, a large tree is scanned by worker processes (never in
        the cache's second look, whose reads `sessionfix.replay` must see). `imports`: check the
        imports of files holding no token too (`parallel.scan_one`), for a run about to process
        them."""
        self._looked = frozenset(tokens)
        looked = sorted(t.decode("utf-8", "replace") for t in tokens)
        reuse: Mapping[str, Any] = {}
        if isinstance(known, dict) and known.get("tokens") == looked and isinstance(known.get("files"), dict):
            reuse = known["files"]
        parallel = workers > 1 and len(paths) >= SCAN_IN_PARALLEL
        if not reuse and (imports or parallel):
            from sessionfix.parallel import scan_all, scan_one

            project = self.project if imports else None
            if parallel:
                found = scan_all(paths, tokens, workers, project)
            else:
                found = [scan_one(path, tokens, project) for path in paths]
            for path, (hashed, held, settled, resolved) in zip(paths, found):
                self._scanned[path] = Scanned(hashed, held, settled, resolved)
            return
        for path in paths:
            try:
                raw = path.read_bytes()
            except OSError:
                self._scanned[path] = Scanned(None, frozenset())
                continue
            hashed = digest(raw)
            stored = reuse.get(str(path))
            if isinstance(stored, list) and len(stored) == 2 and stored[0] == hashed:
                held = frozenset(t.encode("utf-8") for t in stored[1])
            else:
                held = held_tokens(tokens, raw)
            self._scanned[path] = Scanned(hashed, held)  # `settled` only matters to a large cold run

    def _scan_record(self, tokens: Sequence[bytes]) -> dict[str, Any]:
        """What `_scan` found, for the next run's `known`."""
        return {"tokens": sorted(t.decode("utf-8", "replace") for t in tokens),
                "files": {str(path): [scanned.digest, sorted(t.decode("utf-8", "replace") for t in scanned.tokens)]
                          for path, scanned in self._scanned.items() if scanned.digest is not None}}

    def _closure_files(self) -> list[Path]:
        """Every file that can define a re-export: the run's files plus the rest of the project."""
        files = list(self.files)
        root = self.config.root
        if not any(t == root or t in root.parents for t in (p.resolve() for p in self.targets or [root])):
            known = set(files)
            files += [p for p in discover([root], root) if p not in known]
        return files

    def _close(self, prefilter: Prefilter) -> None:
        """Extend the prefilter's tokens with the project's re-exports (from cache when unchanged)."""
        files = self._closure_files()
        stored_path = self.config.root / CACHE_DIR / "prefilter.json"
        base = prefilter.fingerprint()
        initial = prefilter.dump()
        stored = read_json(stored_path) if self.use_cache else None
        if isinstance(stored, dict) and stored.get("base") == base and isinstance(stored.get("state"), dict):
            prefilter.restore(stored["state"])
            looked = set(prefilter.tokens)
            self._scan(files, list(looked), stored.get("scan"))
            if stored.get("seeds") == self._seed_key(looked, files):
                update = dict(stored, scan=self._scan_record(list(looked)), light=self._light_key(),
                              fingerprint=prefilter.fingerprint())
                if update != stored:  # new or edited files: keep the next run from scanning them
                    self._save_closure(stored_path, update)
                return
            prefilter.restore(initial)
        else:
            looked = set(prefilter.tokens)
            self._scan(files, list(looked), workers=self.jobs, imports=True)
        while True:
            current = set(prefilter.tokens)
            seeds = {p: self._scanned[p].tokens & current for p in files if self._scanned[p].tokens & current}
            if not prefilter.close_over(seeds, self._may_bind_all(len(seeds))):
                break
            if not set(prefilter.tokens) <= looked:
                looked = set(prefilter.tokens)
                self._scan(files, list(looked), workers=self.jobs, imports=True)
        self._save_closure(stored_path, {"base": base, "state": prefilter.dump(),
                                         "seeds": self._seed_key(set(prefilter.tokens), files),
                                         "scan": self._scan_record(list(looked)),
                                         "light": self._light_key(), "fingerprint": prefilter.fingerprint()})

    def _may_bind_all(self, seeds: int) -> Callable[[Sequence[Path], frozenset[bytes]], list[bool]] | None:
        """The closure's look at many seed modules, shared among the worker processes."""
        if self.jobs <= 1 or seeds < SCAN_IN_PARALLEL // 4:
            return None
        from sessionfix.parallel import may_bind_all

        return lambda paths, tokens: may_bind_all(paths, tokens, self.jobs)

    def _save_closure(self, path: Path, data: dict[str, Any]) -> None:
        if not self.use_cache:
            return
        try:
            write_json(path.parent, path, data)
        except OSError as exc:
            self.warn(f"sessionfix: warning: could not write the cache ({exc.strerror or exc})")

    def _seed_key(self, tokens: set[bytes], files: Sequence[Path]) -> list[list[str]]:
        """The files the closure was computed from (and their hashes), its tokens, and which
        files exist at all: a module that appears or goes, even one holding no token, can change
        what an import resolves to (`core.py` hiding the package `core/`)."""
        present = hashlib.sha256("\0".join(sorted(str(p) for p in files)).encode("utf-8", "surrogateescape"))
        return [[str(p), self._scanned[p].digest or ""] for p in files if self._scanned[p].tokens & tokens] + [
            sorted(t.decode("utf-8", "replace") for t in tokens), [present.hexdigest()]
        ]

    def _light_key(self) -> str | None:
        """What the prefilter's fingerprint depends on other than the project's files (which the
        closure's seeds cover): sessionfix's own files and the configuration. Computed without
        importing a rule; None when a selection of rules is given."""
        if self.rules is not None:
            return None
        return run_key(version=__version__, settings=self.settings.fingerprint(), prefilter=installation_stamp(),
                       facts=[])

    def _run_key(self, fingerprint: str) -> str:
        names: set[str] = set()
        for dotted in (self.settings.sync_context, self.settings.sync_factory, self.settings.async_context,
                       *self.settings.raw_factories):
            if dotted:
                parts = dotted.split(".")
                names.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        assert isinstance(self.project, TrackingIndex)
        facts = [f"{name}={self.project.fact(name)}" for name in sorted(names)]
        return run_key(version=__version__, settings=self.settings.fingerprint(), prefilter=fingerprint, facts=facts)

    def _share_hashes(self) -> None:
        """The first pass hashed every file already: facts about project modules reuse that."""
        assert isinstance(self.project, TrackingIndex)
        self.project.known_digests({path: scanned.digest for path, scanned in self._scanned.items()
                                    if scanned.digest is not None})

    def _answered_by_cache(self, jobs: Sequence[Job]) -> list[FileResult] | None:
        """Every file's result from the cache, or None. Checked without importing a rule (and so
        libcst, most of a warm run's time otherwise): the closure stored by the last run stands
        while sessionfix, the configuration and the files it was computed from are unchanged."""
        light = self._light_key()
        if light is None or not self.prefilter:
            return None
        stored = read_json(self.config.root / CACHE_DIR / "prefilter.json")
        if not (isinstance(stored, dict) and stored.get("light") == light and isinstance(stored.get("fingerprint"), str)
                and isinstance(stored.get("state"), dict) and isinstance(stored["state"].get("tokens"), dict)):
            return None
        tokens = {token.encode("utf-8") for token in stored["state"]["tokens"]}
        files = self._closure_files()
        self._scan(files, list(tokens), stored.get("scan"))
        if stored.get("seeds") != self._seed_key(tokens, files):
            return None
        self._share_hashes()
        cache = ResultCache(self.config.root, self._run_key(stored["fingerprint"]), self.warn)
        results = []
        for job in jobs:
            found = self._from_cache(cache, job)
            if found is None:
                return None
            results.append(found)
        return results

    # -- processing -------------------------------------------------------------------------

    def cached_answer(self) -> list[FileResult] | None:
        """Every file's result from the cache alone, or None (nothing processed either way)."""
        if not (self.use_cache and isinstance(self.project, TrackingIndex)):
            return None
        answered = self._answered_by_cache([Job(path, self.display(path)) for path in self.files])
        self._scanned.clear()
        return answered

    def process(self) -> Iterator[FileResult]:
        """Results in file order; bytes of unchanged files only with keep_original."""
        self.parsed = self.cached = 0
        use_cache = self.use_cache and isinstance(self.project, TrackingIndex)
        jobs = [Job(path, self.display(path)) for path in self.files]
        answered = self._answered_by_cache(jobs) if use_cache else None
        if answered is not None:
            self.cached = len(answered)
            self._scanned.clear()
            yield from answered
            return
        from sessionfix.parallel import WorkState, run_jobs

        prefilter = Prefilter(self.rule_classes, self.settings, self.project) if self.prefilter else None
        if prefilter is not None:
            self._close(prefilter)
        elif use_cache:
            self._scan(self.files, [])
        if use_cache:
            self._share_hashes()
        fingerprint = prefilter.fingerprint() if prefilter else "all:" + ",".join(r.CODE for r in self.rule_classes)
        cache = ResultCache(self.config.root, self._run_key(fingerprint), self.warn) if use_cache else None
        answers: dict[int, FileResult] = {}
        if cache is not None:
            for position, job in enumerate(jobs):
                found = self._from_cache(cache, job)
                if found is not None:
                    answers[position] = found
        self.cached = len(answers)
        held = None
        settled: dict[int, Scanned] = {}  # files the first pass settled: no second look
        if prefilter is not None and set(prefilter.tokens) <= self._looked:
            held = {path: (scanned.digest, scanned.tokens) for path, scanned in self._scanned.items()}
            for position, job in enumerate(jobs):
                scanned = self._scanned.get(job.path)
                if (not self.keep_original and position not in answers and scanned is not None
                        and scanned.digest is not None and prefilter.needs_nothing(scanned.tokens, scanned.resolved)):
                    settled[position] = scanned
        state = WorkState(self.project, self.settings, tuple(self.rule_classes), prefilter, self.keep_original, held)
        pending = [job for position, job in enumerate(jobs) if position not in answers and position not in settled]
        def heavy(job: Job) -> bool:  # may be parsed: holds a token the bytes do not settle
            scanned = self._scanned.get(job.path)
            return scanned is None or (bool(scanned.tokens) and not scanned.settled)

        outcomes: Iterator[Outcome] = run_jobs(state, pending, self.jobs, heavy)
        try:
            for position, job in enumerate(jobs):
                if position in answers:
                    yield answers.pop(position)
                    continue
                if position in settled:
                    yield self._settled(job, settled.pop(position), cache, bool(prefilter and prefilter.imports))
                    continue
                outcome = next(outcomes)
                self.parsed += outcome.parsed
                if cache is not None and outcome.digest is not None and outcome.deps is not None:
                    cache.put(job.display, outcome.digest, outcome.deps, outcome.result)
                yield outcome.result
        finally:
            outcomes.close()  # type: ignore[attr-defined]
            if cache is not None:
                cache.save()
            self._scanned.clear()

    def _settled(self, job: Job, scanned: Scanned, cache: ResultCache | None, imports: bool) -> FileResult:
        """The result of a file no rule needs, as the first pass read it (what a worker would
        have sent for it: nothing to show, depending on the project names its imports consulted
        when some rule checks imports; a worker checks them only then)."""
        result = FileResult(job.path, job.display, b"")
        if cache is not None and scanned.digest is not None and scanned.resolved is not None:
            assert isinstance(self.project, TrackingIndex)
            names = scanned.resolved if imports else ()
            cache.put(job.display, scanned.digest, {name: self.project.fact(name) for name in names}, result)
        return result

    def _from_cache(self, cache: ResultCache, job: Job) -> FileResult | None:
        scanned = self._scanned.get(job.path)
        if scanned is None or scanned.digest is None:
            return None
        assert isinstance(self.project, TrackingIndex)
        data = cache.get(job.display, scanned.digest, self.project.fact)
        if data is None:
            return None
        original = b""
        if self.keep_original or data["new"] is not None:
            try:
                original = job.path.read_bytes()
            except OSError:
                return None
            if digest(original) != scanned.digest:
                return None  # changed since the first pass: process it again
        return decode_result(data, job.path, job.display, original)


def _run_for(config: ProjectConfig, overrides: dict[str, object], files: list[Path],
             rules: Sequence[type[Rule]] | None, targets: list[Path], cache: bool = False) -> Run:
    settings = config.settings.with_overrides(**overrides)
    project = TrackingIndex(config.root, declared=declared_dependencies(config.pyproject))
    checks = [(option, getattr(settings, attribute)) for option, attribute in HELPER_OPTIONS
              if getattr(settings, attribute) is not None]
    checked_helpers(project, config.root if cache else None, checks)
    return Run(config, settings, project, files, rules, targets=targets)


def prepare(paths: Sequence[Path], overrides: dict[str, object], rules: Sequence[type[Rule]] | None = None,
            *, cache: bool = False) -> Run:
    """Load config, apply CLI overrides, check helpers resolve, and find the files.

    `rules` None: every rule. `cache`: the helper check may be answered from `.sessionfix_cache/`.
    """
    targets = list(paths) or [Path.cwd()]
    config = load_config(targets[0])
    settings = config.settings.with_overrides(**overrides)
    files = discover(targets, config.root, settings.exclude)
    return _run_for(config, overrides, files, rules, targets, cache)


def prepare_all(paths: Sequence[Path], overrides: dict[str, object], rules: Sequence[type[Rule]] | None = None,
                *, cache: bool = False) -> list[Run]:
    """One run per project: every file is handled with the nearest pyproject.toml above it.

    `sessionfix diff examples/` (or a monorepo root) thus uses each sub-project's own
    [tool.sessionfix], module roots and excludes; every helper is validated before any run.
    """
    targets = list(paths) or [Path.cwd()]
    groups: dict[Path, tuple[ProjectConfig, list[Path], list[Path]]] = {}
    nearest: dict[Path, Path | None] = {}

    def config_of(directory: Path) -> Path | None:
        if directory not in nearest:
            nearest[directory] = find_pyproject(directory)
        return nearest[directory]

    for target in targets:
        outer = load_config(target)
        settings = outer.settings.with_overrides(**overrides)
        for file in discover([target], outer.root, settings.exclude):
            pyproject = config_of(file.parent)
            if pyproject is not None and pyproject != outer.pyproject and pyproject.parent.is_relative_to(outer.root):
                key = pyproject
            else:
                key = outer.pyproject or outer.root
            if key not in groups:
                config = outer if key == (outer.pyproject or outer.root) else load_config(key.parent)
                groups[key] = (config, [], [])
            config, files, seen_targets = groups[key]
            if key != (outer.pyproject or outer.root) and _excluded(file, config, overrides):
                continue
            files.append(file)
            if target not in seen_targets:
                seen_targets.append(target)
    if not groups:
        return [prepare(targets, overrides, rules, cache=cache)]
    return [_run_for(config, overrides, sorted(set(files)), rules, seen, cache)
            for config, files, seen in groups.values()]


def _excluded(file: Path, config: ProjectConfig, overrides: dict[str, object]) -> bool:
    """A nested project's own `exclude` patterns, applied to its files."""
    patterns = config.settings.with_overrides(**overrides).exclude
    if not patterns:
        return False
    spec = pathspec.GitIgnoreSpec.from_lines(list(patterns))
    return spec.match_file(file.resolve().relative_to(config.root).as_posix())
