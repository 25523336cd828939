"""Run one command as a child process and measure wall time, CPU time and memory.

What each figure covers (Linux):

- wall: `time.perf_counter()` from just before the child is spawned until `os.wait4` returns.
- cpu: user + system seconds from `os.wait4`'s rusage. The kernel adds the CPU time of every
  descendant the child waited for (pool workers joined at shutdown), so this is the CPU of the
  whole process tree.
- peak_rss: `ru_maxrss` from the same rusage. For a tree the kernel reports the MAXIMUM over the
  child and its waited-for descendants, not the sum: the peak of the largest single process. That
  is the "MB per process" the issue quotes for libcst.tool, and what the 300 MB target bounds.
- tree_rss: the largest SUM of resident memory over the live process tree, sampled from /proc
  every `sample_interval` seconds (0 where /proc is missing or the child ends before the first
  sample). A lower bound on what the machine needed at once; it shows what `--jobs N` costs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Mapping, Sequence

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
#: ru_maxrss is in kilobytes on Linux and in bytes on macOS
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024


@dataclass(frozen=True)
class Measurement:
    """One child run; sizes in bytes, times in seconds."""

    argv: tuple[str, ...]
    wall: float
    cpu: float
    peak_rss: int
    tree_rss: int
    returncode: int
    stdout_bytes: int
    stdout_sha256: str
    stderr_tail: str

    @property
    def peak_mb(self) -> float:
        return self.peak_rss / 2**20

    @property
    def tree_mb(self) -> float:
        return self.tree_rss / 2**20


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                found.extend(int(child) for child in fh.read().split())
        except (OSError, ValueError):
            continue
    return found


def _resident(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def tree_resident(pid: int) -> int:
    """Resident bytes of `pid` and all its live descendants, right now."""
    total, stack, seen = 0, [pid], set()
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.add(current)
        total += _resident(current)
        stack.extend(_children(current))
    return total


class _TreeSampler(threading.Thread):
    """Polls the child's process tree for its summed RSS until stopped."""

    def __init__(self, pid: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.peak = max(self.peak, tree_resident(self.pid))

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak


def measure(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    sample_interval: float = 0.02,
) -> Measurement:
    """Run `argv` to completion (stdout/stderr to temporary files) and measure it."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=None if env is None else dict(env),
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True,
        )
        sampler = _TreeSampler(proc.pid, sample_interval)
        sampler.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # interrupted: stop the process group this call started, then re-raise
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait()
            sampler.stop()
            raise
        wall = time.perf_counter() - start
        # os.wait4 reaped the child; tell Popen so it does not wait for it again
        proc.returncode = os.waitstatus_to_exitcode(status)
        tree_peak = sampler.stop()
        out.seek(0)
        digest, size = sha256(), 0
        for chunk in iter(lambda: out.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
        err.seek(0)
        tail = err.read()[-2000:].decode("utf-8", errors="replace")
    return Measurement(
        argv=tuple(argv),
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        peak_rss=usage.ru_maxrss * _MAXRSS_UNIT,
        tree_rss=tree_peak,
        returncode=proc.returncode,
        stdout_bytes=size,
        stdout_sha256=digest.hexdigest(),
        stderr_tail=tail,
    )


def combine(parts: Sequence[Measurement]) -> Measurement:
    """Several runs counted as one: times add up, memory is the largest, exit is the first failure."""
    if not parts:
        raise ValueError("nothing to combine")
    failed = [p for p in parts if p.returncode != 0]
    digest = sha256("".join(p.stdout_sha256 for p in parts).encode("ascii")).hexdigest()
    return Measurement(
        argv=tuple(arg for p in parts for arg in (*p.argv, ";"))[:-1],
        wall=sum(p.wall for p in parts),
        cpu=sum(p.cpu for p in parts),
        peak_rss=max(p.peak_rss for p in parts),
        tree_rss=max(p.tree_rss for p in parts),
        returncode=failed[0].returncode if failed else 0,
        stdout_bytes=sum(p.stdout_bytes for p in parts),
        stdout_sha256=digest,
        stderr_tail=failed[0].stderr_tail if failed else parts[-1].stderr_tail,
    )
