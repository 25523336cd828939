"""Helper semantics read from small temporary projects (sessionfix.semantics)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from sessionfix.index import ProjectIndex
from sessionfix.model import Fact, HelperSemantics
from sessionfix.semantics import analyse_factory_call, analyse_helper, describe

SEED_000_DB = """\
    import logging
    from contextlib import contextmanager

    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session, sessionmaker

    logger = logging.getLogger(__name__)
    _SessionFactory = None


    def get_session_factory():
        global _SessionFactory
        if _SessionFactory is None:
            _SessionFactory = sessionmaker(bind=create_engine("sqlite://"))
        return _SessionFactory


    def get_session() -> Session:
        factory = get_session_factory()
        return factory()


    @contextmanager
    def get_db_session_ctx():
        session = get_session()
        try:
            yield session
            session.commit()
        except Exception as e:
            session.rollback()
            logger.error(f"Database error: {e}")
            raise
        finally:
            session.close()
"""

ASYNC_DB = """\
    from contextlib import asynccontextmanager

    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    engine = create_async_engine("sqlite+aiosqlite://")
    async_session = async_sessionmaker(engine, expire_on_commit=False)


    @asynccontextmanager
    async def get_session():
        async with async_session() as session:
            yield session


    @asynccontextmanager
    async def get_tx():
        async with async_session() as session:
            try:
                yield session
                await session.commit()
            except Exception:
                await session.rollback()
                raise


    @asynccontextmanager
    async def get_begun():
        async with async_session.begin() as session:
            yield session
"""

SYNC_DB = """\
    from contextlib import contextmanager

    from sqlalchemy import create_engine
    from sqlalchemy.orm import sessionmaker

    engine = create_engine("sqlite://")
    SessionLocal = sessionmaker(bind=engine)
