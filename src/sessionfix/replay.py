"""The `sessionfix` entry point, and replay of a repeated read-only run.

`sessionfix diff` run again on an unchanged tree prints what it printed last time. A run that
the cache answers on its own (or that the cache is shown to answer right after a cold run) is
recorded: its output, its exit code, and what it consulted. While it ran, an audit hook noted
every file it opened, every directory it listed and the `git ls-files` it asked; the record
keeps each file's stat (size, mtime, ctime, inode, as git's index does), each directory's
listing, and each git answer. The next identical invocation (same arguments, directory,
environment, terminal) checks those before typer, rich or any other part of sessionfix is
imported, and, when nothing changed, writes the recorded output again. Anything it cannot
vouch for means the normal run: a file changed within two seconds of being read (a timestamp
cannot tell that change apart), another subprocess, a progress bar, bytes written around the
text streams. Only the standard library is used here: it runs before everything else.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from typing import Any, Sequence

CACHE_DIR = ".sessionfix_cache"  # the same as cache.CACHE_DIR, without importing it
#: bump when the record format changes
FORMAT = 1
#: a file modified this close to being read may change again without its mtime changing
RACY_NS = 2_000_000_000
_KEEP = 8  # records kept per cache directory
_RECORDED_COMMANDS = frozenset({"diff"})
_UNWATCHED = ("/dev/", "/proc/", "/sys/")

_recorder: Recorder | None = None


def main() -> None:
    """Console entry point: replay when possible, else the typer application, recording it."""
    global _recorder
    argv = sys.argv[1:]
    if _replayable(argv):
        key = run_key(argv)
        code = replay(key)
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
    return bool(argv) and argv[0] in _RECORDED_COMMANDS and "--no-cache" not in argv and "--debug" not in argv


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
    material = [FORMAT, list(argv), os.getcwd(), sys.executable, sys.version, sys.path, sorted(os.environ.items()),
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


def _listing(path: str) -> str | None:
    try:
        names = sorted(name for name in os.listdir(path) if name != CACHE_DIR)
    except OSError:
        return None
    return hashlib.blake2b("\0".join(names).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()


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
                record = json.loads(handle.read())
        except (OSError, ValueError):
            continue
        if not _still_valid(record):
            return None
        try:
            sys.stdout.write(record["stdout"])
            sys.stdout.flush()
            sys.stderr.write(record["stderr"])
            sys.stderr.flush()
        except BrokenPipeError:  # `sessionfix diff | head`: the reader left, as it may
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return int(record["code"])
    return None


def _still_valid(record: Any) -> bool:
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return False
    if not all(isinstance(record.get(k), str) for k in ("stdout", "stderr")) or record.get("code") not in (0, 1):
        return False
    files, directories, commands = record.get("files"), record.get("directories"), record.get("commands")
    if not (isinstance(files, dict) and isinstance(directories, dict) and isinstance(commands, list)):
        return False
    for path, stat in files.items():
        if _stat(path) != stat:
            return False
    for path, listing in directories.items():
        if _listing(path) != listing:
            return False
    for command in commands:
        if not (isinstance(command, list) and len(command) == 3 and _command_output(command[0], command[1]) == command[2]):
            return False
    return True


class _Capture:
    """A text stream that keeps a copy of what is written through it."""

    def __init__(self, stream: Any, recorder: Recorder) -> None:
        self._stream = stream
        self._recorder = recorder
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        try:
            return self._stream.write(text)
        except BaseException:  # a closed pipe: what was written is not what the record holds
            self._recorder.refuse("the output could not be written")
            raise

    def flush(self) -> None:
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
        #: why the output cannot be replayed (a progress bar, bytes around the stream)
        self.refused: str | None = None
        #: why what was consulted cannot be vouched for (forgotten by `restart`)
        self.unsure: str | None = None
        self.roots: list[str] = []
        self.answered = False
        self._collecting = False
        self._inside = False
        self._stdout: _Capture | None = None
        self._stderr: _Capture | None = None

    def start(self) -> None:
        sys.addaudithook(self._event)
        self._collecting = True
        self._stdout = _Capture(sys.stdout, self)
        self._stderr = _Capture(sys.stderr, self)
        sys.stdout, sys.stderr = self._stdout, self._stderr  # type: ignore[assignment]

    def restart(self) -> None:
        """Forget what was consulted so far: what follows (a run the cache answers) is what counts."""
        self.files.clear()
        self.directories.clear()
        self.commands.clear()
        self.unsure = None
        self._collecting = True

    def refuse(self, reason: str) -> None:
        if self.refused is None:
            self.refused = reason

    def doubt(self, reason: str) -> None:
        if self.unsure is None:
            self.unsure = reason

    def answered_by_cache(self, roots: Sequence[str]) -> None:
        """Called by a command whose output the cache answered entirely, from the project roots."""
        self.answered = True
        self.roots = list(roots)

    def _event(self, event: str, args: tuple[Any, ...]) -> None:
        if not self._collecting or self._inside:
            return
        if event == "open":
            path = args[0]
        elif event in ("os.listdir", "os.scandir"):
            path = "." if args[0] is None else args[0]
        elif event == "subprocess.Popen":
            self._inside = True
            try:
                self._command(args)
            finally:
                self._inside = False
            return
        else:
            return
        if isinstance(path, int):
            return
        self._inside = True
        try:
            path = os.path.abspath(os.fsdecode(path))
            if path.startswith(_UNWATCHED) or f"{os.sep}{CACHE_DIR}" in path:
                return
            if event == "open":
                self._file(path)
            elif path not in self.directories:
                self.directories[path] = _listing(path)
        finally:
            self._inside = False

    def _file(self, path: str) -> None:
        if path in self.files:
            return
        stat = _stat(path)
        self.files[path] = stat
        if stat is not None and max(stat[1], stat[2]) > time.time_ns() - RACY_NS:
            self.doubt(f"{path} changed moments ago")

    def _command(self, args: tuple[Any, ...]) -> None:
        executable, argv, cwd = args[0], args[1], args[2]
        argv = [os.fsdecode(a) for a in ([argv] if isinstance(argv, (str, bytes)) else argv)]
        if not (argv and os.path.basename(argv[0]) == "git" and "ls-files" in argv):
            self.doubt(f"ran {argv[:2]}")
            return
        cwd = os.fsdecode(cwd) if cwd is not None else None
        self.commands.append([argv, cwd, _command_output(argv, cwd)])

    def finish(self, code: Any) -> None:
        """Save the record when the run qualifies; never raises (a record is only an optimisation)."""
        self._collecting = False
        if self._stdout is not None:
            sys.stdout, sys.stderr = self._stdout._stream, self._stderr._stream  # type: ignore[union-attr]
        if not self.answered or self.refused or self.unsure or code not in (0, 1) or self._stdout is None:
            return
        cwd = os.getcwd()
        home = next((r for r in self.roots if r == cwd or cwd.startswith(r.rstrip(os.sep) + os.sep)), None)
        if home is None:
            return
        self._inside = True
        try:
            self._installation()
            self._between(cwd, home)
            if self.unsure is not None:
                return
            record = {"format": FORMAT, "code": code, "stdout": "".join(self._stdout.parts),
                      "stderr": "".join(self._stderr.parts), "files": self.files,  # type: ignore[union-attr]
                      "directories": self.directories, "commands": self.commands}
            from pathlib import Path

            from sessionfix.cache import write_json

            write_json(Path(home, CACHE_DIR), Path(_record_path(home, self.key)), record)
            _prune(os.path.join(home, CACHE_DIR))
        except (OSError, ValueError, TypeError):
            pass
        finally:
            self._inside = False

    def _installation(self) -> None:
        """What the run ran on: every loaded module's file, every file of sessionfix (rules a
        run answered by the cache never imports), and the listing of each import directory
        (an install or upgrade renames a `.dist-info` there)."""
        import importlib.util

        for module in list(sys.modules.values()):
            name = getattr(module, "__file__", None)
            if isinstance(name, str):
                self._file(os.path.abspath(name))
        spec = importlib.util.find_spec("sessionfix.codemods")  # codemods/ may live apart (editable)
        packages = {os.path.dirname(os.path.abspath(__file__)), *(spec.submodule_search_locations or [] if spec else [])}
        for package in sorted(packages):
            for current, subdirectories, names in os.walk(package):
                subdirectories[:] = [d for d in subdirectories if d != "__pycache__"]
                for name in names:
                    if name.endswith(".py"):
                        self._file(os.path.join(current, name))
        for entry in sys.path:
            directory = os.path.abspath(entry or ".")
            if directory not in self.directories:
                self.directories[directory] = _listing(directory)


    def _between(self, cwd: str, home: str) -> None:
        """Directories from here up to the project root: a pyproject.toml appearing in one of
        them would change which configuration applies, and no file of theirs was opened."""
        for directory in _ancestors(cwd):
            if directory not in self.directories:
                self.directories[directory] = _listing(directory)
            if directory == home:
                return


def _prune(directory: str) -> None:
    records = [os.path.join(directory, n) for n in os.listdir(directory) if n.startswith("run-") and n.endswith(".json")]
    records.sort(key=lambda p: os.stat(p).st_mtime_ns, reverse=True)
    for old in records[_KEEP:]:
        try:
            os.unlink(old)
        except OSError:
            pass
