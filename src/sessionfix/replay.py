"""The `sessionfix` entry point, and replay of a repeated read-only run.

`sessionfix diff` run again on an unchanged tree prints what it printed last time. After a run,
the cache is asked again, as the next run would ask it; if it gives the same results, the run is
recorded: its writes to stdout and stderr in order, its exit code, and what that second look
consulted. While it ran, an audit hook noted every file it opened, every directory it listed, every path it only
probed (`sessionfix.stat` events: a pyproject.toml looked for, a venv, a path argument) and the
`git ls-files` it asked. The record keeps each file's stat (size, mtime, ctime, inode, as git's
index does), each directory's listing (names, kinds and symlink targets), and each git answer.
The next identical invocation (same arguments, directory, environment, terminal) checks those
before typer, rich or any other part of sessionfix is imported and, when nothing changed, writes
the recorded output again. Anything it cannot vouch for means the normal run: a file changed
within two seconds of being read (a timestamp cannot tell that change apart), another
subprocess, a progress bar, a warning, bytes written around the text streams, a stream that
could not be written. Only the standard library is used here: it runs before everything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from typing import Any, Sequence

#: where sessionfix keeps its cache (and these records) at a project's root
CACHE_DIR = ".sessionfix_cache"
#: bump when the record format changes
FORMAT = 2
#: a file modified this close to being read may change again without its mtime changing
RACY_NS = 2_000_000_000
#: the audit event sessionfix raises where it only stats a path (sys.audit(PROBE, path))
PROBE = "sessionfix.stat"
_KEEP = 8  # records kept per cache directory
_RECORDED_COMMANDS = frozenset({"diff"})
_UNWATCHED = ("/dev/", "/proc/", "/sys/")
#: shell bookkeeping that changes with every `cd` or nested shell and that nothing here reads
#: (the working directory itself is part of the key)
_SHELL_ONLY = frozenset({"OLDPWD", "PWD", "SHLVL", "_"})

_recorder: Recorder | None = None


def main() -> None:
    """Console entry point: replay when possible, else the typer application, recording it."""
    global _recorder
    argv = sys.argv[1:]
    if _replayable(argv):
        key = run_key(argv)
        try:
            code = replay(key)
        except KeyboardInterrupt:
            sys.exit(130)
        if code is not None:
            sys.exit(code)
        _recorder = Recorder(key)
        _recorder.start()
    from sessionfix.cli import main as cli_main

    try:
        cli_main()
    except SystemExit as exit_:
        if _recorder is not None:
            _recorder.finish(exit_.code)
        raise


def current() -> Recorder | None:
    """The recorder of this run, when the command may be recorded."""
    return _recorder


def _replayable(argv: Sequence[str]) -> bool:
    return (bool(argv) and argv[0] in _RECORDED_COMMANDS and "--no-cache" not in argv and "--debug" not in argv
            and sys.stdout is not None and sys.stderr is not None)


def run_key(argv: Sequence[str]) -> str:
    """Everything the output can depend on that is not a file: arguments, directory,
    environment, interpreter, and how the two output streams are attached."""
    streams = []
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
            tty = os.isatty(fd)
            size = tuple(os.get_terminal_size(fd)) if tty else None
        except (AttributeError, OSError, ValueError):
            tty, size = False, None
        streams.append([tty, size, getattr(stream, "encoding", None), getattr(stream, "errors", None)])
    material = [FORMAT, list(argv), os.getcwd(), sys.executable, sys.version, sys.path,
                sorted(item for item in os.environ.items() if item[0] not in _SHELL_ONLY),
                streams]
    return hashlib.sha256(json.dumps(material).encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _record_path(directory: str, key: str) -> str:
    return os.path.join(directory, CACHE_DIR, f"run-{key}.json")


def _ancestors(path: str) -> list[str]:
    found = [path]
    while True:
        parent = os.path.dirname(found[-1])
        if parent == found[-1]:
            return found
        found.append(parent)


def _stat(path: str) -> list[int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]


#: entries a listing leaves out: sessionfix's cache, and Python's bytecode cache, which any
#: process importing a module from the directory may create (a test run, or another tool) and
#: whose files Python uses only beside their source, so neither changes what a run says
_UNLISTED = frozenset({CACHE_DIR, "__pycache__"})


def _listing(path: str) -> str | None:
    """The directory (its inode) and its entries: names, kinds, where symlinks point and whether
    something is there (the caches excluded: `_UNLISTED`)."""
    try:
        entries = [f".\0{os.stat(path).st_ino}"]  # the directory itself
        with os.scandir(path) as scan:
            for entry in scan:
                if entry.name in _UNLISTED:
                    continue
                try:
                    if entry.is_symlink():  # where it points, and what is there now (maybe nothing yet)
                        there = "d" if os.path.isdir(entry.path) else "f" if os.path.exists(entry.path) else "-"
                        entries.append(f"{entry.name}\0l\0{os.readlink(entry.path)}\0{there}")
                    else:
                        entries.append(f"{entry.name}\0{'d' if entry.is_dir(follow_symlinks=False) else 'f'}")
                except OSError:
                    entries.append(f"{entry.name}\0?")
    except OSError:
        return None
    entries.sort()
    return hashlib.blake2b("\n".join(entries).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


def _git_ls_files(argv: Any, cwd: Any) -> bool:
    return (isinstance(argv, list) and bool(argv) and all(isinstance(a, str) for a in argv)
            and os.path.basename(argv[0]) == "git" and "ls-files" in argv and (cwd is None or isinstance(cwd, str)))


def _command_output(argv: Sequence[str], cwd: str | None) -> str | None:
    try:
        done = subprocess.run(list(argv), cwd=cwd, capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return hashlib.blake2b(b"%d\0" % done.returncode + done.stdout, digest_size=16).hexdigest()


def replay(key: str) -> int | None:
    """Write the recorded output of run `key` and return its exit code, when every input it
    recorded is unchanged; None (having written nothing) otherwise."""
    for directory in _ancestors(os.getcwd()):
        try:
            with open(_record_path(directory, key), "rb") as handle:
                if hasattr(os, "getuid") and os.fstat(handle.fileno()).st_uid != os.getuid():
                    return None  # only records this user wrote
                record = json.loads(handle.read())
        except (OSError, ValueError, RecursionError):
            continue
        try:
            writes = _writes_if_valid(record)
        except Exception:  # a record damaged in a way the checks did not foresee: run normally
            return None
        if writes is None:
            return None
        _write_all(writes)
        return int(record["code"])
    return None


def _writes_if_valid(record: Any) -> list[tuple[Any, str | None]] | None:
    """The writes to make, as (stream, text or None for a flush), when the record is well formed,
    every text encodes for its stream, and nothing it consulted has changed."""
    if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("code") not in (0, 1):
        return None
    files, directories, commands, output = (record.get(k) for k in ("files", "directories", "commands", "output"))
    if not (isinstance(files, dict) and isinstance(directories, dict) and isinstance(commands, list)
            and isinstance(output, list)):
        return None
    streams = {"out": sys.stdout, "err": sys.stderr}
    writes: list[tuple[Any, str | None]] = []
    for item in output:
        if not (isinstance(item, list) and len(item) == 2 and item[0] in streams
                and (item[1] is None or isinstance(item[1], str))):
            return None
        stream = streams[item[0]]
        if item[1] is not None:
            item[1].encode(stream.encoding or "utf-8", stream.errors or "strict")  # raises: run normally
        writes.append((stream, item[1]))
    for path, stat in files.items():
        if "\0" in path or _stat(path) != stat:
            return None
    for path, listing in directories.items():
        if "\0" in path or _listing(path) != listing:
            return None
    for command in commands:
        if not (isinstance(command, list) and len(command) == 3 and _git_ls_files(command[0], command[1])
                and _command_output(command[0], command[1]) == command[2]):
            return None
    return writes


def _write_all(writes: list[tuple[Any, str | None]]) -> None:
    """The recorded writes in their order (so stdout and stderr interleave as they did); a
    stream whose reader has gone is left, and the other one still gets its part."""
    broken: set[int] = set()
    for stream, text in writes:
        if id(stream) in broken:
            continue
        try:
            if text is None:
                stream.flush()
            else:
                stream.write(text)
        except BrokenPipeError:
            broken.add(id(stream))
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())
            except (OSError, ValueError):
                pass
    for stream in (sys.stdout, sys.stderr):
        if id(stream) not in broken:
            try:
                stream.flush()
            except BrokenPipeError:
                pass


class _Capture:
    """A text stream that keeps, in order with the other one, what is written through it."""

    def __init__(self, stream: Any, name: str, recorder: Recorder) -> None:
        self._stream = stream
        self._name = name
        self._recorder = recorder

    def write(self, text: str) -> int:
        self._recorder.output.append([self._name, text])
        try:
            return self._stream.write(text)
        except BaseException:  # a closed pipe: what was written is not what the record holds
            self._recorder.refuse("the output could not be written")
            raise

    def flush(self) -> None:
        self._recorder.output.append([self._name, None])
        try:
            self._stream.flush()
        except BaseException:
            self._recorder.refuse("the output could not be written")
            raise

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    @property
    def buffer(self) -> Any:  # bytes written there would be missing from the record
        self._recorder.refuse("bytes written around the text stream")
        return self._stream.buffer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Recorder:
    """What one run consulted and wrote, turned into a record if the run turns out replayable."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.files: dict[str, list[int] | None] = {}
        self.directories: dict[str, str | None] = {}
        self.commands: list[list[Any]] = []
        #: [stream name, text] per write, [stream name, None] per flush
        self.output: list[list[Any]] = []
        #: why the output cannot be replayed (a progress bar, bytes around the stream)
        self.refused: str | None = None
        #: why what was consulted cannot be vouched for (forgotten by `watch`)
        self.unsure: str | None = None
        self.roots: list[str] = []
        self.answered = False
        self._collecting = False
        self._hooked = False
        self._inside = False
        self._streams: tuple[Any, Any] | None = None

    def start(self) -> None:
        """Keep a copy of the output. Nothing is watched yet: see `watch`."""
        self._streams = (sys.stdout, sys.stderr)
        sys.stdout = _Capture(sys.stdout, "out", self)  # type: ignore[assignment]
        sys.stderr = _Capture(sys.stderr, "err", self)  # type: ignore[assignment]

    def watch(self) -> None:
        """Note what is consulted from now on (the caller then asks the cache for the run's
        answer). The audit hook is added only now: once added it stays, sees every event of the
        process (`id()` raises one) and is inherited by forked workers, which would slow a cold
        run down. Python's own directory caches are dropped, so its lookups list them again."""
        import importlib

        if not self._hooked:
            sys.addaudithook(self._event)
            self._hooked = True
        self.files.clear()
        self.directories.clear()
        self.commands.clear()
        self.unsure = None
        importlib.invalidate_caches()
        self._collecting = True
        self._inside = True
        try:
            for entry in sys.path:
                self._probe(os.path.abspath(entry or "."))
        finally:
            self._inside = False

    def written(self) -> bool:
        """Has anything been written yet?"""
        return any(text for _, text in self.output)

    def refuse(self, reason: str) -> None:
        if self.refused is None:
            self.refused = reason

    def doubt(self, reason: str) -> None:
        if self.unsure is None:
            self.unsure = reason

    def answered_by_cache(self, roots: Sequence[str]) -> None:
        """Called by a command when, while watched, the cache alone gave the results it printed
        (the project roots say where the record goes)."""
        self.answered = True
        self.roots = list(roots)

    # -- the audit hook ---------------------------------------------------------------------

    def _event(self, event: str, args: tuple[Any, ...]) -> None:
        if not self._collecting or self._inside:
            return
        if event not in ("open", "os.listdir", "os.scandir", "subprocess.Popen", PROBE):
            return
        self._inside = True
        try:
            if event == "subprocess.Popen":
                self._command(args)
                return
            path = "." if args[0] is None and event != "open" else args[0]
            if isinstance(path, int) or path is None:
                return
            path = os.path.abspath(os.fsdecode(path))
            if path.startswith(_UNWATCHED) or CACHE_DIR in (os.path.basename(path),
                                                            os.path.basename(os.path.dirname(path))):
                return  # the cache directory and its files (not a project below a directory so named)
            if event == "open":
                self._file(path)
            elif event == PROBE:
                self._probe(path)
            else:
                self._directory(path)
        except Exception as error:  # never break the run being recorded
            self.doubt(f"could not note {event}: {error}")
        finally:
            self._inside = False

    def _file(self, path: str) -> None:
        if path in self.files:
            return
        stat = _stat(path)
        self.files[path] = stat
        if stat is not None and max(stat[1], stat[2]) > time.time_ns() - RACY_NS:
            self.doubt(f"{path} changed moments ago")

    def _directory(self, path: str) -> None:
        if path not in self.directories:
            self.directories[path] = _listing(path)

    def _probe(self, path: str) -> None:
        """A path only looked at. A real directory is known by its own listing, which holds its
        inode (a directory put in its place differs); its parent, often above the project, may
        change all the time and is left out. Anything else shows in the listing of the nearest
        existing directory above it: whether it exists, and what it is."""
        if os.path.isdir(path) and not os.path.islink(path):
            self._directory(path)
            return
        parent = os.path.dirname(path)
        while parent != os.path.dirname(parent) and not os.path.isdir(parent):
            parent = os.path.dirname(parent)
        self._directory(parent)

    def _command(self, args: tuple[Any, ...]) -> None:
        argv, cwd = args[1], args[2]
        argv = [os.fsdecode(a) for a in ([argv] if isinstance(argv, (str, bytes)) else argv)]
        cwd = os.fsdecode(cwd) if cwd is not None else None
        if not _git_ls_files(argv, cwd):
            self.doubt(f"ran {argv[:2]}")
            return
        self.commands.append([argv, cwd, _command_output(argv, cwd)])

    # -- the record -------------------------------------------------------------------------

    def finish(self, code: Any) -> None:
        """Save the record when the run qualifies; never raises (a record is only an optimisation)."""
        self._collecting = False
        if self._streams is not None:
            sys.stdout, sys.stderr = self._streams
        if not self.answered or self.refused or self.unsure or code not in (0, 1):
            return
        self._inside = True
        try:
            cwd = os.getcwd()
            home = next((r for r in self.roots if r == cwd or cwd.startswith(r.rstrip(os.sep) + os.sep)), None)
            if home is None:
                return
            self._installation()
            self._between(cwd, home)
            if self.unsure is not None:
                return
            from pathlib import Path

            from sessionfix.cache import prune, write_json

            record = {"format": FORMAT, "code": code, "output": self.output, "files": self.files,
                      "directories": self.directories, "commands": self.commands}
            write_json(Path(home, CACHE_DIR), Path(_record_path(home, self.key)), record)
            prune(Path(home, CACHE_DIR), "run-*.json", _KEEP)
        except Exception:
            pass
        finally:
            self._inside = False

    def _installation(self) -> None:
        """What the run ran on: every loaded module's file, and every file of sessionfix (rules
        a run answered by the cache never imports)."""
        for module in list(sys.modules.values()):
            name = getattr(module, "__file__", None)
            if isinstance(name, str):
                self._file(os.path.abspath(name))
        for path in own_files():
            self._file(path)

    def _between(self, cwd: str, home: str) -> None:
        """Directories from here up to the project root: a pyproject.toml appearing in one of
        them would change which configuration applies."""
        for directory in _ancestors(cwd):
            self._directory(directory)
            if directory == home:
                return


def own_files() -> list[str]:
    """Every Python file of sessionfix as installed, rules included (codemods/ may live apart,
    in an editable install). Finding codemods imports only the light parent package."""
    import importlib.util

    spec = importlib.util.find_spec("sessionfix.codemods")
    packages = {os.path.dirname(os.path.abspath(__file__)), *((spec.submodule_search_locations or []) if spec else [])}
    found = []
    for package in sorted(packages):
        for current, subdirectories, names in os.walk(package):
            subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
            found.extend(os.path.join(current, name) for name in sorted(names) if name.endswith(".py"))
    return found
