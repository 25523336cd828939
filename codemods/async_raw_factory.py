"""SF010 async-raw-factory: `async with async_session() as s:` -> `async with <async-context>() as s:`."""

from __future__ import annotations

import textwrap

import libcst as cst

from sessionfix.codemods.with_raw_factory import WithRawFactory
from sessionfix.model import Applicability
from sessionfix.rule import Expect, ImportPlan, Invalid, Valid

SAFE, UNSAFE, REPORT = Applicability.SAFE, Applicability.UNSAFE, Applicability.REPORT

#: seed 002's src/db.py: a raw async_sessionmaker and a helper that only closes
CLOSING_DB = textwrap.dedent(
    """\
    from contextlib import asynccontextmanager

    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    async_session = async_sessionmaker(create_async_engine("sqlite+aiosqlite://"))


    @asynccontextmanager
    async def get_session():
        async with async_session() as session:
            yield session
    """
)
CLOSING_PROJECT = {
    "pyproject.toml": '[tool.sessionfix]\nasync-context = "src.db.get_session"\nraw-factories = ["src.db.async_session"]\n',
    "src/__init__.py": "",
    "src/db.py": CLOSING_DB,
}


class AsyncRawFactory(WithRawFactory):
    """
    ## What it does
    Replaces a raw async session factory used as a context manager (`async with async_session()
    as db:`) by the project's async helper (`async with get_session() as db:`), then removes the
    `await db.commit()` and `await db.rollback()` calls the helper makes redundant. What the
    helper does is read from its definition (`sessionfix helpers` shows it), never assumed.

    ## Why is this bad?
    A raw `async_sessionmaker` is a second, unmanaged way to open sessions: it skips whatever the
    project's helper guarantees (commit, rollback, close, logging), and an audit has to find every
    such block by hand (seed 002: twenty files, 500 errors in production).

    ## Example
    {example}

    ## Fix safety
    An `AsyncSession`'s context manager only closes. When the helper also only closes, the swap
    changes nothing and every `commit()` stays: *safe*. When the helper commits on a normal exit,
    the swap is *safe* only if every normal path out of the block already ends with `commit()` or
    `rollback()` and touches the database no more; then a `commit()` that is the last statement on
    its path goes, and a `rollback()` in an `except` that re-raises goes only if the helper rolls
    back on error. A block that can leave work uncommitted (a write, a read that loads objects, a
    call that takes the session) would now be committed and its objects expired: *unsafe*. A
    helper whose exit cannot be analysed makes the swap and every removal *unsafe*, with the
    reason; so does one that swallows or replaces the block's exceptions (an `except` that does
    not re-raise, `raise X from e`), which would hide them from the caller. A sync
    `@contextmanager` helper, a call with arguments, a helper name already taken, or a helper
    the project model cannot import is *reported*. Left alone: the helper's own
    body, a block that yields its session (a FastAPI dependency is itself a provider), and a raw
    factory imported under the helper's name (SF011 rewrites those).
    """

    CODE = "SF010"
    NAME = "async-raw-factory"
    SUMMARY = "Use the project's async session helper instead of a raw factory in `async with`"
    APPLICABILITIES = (SAFE, UNSAFE, REPORT)
    ORDER = 22

    IS_ASYNC = True

    def helper_name(self) -> str | None:
        return self.settings.async_context

    def option_name(self) -> str:
        return "async-context"

    def _consider(self, node: cst.With, position: int, call: cst.Call) -> None:
        helper = self.helper_name()
        if helper is not None:
            problem = self._helper_problem(helper)
            if problem is not None:
                raw = cst.Module([]).code_for_node(call.func)
                self.finding(call, f"{raw}() is a raw session factory, but {problem}", category="raw-factory")
                return
        super()._consider(node, position, call)

    def plan_import(self, site: cst.CSTNode, raw_func: cst.BaseExpression, helper: str) -> ImportPlan | str:
        """`database.async_session()` -> `database.get_session()` when `database` is the helper's
        module: the file keeps naming things its own way, and needs no new import."""
        module, _, name = helper.rpartition(".")
        if isinstance(raw_func, cst.Attribute):
            base = raw_func.value
            if self.canonical_names(base) == {self.project.canonical(module)}:
                return ImportPlan(f"{cst.Module([]).code_for_node(base)}.{name}", module, name, needed=False)
        return super().plan_import(site, raw_func, helper)

    def leave_With(self, original_node: cst.With, updated_node: cst.With) -> cst.With:
        plan = self._plans.get(original_node)
        if plan is None or "." not in plan.replacement:
            return super().leave_With(original_node, updated_node)
        call = updated_node.items[-1].item
        assert isinstance(call, cst.Call) and isinstance(call.func, cst.Attribute)
        new_call = call.with_changes(func=call.func.with_changes(attr=cst.Name(plan.replacement.rpartition(".")[2])))
        return updated_node.with_changes(items=[*updated_node.items[:-1], updated_node.items[-1].with_changes(item=new_call)])

    def _helper_problem(self, helper: str) -> str | None:
        """Why `async with <helper>()` cannot be written here, or None."""
        module, _, name = helper.rpartition(".")
        found = self.project.lookup(module, name)
        if found.status != "defined" and not (found.module is not None and found.module.status == "environment"):
            return f"the project model cannot resolve {helper} ({found.status}); fix async-context"
        kind = self.helper_semantics(helper).kind
        if kind == "contextmanager":
            return f"{helper} is a sync @contextmanager, which `async with` cannot enter"
        return None

    INVALID = [
        Invalid(
            id="commit-at-end",
            before="""\
                from core.db import async_session


                async def save(item):
                    async with async_session() as session:
                        session.add(item)
                        await session.commit()
                """,
            after="""\
                from core.db import get_async_session


                async def save(item):
                    async with get_async_session() as session:
                        session.add(item)
                """,
            expect=(
                Expect("SF010", "safe", "ends with commit/rollback"),
                Expect("SF010", "safe", "removed session.commit()"),
                Expect("SF011", "safe", "removed the import of async_session"),
            ),
        ),
        Invalid(
            id="reraising-except-goes",
            before="""\
                from core.db import async_session


                async def strict(item):
                    async with async_session() as db:
                        try:
                            db.add(item)
                            await db.commit()
                        except Exception:
                            await db.rollback()
                            raise
                """,
            after="""\
                from core.db import get_async_session


                async def strict(item):
                    async with get_async_session() as db:
                        db.add(item)
                """,
            expect=(
                Expect("SF010", "safe", "ends with commit/rollback"),
                Expect("SF010", "safe", "removed db.rollback()"),
                Expect("SF010", "safe", "only re-raised"),
                Expect("SF010", "safe", "removed db.commit()"),
                Expect("SF011", "safe", ""),
            ),
        ),
        Invalid(
            id="helper-that-only-closes-keeps-commit",
            before="""\
                from src.db import async_session


                async def mark_read(notification):
                    async with async_session() as db:
                        notification.read = True
                        db.add(notification)
                        await db.commit()
                """,
            after="""\
                from src.db import get_session


                async def mark_read(notification):
                    async with get_session() as db:
                        notification.read = True
                        db.add(notification)
                        await db.commit()
                """,
            expect=(Expect("SF010", "safe", "does not commit on exit"), Expect("SF011", "safe", "")),
            files=CLOSING_PROJECT,
        ),
        Invalid(
            id="module-attribute-keeps-its-spelling",
            before="""\
                import src.db as database


                async def mark_read(notification):
                    async with database.async_session() as db:
                        notification.read = True
                        await db.commit()
                """,
            after="""\
                import src.db as database


                async def mark_read(notification):
                    async with database.get_session() as db:
                        notification.read = True
                        await db.commit()
                """,
            expect=(Expect("SF010", "safe", "does not commit on exit"),),
            files=CLOSING_PROJECT,
        ),
        Invalid(
            id="writes-without-commit-is-unsafe",
            before="""\
                from core.db import async_session


                async def draft(item):
                    async with async_session() as session:
                        session.add(item)
                """,
            after=None,
            expect=(Expect("SF010", "report", "would commit it on exit"),),
        ),
        Invalid(
            id="writes-without-commit-with-unsafe",
            before="""\
                from core.db import async_session


                async def draft(item):
                    async with async_session() as session:
                        session.add(item)
                """,
            after="""\
                from core.db import get_async_session


                async def draft(item):
                    async with get_async_session() as session:
                        session.add(item)
                """,
            expect=(Expect("SF010", "unsafe", "would commit it on exit"), Expect("SF011", "safe", "")),
            options={"unsafe": True},
        ),
        Invalid(
            id="helper-it-cannot-analyse",
            before="""\
                from db import async_session


                async def save(item):
                    async with async_session() as session:
                        session.add(item)
                        await session.commit()
                """,
            after="""\
                from db import get_session


                async def save(item):
                    async with get_session() as session:
                        session.add(item)
                """,
            expect=(
                Expect("SF010", "unsafe", "could not be analysed"),
                Expect("SF010", "unsafe", "removed session.commit()"),
                Expect("SF011", "safe", ""),
            ),
            files={
                "pyproject.toml": '[tool.sessionfix]\nasync-context = "db.get_session"\nraw-factories = ["db.async_session"]\n',
                "db.py": "from sqlalchemy.ext.asyncio import async_sessionmaker\n\nfrom vendor import make_helper\n\n"
                         "async_session = async_sessionmaker()\nget_session = make_helper(async_session)\n",
            },
            options={"unsafe": True},
        ),
        Invalid(
            id="swallowing-helper-is-unsafe",
            before="""\
                from src.db import async_session


                async def save(item):
                    async with async_session() as session:
                        session.add(item)
                        await session.commit()
                """,
            after=None,
            expect=(Expect("SF010", "report", "swallows the caller's exception: src/db.py:14"),),
            files={
                **CLOSING_PROJECT,
                "src/db.py": textwrap.dedent(
                    """\
                    from contextlib import asynccontextmanager

                    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

                    async_session = async_sessionmaker(create_async_engine("sqlite+aiosqlite://"))


                    @asynccontextmanager
                    async def get_session():
                        async with async_session() as session:
                            try:
                                yield session
                                await session.commit()
                            except Exception:
                                await session.rollback()
                    """
                ),
            },
        ),
        Invalid(
            id="sync-helper-is-reported",
            before="""\
                from core.db import async_session


                async def save(item):
                    async with async_session() as session:
                        session.add(item)
                        await session.commit()
                """,
            after=None,
            expect=(Expect("SF010", "report", "sync @contextmanager"),),
            options={"async_context": "core.db.get_db_session_ctx"},
        ),
    ]
    VALID = [
        Valid(
            id="already-the-helper",
            code="""\
                from core.db import get_async_session


                async def save(item):
                    async with get_async_session() as session:
                        session.add(item)
                """,
        ),
        Valid(
            id="parameter-shadows-factory",
            code="""\
                async def save(async_session, item):
                    async with async_session() as session:
                        session.add(item)
                """,
        ),
        Valid(
            id="session-passed-in-by-the-caller",
            code="""\
                from sqlalchemy.ext.asyncio import AsyncSession


                async def save(session: AsyncSession, item) -> None:
                    session.add(item)
                    await session.commit()
                """,
        ),
        Valid(
            id="fastapi-yield-dependency",
            code="""\
                from src.db import async_session


                async def get_db():
                    async with async_session() as db:
                        try:
                            yield db
                        finally:
                            await db.close()
                """,
            files=CLOSING_PROJECT,
        ),
        Valid(
            id="raw-factory-inside-the-helper-itself",
            code=CLOSING_DB,
            files={
                "pyproject.toml": '[tool.sessionfix]\nasync-context = "app.get_session"\n'
                                  'raw-factories = ["app.async_session"]\n',
            },
        ),
    ]
