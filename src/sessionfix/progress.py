"""A progress bar on stderr for runs that take a while, and only where someone can see it."""

from __future__ import annotations

import time
from typing import Iterator, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")

#: seconds before the bar appears: quick runs never show one
DELAY = 1.0


def _not_replayable() -> None:
    from sessionfix.replay import current

    recorder = current()
    if recorder is not None:  # the bar's drawing would be part of the recorded output
        recorder.refuse("a progress bar was shown")


def with_progress(items: Iterator[T], total: int, console: Console, *, enabled: bool = True,
                  delay: float = DELAY) -> Iterator[T]:
    """Yield `items`; after `delay` seconds, show a transient bar if `console` is a terminal."""
    if not enabled or not console.is_terminal or console.is_dumb_terminal:
        yield from items
        return
    start = time.monotonic()
    progress: Progress | None = None
    task = None
    done = 0
    try:
        for item in items:
            done += 1
            if progress is None and time.monotonic() - start >= delay:
                progress = Progress(TextColumn("checking"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                    console=console, transient=True)
                progress.start()
                _not_replayable()
                task = progress.add_task("files", total=total, completed=done)
            elif progress is not None and task is not None:
                progress.update(task, completed=done)
            yield item
    finally:
        if progress is not None:
            progress.stop()
