"""Property: wherever SF010 calls a rewrite safe, the rewritten `async with` block does the same
database work and raises the same exceptions, on aiosqlite, for a helper that commits on exit and
rolls back (the default project's get_async_session) and the raw async_sessionmaker (only closes).

Blocks come from test_random_blocks' grammar, made async (`await session.commit()`). Few examples:
each costs a pipeline run (~0.6 s); idempotence is covered by the rule examples.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import sys
import types
from pathlib import Path

import libcst as cst
from hypothesis import HealthCheck, given, settings
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from sessionfix.config import load_config
from sessionfix.index import ProjectIndex
from sessionfix.runner import Job, process_source
from tests.conftest import write_project
from tests.properties.test_random_blocks import Base, Item, blocks

_AWAITED = {"session.commit()": "await session.commit()", "session.rollback()": "await session.rollback()"}
FLAGS = list(itertools.product((False, True), repeat=3))


def program(body: list[str]) -> str:
    def made_async(line: str) -> str:
        stripped = line.lstrip()
        return line[: len(line) - len(stripped)] + _AWAITED.get(stripped, stripped)

    return "\n".join([
        "import logging",
        "",
        "from core.db import async_session",
        "from models import Item",
        "",
        "logger = logging.getLogger(__name__)",
        "",
        "",
        "async def job(flags):",
        "    suffix = ''",
        "    async with async_session() as session:",
        *["        " + made_async(line) for line in body],
        "",
    ])


_CURRENT: dict[str, async_sessionmaker] = {}


def async_session():  # the raw factory: an AsyncSession whose context manager only closes
    return _CURRENT["factory"]()


@contextlib.asynccontextmanager
async def get_async_session():  # DEFAULT_PROJECT's helper: commits, rolls back, closes
    async with _CURRENT["factory"]() as session:
        try:
            yield session
            await session.commit()
        except Exception:
            await session.rollback()
            raise


async def _one(namespace: dict[str, object], flags: tuple[bool, ...]) -> tuple[list[str], str | None]:
    engine = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    factory = _CURRENT["factory"] = async_sessionmaker(engine)
    error = None
    try:
        await namespace["job"](flags)  # type: ignore[operator]
    except Exception as exc:  # compared by type: that is the behaviour under test
        error = type(exc).__name__
    async with factory() as check:
        rows = sorted(await check.scalars(select(Item.name)))
    await engine.dispose()
    return rows, error


def run_all(source: str) -> list[tuple[list[str], str | None]]:
    """Every flag combination, each on a fresh in-memory database, in one event loop."""
    modules = {"models": types.SimpleNamespace(Item=Item), "core": types.SimpleNamespace(),
               "core.db": types.SimpleNamespace(async_session=async_session, get_async_session=get_async_session)}
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)  # type: ignore[arg-type]
    try:
        namespace: dict[str, object] = {"__name__": "generated"}
        exec(compile(source, "generated.py", "exec"), namespace)

        async def every() -> list[tuple[list[str], str | None]]:
            return [await _one(namespace, flags) for flags in FLAGS]

        return asyncio.run(every())
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


_PROJECT: dict[str, object] = {}


def fix(tmp_root: Path, source: str) -> tuple[str, list[str]]:
    if "index" not in _PROJECT:
        write_project(tmp_root)
        _PROJECT["index"], _PROJECT["root"] = ProjectIndex(tmp_root), tmp_root
    root = Path(_PROJECT["root"])  # type: ignore[arg-type]
    result = process_source(source.encode(), Job(root / "generated.py", "generated.py"),
                            _PROJECT["index"], load_config(root).settings)  # type: ignore[arg-type]
    assert result.error is None, result.error
    new = result.new_source.decode() if result.new_source is not None else source
    return new, [c.applicability.value for c in result.changes if c.rule == "SF010"]


logging.getLogger("generated").disabled = True


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=blocks())
def test_safe_async_rewrites_preserve_rows_and_exceptions(tmp_path_factory: object, body: list[str]) -> None:
    source = program(body)
    root = tmp_path_factory.mktemp("proj") if "index" not in _PROJECT else Path(".")  # type: ignore[attr-defined]
    fixed, applicability = fix(root, source)
    cst.parse_module(fixed)
    if not applicability:
        assert fixed == source
        return
    assert set(applicability) == {"safe"}
    assert run_all(source) == run_all(fixed), f"behaviour changed\n--- before\n{source}\n--- after\n{fixed}"


def test_generator_reaches_both_verdicts(tmp_path: Path) -> None:
    """Guard against a vacuous property: safe and unsafe blocks both occur, and both run."""
    safe = program(["session.add(Item(name='a'))", "session.commit()"])
    unsafe = program(["session.add(Item(name='a'))"])
    _PROJECT.clear()
    assert fix(tmp_path, safe)[1] == ["safe", "safe"]
    assert fix(tmp_path, unsafe) == (unsafe, [])
    assert run_all(safe)[0] == (["a"], None)
    assert run_all(unsafe)[0] == ([], None)