"""


def analyse(tmp_path: Path, dotted: str, **files: str) -> HelperSemantics:
    for name, text in {"pyproject.toml": '[project]\nname = "demo"\n', **files}.items():
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    return analyse_helper(ProjectIndex(tmp_path), dotted)


def values(semantics: HelperSemantics) -> tuple[bool | None, bool | None, bool | None]:
    return (
        semantics.commits_on_exit.value,
        semantics.rolls_back_on_error.value,
        semantics.closes.value,
    )


def sync_helper(tmp_path: Path, body: str, name: str = "helper") -> HelperSemantics:
    """A @contextmanager `helper` in core/db.py under the sync header."""
    source = textwrap.dedent(SYNC_DB) + textwrap.dedent(body)
    return analyse(tmp_path, f"core.db.{name}", **{"core/__init__.py": "", "core/db.py": source})


# -- the seeds ---------------------------------------------------------------------------------


def test_seed_000_context_helper_commits_rolls_back_and_closes(tmp_path: Path) -> None:
    result = analyse(tmp_path, "core.db.get_db_session_ctx", **{"core/__init__.py": "", "core/db.py": SEED_000_DB})
    assert result.kind == "contextmanager"
    assert result.location == "core/db.py:24"
    assert values(result) == (True, True, True)
    assert result.commits_on_exit.evidence == "core/db.py:28: session.commit() after the yield"
    assert result.rolls_back_on_error.evidence == (
        "core/db.py:30: session.rollback() in `except Exception`; core/db.py:32: re-raises"
    )
    assert result.closes.evidence == "core/db.py:34: session.close() in `finally`"
    assert result.analysed


def test_seed_000_plain_factory_through_a_local_variable_is_not_followed(tmp_path: Path) -> None:
    result = analyse(tmp_path, "core.db.get_session", **{"core/__init__.py": "", "core/db.py": SEED_000_DB})
    assert result.kind == "factory"
    assert values(result) == (None, None, None)
    assert "cannot tell what factory is" in result.closes.evidence


def test_seed_002_helper_that_only_closes(tmp_path: Path) -> None:
    result = analyse(tmp_path, "src.db.get_session", **{"src/db.py": ASYNC_DB})
    assert result.kind == "asynccontextmanager"
    assert values(result) == (False, False, True)
    assert result.closes.evidence.startswith("src/db.py:11: with async_session() as session: src/db.py:6:")
    assert "AsyncSession.__aexit__ calls close()" in result.closes.evidence
    assert "no session.commit() after the yield" in result.commits_on_exit.evidence
    assert "not a rollback() call" in result.rolls_back_on_error.evidence


def test_async_helper_that_commits_and_rolls_back(tmp_path: Path) -> None:
    result = analyse(tmp_path, "src.db.get_tx", **{"src/db.py": ASYNC_DB})
    assert result.kind == "asynccontextmanager"
    assert values(result) == (True, True, True)
    assert result.commits_on_exit.evidence == "src/db.py:20: await session.commit() after the yield"
    assert result.rolls_back_on_error.evidence.startswith("src/db.py:22: await session.rollback() in `except Exception`")


def test_helper_built_on_sessionmaker_begin(tmp_path: Path) -> None:
    result = analyse(tmp_path, "src.db.get_begun", **{"src/db.py": ASYNC_DB})
    assert values(result) == (True, True, True)
    assert "async_session.begin() commits when the block succeeds" in result.commits_on_exit.evidence


# -- sessionmakers -----------------------------------------------------------------------------


def test_async_sessionmaker_only_closes(tmp_path: Path) -> None:
    result = analyse(tmp_path, "src.db.async_session", **{"src/db.py": ASYNC_DB})
    assert result.kind == "sessionmaker"
    assert result.location == "src/db.py:6"
    assert values(result) == (False, False, True)
    assert "implicitly" in result.rolls_back_on_error.evidence


def test_sessionmaker_begin_by_dotted_name_and_by_call(tmp_path: Path) -> None:
    by_name = analyse(tmp_path, "src.db.async_session.begin", **{"src/db.py": ASYNC_DB})
    by_call = analyse_factory_call(ProjectIndex(tmp_path), "src.db.async_session", "begin")
    for result in (by_name, by_call):
        assert result.kind == "sessionmaker.begin"
        assert values(result) == (True, True, True)
        assert result.location == "src/db.py:6"


def test_other_factory_methods_are_not_understood(tmp_path: Path) -> None:
    analyse(tmp_path, "src.db.async_session", **{"src/db.py": ASYNC_DB})
    result = analyse_factory_call(ProjectIndex(tmp_path), "src.db.async_session", "configure")
    assert result.kind == "unknown"


def test_sessionmaker_whose_class_overrides_exit(tmp_path: Path) -> None:
    source = """\
        from sqlalchemy import create_engine
        from sqlalchemy.orm import Session, sessionmaker


        class CommittingSession(Session):
            def __exit__(self, exc_type, exc, tb):
                if exc_type is None:
                    self.commit()
                else:
                    self.rollback()
                super().__exit__(exc_type, exc, tb)


        SessionLocal = sessionmaker(bind=create_engine("sqlite://"), class_=CommittingSession)
    """
    result = analyse(tmp_path, "core.db.SessionLocal", **{"core/__init__.py": "", "core/db.py": source})
    assert result.kind == "sessionmaker"
    assert values(result) == (True, True, True)
    assert "class_=CommittingSession overrides __exit__" in result.commits_on_exit.evidence
    assert "core/db.py:8: self.commit() in __exit__ when the block succeeds" in result.commits_on_exit.evidence
    assert "core/db.py:10: self.rollback() in __exit__ when the block raises" in result.rolls_back_on_error.evidence
    assert "Session's own __exit__ closes" in result.closes.evidence


def test_sessionmaker_whose_class_keeps_exit_is_a_plain_sessionmaker(tmp_path: Path) -> None:
    source = """\
        from sqlalchemy.orm import Session, sessionmaker


        class MySession(Session):
            def audit(self):
                pass


        SessionLocal = sessionmaker(class_=MySession)
    """
    result = analyse(tmp_path, "core.db.SessionLocal", **{"core/__init__.py": "", "core/db.py": source})
    assert result.kind == "sessionmaker"
    assert values(result) == (False, False, True)


def test_sessionmaker_with_class_from_a_package_is_not_guessed(tmp_path: Path) -> None:
    source = """\
        from sqlalchemy.orm import sessionmaker
        from contextlib import nullcontext

        SessionLocal = sessionmaker(class_=nullcontext)
    """
    result = analyse(tmp_path, "core.db.SessionLocal", **{"core/__init__.py": "", "core/db.py": source})
    assert values(result) == (None, None, None)
    assert "class_=nullcontext" in result.closes.evidence


# -- classes -----------------------------------------------------------------------------------


def test_class_with_enter_and_exit(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        class DBSession:
            def __init__(self):
                self.session = SessionLocal()

            def __enter__(self):
                return self.session

            def __exit__(self, exc_type, exc, tb):
                try:
                    if exc_type is not None:
                        self.session.rollback()
                    else:
                        self.session.commit()
                finally:
                    self.session.close()
        """,
        name="DBSession",
    )
    assert result.kind == "class"
    assert values(result) == (True, True, True)
    assert "self.session.close() in `finally`" in result.closes.evidence


