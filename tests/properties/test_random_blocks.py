"""Property: wherever SF002 calls a rewrite safe, the rewritten block does the same database
work and raises the same exceptions as the original, on every path we can drive it down.

Blocks are generated from a small grammar of what the seeds' jobs do (add, commit, rollback,
log, raise, branches, loops, swallowing and re-raising excepts), executed against a real SQLite
database with the raw factory as a plain sessionmaker (its context manager only closes) and
with the helper that commits on exit, rolls back on error and closes.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import textwrap
import types
from pathlib import Path

import libcst as cst
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from sessionfix.config import load_config
from sessionfix.index import ProjectIndex
from sessionfix.runner import Job, process_source
from tests.conftest import write_project

NAMES = ("a", "b", "a")  # "a" twice: committing both violates the unique constraint


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String, unique=True)


def _indent(lines: list[str]) -> list[str]:
    return ["    " + line for line in lines]


@st.composite
def blocks(draw: st.DrawFn, depth: int = 0) -> list[str]:
    size = draw(st.integers(1, 3 if depth else 4))
    out: list[str] = []
    for _ in range(size):
        kinds = ["add", "add", "commit", "commit", "rollback", "log", "raise"]
        if depth < 2:
            kinds += ["if", "for", "swallow", "reraise"]
        kind = draw(st.sampled_from(kinds))
        flag = draw(st.integers(0, 2))
        if kind == "add":
            out.append(f"session.add(Item(name={draw(st.sampled_from(NAMES))!r} + suffix))")
        elif kind == "commit":
            out.append("session.commit()")
        elif kind == "rollback":
            out.append("session.rollback()")
        elif kind == "log":
            out.append('logger.info("step")')
        elif kind == "raise":
            out += [f"if flags[{flag}]:", "    raise ValueError('boom')"]
        elif kind == "if":
            out += [f"if flags[{flag}]:", *_indent(draw(blocks(depth + 1)))]
            if draw(st.booleans()):
                out += ["else:", *_indent(draw(blocks(depth + 1)))]
        elif kind == "for":
            out += ["for suffix in ('1', '2'):", *_indent(draw(blocks(depth + 1)))]
        elif kind == "swallow":
            handler = ["session.rollback()"] if draw(st.booleans()) else []
            out += ["try:", *_indent(draw(blocks(depth + 1))), "except Exception as e:",
                    *_indent(handler + ['logger.error(f"failed: {e}")'])]
        elif kind == "reraise":
            out += ["try:", *_indent(draw(blocks(depth + 1))), "except Exception:",
                    *_indent(["session.rollback()", "raise"])]
    return out


def program(body: list[str]) -> str:
    lines = [
        "import logging",
        "",
        "from init import Session",
        "from models import Item",
        "",
        "logger = logging.getLogger(__name__)",
        "",
        "",
        "def job(flags):",
        "    suffix = ''",
        "    with Session() as session:",
        *["        " + line for line in body],
        "",
    ]
    return "\n".join(lines)


def run(source: str, flags: tuple[bool, ...]) -> tuple[list[str], str | None]:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    factory = sessionmaker(bind=engine)

    @contextlib.contextmanager
    def get_db_session_ctx():  # the seed's helper
        session = factory()
        try:
            yield session
            session.commit()
        except Exception:
            session.rollback()
            raise
        finally:
            session.close()

    modules = {
        "init": types.SimpleNamespace(Session=factory),
        "models": types.SimpleNamespace(Item=Item),
        "core": types.SimpleNamespace(),
        "core.db": types.SimpleNamespace(get_db_session_ctx=get_db_session_ctx, get_session=factory),
    }
    saved = {name: sys.modules.get(name) for name in modules}
    sys.modules.update(modules)  # type: ignore[arg-type]
    try:
        namespace: dict[str, object] = {"__name__": "generated"}
        exec(compile(source, "generated.py", "exec"), namespace)
        error = None
        try:
            namespace["job"](flags)  # type: ignore[operator]
        except Exception as exc:  # compared by type: that is the behaviour under test
            error = type(exc).__name__
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
    with factory() as check:
        rows = sorted(check.scalars(select(Item.name)))
    engine.dispose()
    return rows, error


_PROJECT: dict[str, ProjectIndex] = {}


def fix(tmp_root: Path, source: str) -> tuple[str, list[str]]:
    if "index" not in _PROJECT:
        write_project(tmp_root)
        _PROJECT["index"] = ProjectIndex(tmp_root)
        _PROJECT["root"] = tmp_root  # type: ignore[assignment]
    root = Path(_PROJECT["root"])  # type: ignore[arg-type]
    settings_ = load_config(root).settings
    result = process_source(source.encode(), Job(root / "generated.py", "generated.py"), _PROJECT["index"], settings_)
    assert result.error is None, result.error
    new = result.new_source.decode() if result.new_source is not None else source
    return new, [c.applicability.value for c in result.changes if c.rule == "SF002"]


logging.getLogger("generated").disabled = True
FLAGS = list(itertools.product((False, True), repeat=3))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=blocks())
def test_safe_rewrites_preserve_rows_and_exceptions(tmp_path_factory: object, body: list[str]) -> None:
    source = program(body)
    fixed, applicability = fix(tmp_path_factory.mktemp("proj") if "index" not in _PROJECT else Path("."), source)  # type: ignore[attr-defined]
    cst.parse_module(fixed)
    if not applicability:
        assert fixed == source, "a block SF002 does not rewrite must come out unchanged"
        return
    assert set(applicability) == {"safe"}
    for flags in FLAGS:
        assert run(source, flags) == run(fixed, flags), (
            f"behaviour changed for flags={flags}\n--- before\n{source}\n--- after\n{fixed}"
        )
    again, _ = fix(Path("."), fixed)
    assert again == fixed, "a second run must change nothing"


def test_generator_reaches_both_verdicts(tmp_path: Path) -> None:
    """Guard against a vacuous property: the grammar yields safe and unsafe blocks."""
    safe = program(["session.add(Item(name='a'))", "session.commit()"])
    unsafe = program(["session.add(Item(name='a'))"])
    _PROJECT.clear()
    assert fix(tmp_path, safe)[1] == ["safe", "safe"]
    assert fix(tmp_path, unsafe)[1] == []
    assert run(safe, (False,) * 3) == (["a"], None)
    assert run(unsafe, (False,) * 3) == ([], None)