def test_class_whose_exit_returns_true_swallows(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        class Quiet:
            def __enter__(self):
                self.session = SessionLocal()
                return self.session

            def __exit__(self, exc_type, exc, tb):
                if exc_type:
                    self.session.rollback()
                    return True
                self.session.commit()
        """,
        name="Quiet",
    )
    assert values(result) == (True, True, False)
    assert "SWALLOWS" in result.rolls_back_on_error.evidence
    assert result.propagates_errors == Fact(False, "swallows the caller's exception: core/db.py:17: __exit__ returns True")


def test_class_exit_reading_other_state_is_not_decided(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        class Maybe:
            def __enter__(self):
                self.session = SessionLocal()
                return self.session

            def __exit__(self, exc_type, exc, tb):
                if self.dirty:
                    self.session.commit()
                self.session.close()
        """,
        name="Maybe",
    )
    assert values(result) == (None, False, True)


# -- how the name is reached --------------------------------------------------------------------


def test_alias_of_a_sessionmaker(tmp_path: Path) -> None:
    source = textwrap.dedent(ASYNC_DB) + "\nget_session_alias = async_session\n"
    result = analyse(tmp_path, "src.db.get_session_alias", **{"src/db.py": source})
    assert result.name == "src.db.get_session_alias"
    assert result.kind == "sessionmaker"
    assert values(result) == (False, False, True)


def test_reexport_through_a_package_init(tmp_path: Path) -> None:
    result = analyse(
        tmp_path,
        "app.db.get_session",
        **{
            "app/__init__.py": "",
            "app/db/__init__.py": "from .session import get_session\n",
            "app/db/session.py": """\
                from contextlib import contextmanager

                from .base import SessionLocal


                @contextmanager
                def get_session():
                    with SessionLocal() as session:
                        with session.begin():
                            yield session
            """,
            "app/db/base.py": "from sqlalchemy.orm import sessionmaker\n\nSessionLocal = sessionmaker()\n",
        },
    )
    assert result.kind == "contextmanager"
    assert result.location == "app/db/session.py:7"
    assert values(result) == (True, True, True)
    assert "app/db/session.py:9: session.begin() commits when the block succeeds" in result.commits_on_exit.evidence
    assert "app/db/base.py:3" in result.closes.evidence


def test_helper_composed_of_another_helper(tmp_path: Path) -> None:
    result = analyse(
        tmp_path,
        "core.tools.session_scope",
        **{
            "core/__init__.py": "",
            "core/db.py": SEED_000_DB,
            "core/tools.py": """\
                from contextlib import contextmanager

                from core.db import get_db_session_ctx


                @contextmanager
                def session_scope():
                    with get_db_session_ctx() as session:
                        yield session
            """,
        },
    )
    assert values(result) == (True, True, True)
    assert "core/tools.py:8: with get_db_session_ctx() as session: core/db.py:28" in result.commits_on_exit.evidence


def test_factory_returning_a_sessionmaker_call(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        def get_session():
            return SessionLocal()
        """,
        name="get_session",
    )
    assert result.kind == "factory"
    assert values(result) == (False, False, True)


# -- swallowing, partial paths and give-ups -----------------------------------------------------


def test_helper_that_swallows_exceptions(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        @contextmanager
        def helper():
            session = SessionLocal()
            try:
                yield session
                session.commit()
            except Exception:
                session.rollback()
            finally:
                session.close()
        """,
    )
    assert values(result) == (True, True, True)
    assert "does not re-raise: the helper SWALLOWS the caller's exception" in result.rolls_back_on_error.evidence
    assert "not safe to substitute" in result.rolls_back_on_error.evidence
    assert result.propagates_errors == Fact(
        False, "swallows the caller's exception: core/db.py:15: `except Exception` does not re-raise"
    )


def test_handler_that_raises_something_else_is_noted(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        @contextmanager
        def helper():
            with SessionLocal() as session:
                try:
                    yield session
                except Exception as exc:
                    session.rollback()
                    raise RuntimeError("db") from exc
        """,
    )
    assert values(result) == (False, True, True)
    assert "raises RuntimeError(...) instead of the caller's exception" in result.rolls_back_on_error.evidence
    assert result.propagates_errors == Fact(
        False, "replaces the caller's exception: core/db.py:16: `except Exception` raises RuntimeError(...) instead"
    )


# -- does the caller's exception reach the caller unchanged? ------------------------------------

PROPAGATION_HANDLER = """
    @contextmanager
    def helper():
        session = SessionLocal()
        try:
            yield session
            session.commit()
        except Exception as exc:
            session.rollback()
            {raise_}
        finally:
            session.close()
"""


@pytest.mark.parametrize(
    ("raise_", "expected"),
    [
        ("raise", Fact(True, "core/db.py:17: re-raises")),
        ("raise exc", Fact(True, "core/db.py:17: re-raises")),
        ("raise exc from None", Fact(True, "core/db.py:17: re-raises")),
        (
            "raise RuntimeError('db') from exc",
            Fact(False, "replaces the caller's exception: core/db.py:17: `except Exception` raises RuntimeError(...) instead"),
        ),
        (
            "raise RuntimeError('db')",
            Fact(False, "replaces the caller's exception: core/db.py:17: `except Exception` raises RuntimeError(...) instead"),
        ),
        (
            "if exc.args:\n                raise",
            Fact(False, "swallows the caller's exception: core/db.py:15: `except Exception` may not re-raise"),
        ),
    ],
    ids=["bare", "same-name", "same-name-from", "wraps", "replaces", "sometimes"],
)
def test_propagation_through_an_except(tmp_path: Path, raise_: str, expected: Fact) -> None:
    result = sync_helper(tmp_path, PROPAGATION_HANDLER.format(raise_=raise_))
    assert result.propagates_errors == expected
    assert result.rolls_back_on_error.value is True


def test_helper_without_a_handler_propagates(tmp_path: Path) -> None:
    result = analyse(tmp_path, "src.db.get_session", **{"src/db.py": ASYNC_DB})
    assert result.propagates_errors.value is True
    assert result.analysed


def test_return_in_finally_swallows(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        @contextmanager
        def helper():
            session = SessionLocal()
            try:
                yield session
                session.commit()
            finally:
                session.close()
                return
        """,
    )
    assert result.propagates_errors == Fact(
        False, "swallows the caller's exception: core/db.py:17: `return` in `finally` discards the caller's exception"
    )


def test_helper_built_on_a_swallowing_helper_swallows(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        class Quiet:
            def __enter__(self):
                self.session = SessionLocal()
                return self.session

            def __exit__(self, exc_type, exc, tb):
                self.session.close()
                return True


        @contextmanager
        def helper():
            with Quiet() as session:
                yield session
        """,
    )
    assert result.propagates_errors.value is False
    assert "core/db.py:21: with Quiet() as session: swallows the caller's exception: core/db.py:16: __exit__ returns True" in (
        result.propagates_errors.evidence
    )


def test_class_exit_that_passes_errors_on(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        class Tx:
            def __enter__(self):
                self.session = SessionLocal()
                return self.session

            def __exit__(self, exc_type, exc, tb):
                if exc_type is not None:
                    self.session.rollback()
                    return False
                self.session.commit()
                self.session.close()
        """,
        name="Tx",
    )
    assert result.propagates_errors.value is True
    assert "core/db.py:14: __exit__ returns nothing true" in result.propagates_errors.evidence


@pytest.mark.parametrize(
    ("returned", "value", "evidence"),
    [
        ("raise RuntimeError('db') from exc", False,
         "replaces the caller's exception: core/db.py:17: __exit__ raises RuntimeError(...) instead"),
        ("return self.quiet", None, "may swallow the caller's exception: core/db.py:17: __exit__ returns self.quiet"),
    ],
    ids=["raises-another", "returns-unknown"],
)
def test_class_exit_that_may_not_pass_errors_on(tmp_path: Path, returned: str, value: bool | None, evidence: str) -> None:
    body = f"""
        class Tx:
            def __enter__(self):
                self.session = SessionLocal()
                return self.session

            def __exit__(self, exc_type, exc, tb):
                self.session.close()
                if exc is not None:
                    {returned}
        """
    result = sync_helper(tmp_path, body, name="Tx")
    assert result.propagates_errors.value is value
    assert result.propagates_errors.evidence.startswith(evidence)


def test_sessionmaker_and_begin_propagate(tmp_path: Path) -> None:
    maker = analyse(tmp_path, "src.db.async_session", **{"src/db.py": ASYNC_DB})
    begun = analyse_factory_call(ProjectIndex(tmp_path), "src.db.async_session", "begin")
    assert (maker.propagates_errors.value, begun.propagates_errors.value) == (True, True)
    assert "re-raises the caller's exception" in begun.propagates_errors.evidence


def test_narrow_handler_rolls_back_only_some_errors(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        from sqlalchemy.exc import SQLAlchemyError

        @contextmanager
        def helper():
            session = SessionLocal()
            try:
                yield session
                session.commit()
            except SQLAlchemyError:
                session.rollback()
                raise
            finally:
                session.close()
        """,
    )
    assert values(result) == (True, None, True)
    assert "only on some paths" in result.rolls_back_on_error.evidence


def test_conditional_commit_and_close_outside_finally(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        import os

        @contextmanager
        def helper():
            session = SessionLocal()
            yield session
            if os.environ.get("AUTOCOMMIT"):
                session.commit()
            session.close()
        """,
    )
    assert values(result) == (None, False, None)


def test_async_session_begin_inside_the_helper(tmp_path: Path) -> None:
    source = """\
        from contextlib import asynccontextmanager

        from sqlalchemy.ext.asyncio import AsyncSession


        @asynccontextmanager
        async def helper(engine):
            async with AsyncSession(engine) as session, session.begin():
                yield session
    """
    result = analyse(tmp_path, "src.db.helper", **{"src/db.py": source})
    assert values(result) == (True, True, True)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            """
            def make_helper():
                return None

            helper = make_helper()
            """,
            "helper is the result of make_helper()",
        ),
        (
            """
            from contextlib import nullcontext as helper
            """,
            "defined in an installed package (contextlib)",
        ),
        (
            """
            import functools

            @functools.lru_cache
            def helper():
                yield SessionLocal()
            """,
            "decorator @functools.lru_cache (functools.lru_cache)",
        ),
        (
            """
            async def helper():
                async with SessionLocal() as session:
                    yield session
            """,
            "generator without @contextmanager",
        ),
        (
            """
            from contextlib import asynccontextmanager

            @asynccontextmanager
            def helper():
                yield SessionLocal()
            """,
            "is not one sessionfix can follow",
        ),
    ],
    ids=["result-of-a-call", "installed-package", "unknown-decorator", "undecorated-generator", "sync-def-async-cm"],
)
def test_helpers_it_cannot_analyse(tmp_path: Path, body: str, reason: str) -> None:
    result = sync_helper(tmp_path, body)
    assert result.kind == "unknown"
    assert values(result) == (None, None, None)
    assert reason in result.closes.evidence


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (
            """
            @contextmanager
            def helper():
                for session in [SessionLocal()]:
                    yield session
            """,
            "the yield is inside a loop",
        ),
        (
            """
            @contextmanager
            def helper():
                yield SessionLocal()
            """,
            "yields SessionLocal(), not a session held in a name",
        ),
        (
            """
            @contextmanager
            def helper():
                session = SessionLocal()
                try:
                    yield session
                except Exception:
                    yield session
            """,
            "has 2 yields",
        ),
    ],
    ids=["yield-in-loop", "unnamed-session", "two-yields"],
)
def test_generator_shapes_it_cannot_follow(tmp_path: Path, body: str, reason: str) -> None:
    result = sync_helper(tmp_path, body)
    assert result.kind == "contextmanager"
    assert values(result) == (None, None, None)
    assert reason in result.commits_on_exit.evidence


def test_helper_that_refers_to_itself_does_not_loop(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        @contextmanager
        def helper():
            with helper() as session:
                yield session
        """,
    )
    assert values(result) == (None, None, None)
    assert "defined in terms of itself" in result.closes.evidence


# -- describe ----------------------------------------------------------------------------------


def test_describe_rows(tmp_path: Path) -> None:
    result = analyse(tmp_path, "src.db.get_session", **{"src/db.py": ASYNC_DB})
    rows = describe(result)
    assert [row[:2] for row in rows] == [
        ("kind", "asynccontextmanager"),
        ("commits on exit", "no"),
        ("rolls back on error", "no"),
        ("closes", "yes"),
        ("re-raises errors", "yes"),
    ]
    assert rows[0][2] == "src/db.py:10"
    assert rows[3][2] == result.closes.evidence


def test_describe_unknown(tmp_path: Path) -> None:
    rows = describe(analyse(tmp_path, "src.db.missing", **{"src/db.py": ASYNC_DB}))
    assert rows[0] == ("kind", "unknown", "-")
    assert {row[1] for row in rows[1:]} == {"unknown"}
    assert "src/db.py defines no missing" in rows[1][2]


# -- names are resolved, never read as text ------------------------------------------------------


def test_decorator_and_factory_through_module_attributes(tmp_path: Path) -> None:
    source = """\
        import contextlib

        import sqlalchemy.orm as orm

        Maker = orm.sessionmaker()


        @contextlib.contextmanager
        def helper():
            with Maker() as session:
                try:
                    yield session
                except BaseException:
                    session.rollback()
                    raise
                else:
                    session.commit()
    """
    result = analyse(tmp_path, "core.db.helper", **{"core/__init__.py": "", "core/db.py": source})
    assert result.kind == "contextmanager"
    assert values(result) == (True, True, True)
    assert "session.commit() in `else` after the yield" in result.commits_on_exit.evidence


def test_a_local_function_named_contextmanager_is_not_contextlibs(tmp_path: Path) -> None:
    source = """\
        from sqlalchemy.orm import sessionmaker

        SessionLocal = sessionmaker()


        def contextmanager(fn):
            return fn


        @contextmanager
        def helper():
            session = SessionLocal()
            try:
                yield session
            finally:
                session.close()
    """
    result = analyse(tmp_path, "core.db.helper", **{"core/__init__.py": "", "core/db.py": source})
    assert result.kind == "unknown"
    assert "(core.db.contextmanager) on def helper is not one sessionfix can follow" in result.closes.evidence


def test_a_name_bound_twice_is_ambiguous(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        def contextmanager(fn):
            return fn

        @contextmanager
        def helper():
            yield SessionLocal()
        """,
    )
    assert result.kind == "unknown"
    assert "@contextmanager (unresolved)" in result.closes.evidence


def test_a_sessionmaker_lookalike_is_not_a_sessionmaker(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        def sessionmaker_like():
            return None

        helper = sessionmaker_like()
        """,
    )
    assert result.kind == "unknown"


def test_class_whose_enter_returns_itself_is_not_followed(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        class Unit:
            def __enter__(self):
                self.session = SessionLocal()
                return self

            def __exit__(self, exc_type, exc, tb):
                self.session.close()
        """,
        name="Unit",
    )
    assert result.kind == "class"
    assert values(result) == (None, None, None)
    assert "returns the helper object itself" in result.closes.evidence


def test_with_an_object_that_is_not_a_call_is_undecided(tmp_path: Path) -> None:
    result = sync_helper(
        tmp_path,
        """
        SHARED = SessionLocal()

        @contextmanager
        def helper():
            with SHARED as session:
                yield session
        """,
    )
    assert values(result) == (None, None, None)
    assert "cannot tell what SHARED does when its block ends" in result.closes.evidence


def test_a_module_is_not_a_helper(tmp_path: Path) -> None:
    result = analyse(tmp_path, "core.db", **{"core/__init__.py": "", "core/db.py": SEED_000_DB})
    assert result.kind == "unknown"
    assert "core.db is a module, not a session helper" in result.closes.evidence


def test_results_are_cached_per_index(tmp_path: Path) -> None:
    analyse(tmp_path, "src.db.get_session", **{"src/db.py": ASYNC_DB})
    index = ProjectIndex(tmp_path)
    first = analyse_helper(index, "src.db.get_session")
    assert analyse_helper(index, "src.db.get_session") is first
    assert analyse_helper(ProjectIndex(tmp_path), "src.db.get_session") == first
