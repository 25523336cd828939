"""Write a synthetic project for the benchmark: a few files with session anti-patterns, many without.

The matching files follow the two audits in /work/shared/seeds (raw `init.Session` and
`core.db.async_session` factories, per-row commits, swallowed errors, bare calls, a `None`
fallback). The rest is ordinary application code; about a fifth of it uses the word "session" in
ways sessionfix must leave alone (`requests.Session`, `aiohttp.ClientSession`, SQLAlchemy type
hints, analytics "sessions"), so a prefilter meets realistic near-misses.

Every file is generated from its own `random.Random` seeded with (seed, kind, index), and its
path depends only on those too. So the same seed gives the same bytes, and a tree with more
non-matching files (`write_tree(..., plain=2 * n)`) holds the smaller one's files unchanged.

    python bench/generate.py OUT_DIR --files 5000 --ratio 0.03 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

#: written at the root of every generated tree; run.py reads it back for --tree and --double
MANIFEST = "bench-manifest.json"

PYPROJECT = """\
[project]
name = "bench-app"
version = "0.1.0"
requires-python = ">=3.10"
dependencies = [
    "sqlalchemy>=2.0",
    "aiosqlite>=0.20",
    "requests>=2.31",
    "aiohttp>=3.9",
    "httpx>=0.27",
    "pydantic>=2.5",
    "aiogram>=3.4",
]

[tool.sessionfix]
sync-context = "core.db.get_db_session_ctx"
sync-factory = "core.db.get_session"
async-context = "core.db.get_async_session"
raw-factories = ["init.Session", "core.db.async_session"]
"""

CORE_DB = '''\
"""Database engine, session factories and the helpers every caller should use."""

from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager, contextmanager
from typing import AsyncIterator, Iterator

from sqlalchemy import create_engine
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

logger = logging.getLogger(__name__)

DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///app.db")
ASYNC_DATABASE_URL = os.environ.get("ASYNC_DATABASE_URL", "sqlite+aiosqlite:///app.db")

_engine: Engine | None = None
_SessionFactory: sessionmaker[Session] | None = None


def get_engine() -> Engine:
    """Get or create the database engine."""
    global _engine
    if _engine is None:
        _engine = create_engine(DATABASE_URL, echo=False, pool_pre_ping=True)
    return _engine


def get_session_factory() -> sessionmaker[Session]:
    """Get or create the session factory."""
    global _SessionFactory
    if _SessionFactory is None:
        _SessionFactory = sessionmaker(bind=get_engine())
    return _SessionFactory


def get_session() -> Session:
    """Get a new database session (caller must close!)."""
    factory = get_session_factory()
    return factory()


@contextmanager
def get_db_session_ctx() -> Iterator[Session]:
    """Context manager for database sessions (auto commit/rollback/close)."""
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


async_engine = create_async_engine(ASYNC_DATABASE_URL, pool_pre_ping=True)
async_session = async_sessionmaker(async_engine, expire_on_commit=False)


@asynccontextmanager
async def get_async_session() -> AsyncIterator[AsyncSession]:
    """Async context manager: commits on success, rolls back on error, always closes."""
    async with async_session() as session:
        try:
            yield session
            await session.commit()
        except Exception:
            await session.rollback()
            raise
'''

MODELS = '''\
"""ORM models shared by the whole application."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    userID: Mapped[int] = mapped_column(unique=True)
    telegramID: Mapped[int | None] = mapped_column(default=None)
    email: Mapped[str] = mapped_column(String(255), default="")
    balance: Mapped[float] = mapped_column(default=0.0)
    status: Mapped[str] = mapped_column(String(32), default="active")


class Notification(Base):
    __tablename__ = "notifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    userID: Mapped[int] = mapped_column(ForeignKey("users.userID"))
    user_id: Mapped[str] = mapped_column(String(64), default="")
    text: Mapped[str] = mapped_column(default="")
    is_read: Mapped[bool] = mapped_column(default=False)


class Order(Base):
    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    amount: Mapped[float] = mapped_column(default=0.0)
    status: Mapped[str] = mapped_column(String(32), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=datetime.utcnow)


class AuditLog(Base):
    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    action: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(default="{}")
'''

NOUNS = (
    "user", "order", "invoice", "payment", "account", "product", "customer", "report", "event",
    "message", "task", "shipment", "ticket", "profile", "plan", "subscription", "campaign",
    "ledger", "wallet", "referral", "bonus", "partner", "document", "template", "webhook", "batch",
    "metric", "balance", "transfer", "coupon", "review", "address", "warehouse", "carrier",
    "refund", "quote", "lead", "contract", "asset", "budget", "forecast", "schedule", "region",
)
ROLES = (
    "service", "handler", "utils", "helpers", "schemas", "tasks", "jobs", "views", "api",
    "client", "repository", "validators", "serializers", "formatters", "parsers", "exporter",
    "importer", "scheduler", "processor", "manager", "builder", "mapper", "registry", "rules",
)
VERBS = (
    "load", "build", "parse", "compute", "render", "validate", "normalize", "fetch", "sync",
    "export", "merge", "split", "filter", "group", "score", "rank", "resolve", "schedule",
    "dispatch", "format", "encode", "decode", "collect", "summarize", "refresh", "archive",
    "apply", "reconcile", "estimate", "prepare",
)
ATTRS = (
    "id", "name", "status", "amount", "created_at", "updated_at", "owner_id", "code", "priority",
    "total", "currency", "country", "email", "title", "kind", "weight", "score", "level", "tags",
)
QUALS = (
    "pending", "active", "daily", "monthly", "legacy", "remote", "cached", "raw", "clean",
    "primary", "stale", "failed", "recent", "visible", "expired",
)
TOP_PACKAGES = (
    "api", "services", "handlers", "background", "sync_system", "mlm_system", "utils", "reports",
    "integrations", "billing", "notifications", "analytics", "admin", "domain", "workers",
)
SUB_PACKAGES = (
    "v1", "v2", "internal", "public", "common", "legacy", "adapters", "tasks", "routes", "schemas",
    "helpers", "storage", "pipelines", "exporters", "importers", "checks", "views", "clients",
)
EXCEPTIONS = ("KeyError", "ValueError", "TypeError", "LookupError", "OSError", "RuntimeError")
_STDLIB = frozenset({
    "__future__", "asyncio", "collections", "csv", "dataclasses", "datetime", "decimal", "enum",
    "functools", "hashlib", "itertools", "json", "logging", "math", "os", "pathlib", "statistics",
    "time", "typing", "uuid",
})
_LOCAL = frozenset({"core", "core.db", "init", "models"})


def plural(noun: str) -> str:
    if noun.endswith(("s", "x", "ch", "sh")):
        return f"{noun}es"
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return f"{noun[:-1]}ies"
    return f"{noun}s"


def camel(*words: str) -> str:
    return "".join(part.capitalize() for word in words for part in word.split("_"))


# -- a file being written ---------------------------------------------------------------------


@dataclass
class _Scope:
    """Names a function body can refer to, by what they hold."""

    seqs: list[str] = field(default_factory=list)
    maps: list[str] = field(default_factory=list)
    nums: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    item: str | None = None
    in_loop: bool = False
    counter: int = 0

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}_{self.counter}" if self.counter > 1 else stem

    def child(self, *, item: str | None = None, in_loop: bool | None = None) -> _Scope:
        return _Scope(list(self.seqs), list(self.maps), list(self.nums), list(self.texts),
                      item if item is not None else self.item,
                      self.in_loop if in_loop is None else in_loop, self.counter)


class _File:
    """Lines of one module plus the imports they need, rendered isort-style."""

    def __init__(self, rng: random.Random, noun: str) -> None:
        self.rng = rng
        self.noun = noun
        self.nouns = plural(noun)
        self.record = camel(noun, "record")
        self.has_record = False
        self.blocks: list[list[str]] = []
        self.imports: dict[str, set[str]] = {}  # module -> names ("" for `import module`)
        self.lines = 0

    def need(self, module: str, *names: str) -> None:
        self.imports.setdefault(module, set()).update(names or ("",))

    def add(self, block: list[str]) -> None:
        self.blocks.append(block)
        self.lines += len(block) + 2

    def pick(self, options: tuple[str, ...] | list[str]) -> str:
        return self.rng.choice(options)

    def render(self, docstring: str) -> str:
        head = [f'"""{docstring}"""', ""]
        groups: list[list[str]] = [[], [], []]
        for module in sorted(self.imports, key=lambda m: (m != "__future__", m)):
            names = sorted(self.imports[module])
            top = module.split(".")[0]
            group = groups[0] if top in _STDLIB else groups[2] if module in _LOCAL else groups[1]
            if "" in names:
                group.append(f"import {module}")
                names.remove("")
            if names:
                group.append(f"from {module} import {', '.join(names)}")
        for group in groups:
            if group:
                head.extend(group)
                head.append("")
        text = "\n".join(head) + "\n"
        body = "\n\n\n".join("\n".join(block) for block in self.blocks)
        return text + body + "\n"


def _indent(lines: list[str], level: int = 1) -> list[str]:
    pad = "    " * level
    return [pad + line if line else line for line in lines]


# -- statements -------------------------------------------------------------------------------


def _num_expr(f: _File, s: _Scope) -> str:
    rng = f.rng
    options: list[str] = [f"{rng.randint(2, 500)}"]
    if s.seqs:
        seq = rng.choice(s.seqs)
        attr = f.pick(("amount", "total", "weight", "score", "priority"))
        options += [f"len({seq})", f"sum(item.{attr} for item in {seq})",
                    f"min((item.{attr} for item in {seq}), default=0)"]
    if s.nums:
        num = rng.choice(s.nums)
        options += [f"{num} + {rng.randint(1, 9)}", f"max({num}, {rng.randint(0, 50)})",
                    f"round({num} * {rng.choice((0.5, 1.1, 1.25, 2.0))}, 2)", f"{num} // 2 + 1"]
    if s.maps:
        options.append(f'int({rng.choice(s.maps)}.get("{f.pick(ATTRS)}", {rng.randint(0, 10)}))')
    if s.item:
        options.append(f"{s.item}.{f.pick(('amount', 'total', 'score', 'weight'))} or 0")
    return rng.choice(options)


def _cond(f: _File, s: _Scope) -> str:
    rng = f.rng
    options = [f"{_num_expr(f, s)} > {rng.randint(0, 100)}"]
    if s.seqs:
        options.append(f"not {rng.choice(s.seqs)}")
    if s.maps:
        options.append(f'"{f.pick(ATTRS)}" in {rng.choice(s.maps)}')
    if s.texts:
        options.append(f'{rng.choice(s.texts)}.startswith("{f.pick(QUALS)}")')
    if s.item:
        options += [f"{s.item}.{f.pick(ATTRS)} is None",
                    f'{s.item}.status == "{f.pick(QUALS)}"']
    return rng.choice(options)


def _assign(f: _File, s: _Scope) -> list[str]:
    rng = f.rng
    kind = rng.choice(("num", "num", "seq", "map", "text"))
    if kind == "seq" and s.seqs:
        name = s.fresh(f"{f.pick(QUALS)}_{f.nouns}")
        seq = rng.choice(s.seqs)
        attr = f.pick(ATTRS)
        value = rng.choice((
            f"[item for item in {seq} if item.{attr} is not None]",
            f"sorted({seq}, key=lambda item: item.{attr}, reverse={rng.choice(('True', 'False'))})",
            f'[item for item in {seq} if item.status == "{f.pick(QUALS)}"]',
            f"list({seq})[:{rng.randint(5, 200)}]",
        ))
        s.seqs.append(name)
        return [f"{name} = {value}"]
    if kind == "map" and s.seqs:
        name = s.fresh(f"{f.noun}_by_{f.pick(('id', 'code', 'status', 'owner'))}")
        seq = rng.choice(s.seqs)
        if rng.random() < 0.4:
            f.need("collections", "defaultdict")
            it = s.fresh("entry")
            s.maps.append(name)
            return [f"{name}: dict[str, list] = defaultdict(list)", f"for {it} in {seq}:",
                    f"    {name}[str({it}.{f.pick(ATTRS)})].append({it})"]
        if rng.random() < 0.5:
            f.need("collections", "Counter")
            value = f"Counter(item.{f.pick(ATTRS)} for item in {seq})"
        else:
            value = f"{{item.{f.pick(ATTRS)}: item for item in {seq}}}"
        s.maps.append(name)
        return [f"{name} = {value}"]
    if kind == "text":
        name = s.fresh(f"{f.pick(('label', 'key', 'summary', 'slug', 'digest'))}")
        expr = _num_expr(f, s)
        quote = "'" if '"' in expr else '"'  # no reused quotes inside f-strings before 3.12
        options = [f"f{quote}{f.noun}-{{{expr}}}{quote}"]
        if s.maps:
            f.need("json")
            options.append(f"json.dumps({rng.choice(s.maps)}, sort_keys=True, default=str)")
        if s.texts:
            text = rng.choice(s.texts)
            f.need("hashlib")
            options += [f"{text}.strip().lower()",
                        f'hashlib.sha256({text}.encode("utf-8")).hexdigest()[:{rng.randint(8, 16)}]']
        s.texts.append(name)
        return [f"{name} = {rng.choice(options)}"]
    name = s.fresh(f.pick(("total", "count", "limit", "offset", "threshold", "weight", "score")))
    value = _num_expr(f, s)
    s.nums.append(name)
    return [f"{name} = {value}"]


def _statement(f: _File, s: _Scope, depth: int) -> list[str]:
    rng = f.rng
    roll = rng.random()
    if depth < 2 and roll < 0.16:
        lines = [f"if {_cond(f, s)}:", *_indent(_block(f, s.child(), depth + 1, 1, 3))]
        if rng.random() < 0.3:
            lines += [f"elif {_cond(f, s)}:", *_indent(_block(f, s.child(), depth + 1, 1, 2))]
        if rng.random() < 0.4:
            lines += ["else:", *_indent(_block(f, s.child(), depth + 1, 1, 2))]
        return lines
    if depth < 2 and roll < 0.30 and s.seqs:
        item = s.fresh(f.noun)
        return [f"for {item} in {rng.choice(s.seqs)}:",
                *_indent(_block(f, s.child(item=item, in_loop=True), depth + 1, 1, 4))]
    if depth < 2 and roll < 0.38:
        exc = rng.sample(EXCEPTIONS, 2)
        handler = ["continue"] if s.in_loop else [rng.choice(("raise", "pass", "return None"))]
        f.need("logging")
        return ["try:", *_indent(_block(f, s.child(), depth + 1, 1, 3)),
                f"except ({exc[0]}, {exc[1]}) as exc:",
                f'    logger.warning("{f.pick(VERBS)} failed for %s: %s", {f.noun!r}, exc)',
                *_indent(handler)]
    if depth < 2 and roll < 0.40 and s.item:
        arms = rng.sample(QUALS, 2)
        return [f"match {s.item}.status:",
                f'    case "{arms[0]}":', *_indent(_block(f, s.child(), depth + 1, 1, 2), 2),
                f'    case "{arms[1]}" | "archived":', *_indent(_block(f, s.child(), depth + 1, 1, 2), 2),
                "    case _:", "        pass"]
    if roll < 0.50:
        f.need("logging")
        level = f.pick(("debug", "info", "info", "warning"))
        return [f'logger.{level}("{f.pick(VERBS)} %s {f.nouns}", {_num_expr(f, s)})']
    if roll < 0.55 and s.texts and depth == 0:
        f.need("pathlib", "Path")
        return [f'with open(Path("{f.pick(QUALS)}") / {rng.choice(s.texts)}, "a", encoding="utf-8") as fh:',
                f'    fh.write({rng.choice(s.texts)} + "\\n")']
    if roll < 0.58 and s.nums:
        num = rng.choice(s.nums)
        return [f"while {num} > {rng.randint(0, 20)}:", f"    {num} -= {rng.randint(1, 5)}"]
    return _assign(f, s)


def _block(f: _File, s: _Scope, depth: int, low: int, high: int) -> list[str]:
    lines: list[str] = []
    for _ in range(f.rng.randint(low, high)):
        lines += _statement(f, s, depth)
    return lines


def _returns(f: _File, s: _Scope) -> tuple[list[str], str]:
    rng = f.rng
    choice = rng.random()
    if choice < 0.3 and s.maps:
        return [f"return dict({rng.choice(s.maps)})"], "dict[str, Any]"
    if choice < 0.55 and s.seqs:
        return [f"return list({rng.choice(s.seqs)})"], "list[Any]"
    if choice < 0.7 and s.texts:
        return [f"return {rng.choice(s.texts)}"], "str"
    if s.nums:
        return [f"return {rng.choice(s.nums)}"], "float"
    return [], "None"


def _function(f: _File, name: str, *, method: bool = False, is_async: bool = False) -> list[str]:
    rng = f.rng
    f.need("typing", "Any")
    seq_type = f"list[{f.record}]" if f.has_record else "list[Any]"
    params: list[str] = ["self"] if method else []
    s = _Scope()
    s.seqs.append(f"{f.nouns}")
    params.append(f"{f.nouns}: {seq_type}")
    if rng.random() < 0.5:
        params.append(f"limit: int = {rng.choice((10, 50, 100, 500))}")
        s.nums.append("limit")
    if rng.random() < 0.4:
        params.append("options: dict[str, Any] | None = None")
    if rng.random() < 0.3:
        params.append('prefix: str = ""')
        s.texts.append("prefix")
    body: list[str] = []
    if rng.random() < 0.6:
        body += [f'"""{camel(f.pick(VERBS))} {f.pick(QUALS)} {f.nouns} for the {f.pick(ROLES)}."""']
    if "options: dict[str, Any] | None = None" in params:
        body.append("opts = dict(options or {})")
        s.maps.append("opts")
    if is_async:
        f.need("asyncio")
        body.append(f"await asyncio.sleep({rng.choice(('0', '0.01', '0.1'))})")
    body += _block(f, s, 0, 2, 7)
    tail, annotation = _returns(f, s)
    body += tail
    keyword = "async def" if is_async else "def"
    signature = f"{keyword} {name}({', '.join(params)}) -> {annotation}:"
    if len(signature) > 96:
        signature = f"{keyword} {name}(\n" + "".join(f"    {p},\n" for p in params) + f") -> {annotation}:"
    return [*signature.split("\n"), *_indent(body)]


# -- top-level blocks -------------------------------------------------------------------------


def _constants(f: _File) -> list[str]:
    f.need("logging")
    rng = f.rng
    lines = ["logger = logging.getLogger(__name__)", ""]
    for _ in range(rng.randint(1, 5)):
        name = f"{f.pick(QUALS).upper()}_{f.pick(ATTRS).upper()}_{rng.choice(('LIMIT', 'TTL', 'KEY', 'RATE'))}"
        value = rng.choice((str(rng.randint(1, 10_000)), f'"{f.noun}:{f.pick(QUALS)}"',
                            f"{rng.randint(1, 99) / 100}"))
        lines.append(f"{name} = {value}")
    if rng.random() < 0.4:
        f.need("typing", "Final")
        keys = ", ".join(f'"{q}"' for q in rng.sample(QUALS, 3))
        lines.append(f"ALLOWED_{f.noun.upper()}_STATES: Final = frozenset({{{keys}}})")
    return lines


def _dataclass(f: _File, name: str) -> list[str]:
    f.need("dataclasses", "dataclass")
    rng = f.rng
    frozen = "(frozen=True)" if rng.random() < 0.4 else ""
    lines = [f"@dataclass{frozen}", f"class {name}:", f'    """One {f.noun} as the {f.pick(ROLES)} sees it."""', "",
             "    id: int", "    status: str"]
    for attr in rng.sample(("amount", "total", "weight", "score", "priority"), rng.randint(1, 3)):
        lines.append(f"    {attr}: float = 0.0")
    if rng.random() < 0.5:
        f.need("dataclasses", "field")
        lines.append("    tags: list[str] = field(default_factory=list)")
    if rng.random() < 0.5:
        f.need("datetime", "datetime")
        lines.append("    created_at: datetime | None = None")
    if rng.random() < 0.6:
        lines += ["", "    @property", "    def is_open(self) -> bool:",
                  f'        return self.status in ("{f.pick(QUALS)}", "{f.pick(QUALS)}")']
    return lines


def _enum(f: _File) -> list[str]:
    f.need("enum", "Enum")
    members = f.rng.sample(QUALS, f.rng.randint(3, 6))
    return [f"class {camel(f.noun, 'state')}(str, Enum):", *(f'    {m.upper()} = "{m}"' for m in members)]


def _pydantic(f: _File) -> list[str]:
    f.need("pydantic", "BaseModel", "field_validator")
    attrs = f.rng.sample(("name", "email", "code", "currency", "country", "title"), 3)
    return [f"class {camel(f.noun, 'payload')}(BaseModel):",
            *(f"    {a}: str" for a in attrs),
            f"    amount: float = {f.rng.randint(0, 100)}.0", "",
            f'    @field_validator("{attrs[0]}")', "    @classmethod",
            f"    def _strip_{attrs[0]}(cls, value: str) -> str:",
            "        value = value.strip()", "        if not value:",
            f'            raise ValueError("{attrs[0]} must not be empty")', "        return value"]


def _service_class(f: _File) -> list[str]:
    rng = f.rng
    name = camel(f.noun, f.pick(ROLES))
    attrs = rng.sample(("limit", "timeout", "region", "currency", "retries", "batch_size"), rng.randint(2, 4))
    lines = [f"class {name}:", f'    """{camel(f.pick(VERBS))}s {f.nouns} for the {f.pick(ROLES)} layer."""', "",
             f"    def __init__(self, {', '.join(f'{a}: int = {rng.randint(1, 60)}' for a in attrs)}) -> None:",
             *(f"        self.{a} = {a}" for a in attrs),
             "        self._seen: set[int] = set()"]
    for _ in range(rng.randint(2, 6)):
        lines.append("")
        if rng.random() < 0.15:
            lines.append("    @staticmethod")
            lines += _indent(_function(f, f"{f.pick(VERBS)}_{f.pick(QUALS)}"))
        else:
            lines += _indent(_function(f, f"{f.pick(VERBS)}_{f.nouns}", method=True,
                                       is_async=rng.random() < 0.15))
    lines += ["", "    def __repr__(self) -> str:",
              f'        return f"{name}({", ".join(f"{a}={{self.{a}!r}}" for a in attrs)})"']
    return lines


def _requests_client(f: _File) -> list[str]:
    """Near-miss: `self.session = requests.Session()` and `with requests.Session() as session`."""
    f.need("requests")
    f.need("typing", "Any")
    name = camel(f.noun, "api_client")
    return [
        f"class {name}:",
        f'    """Talks to the {f.noun} partner API over one HTTP connection pool."""',
        "",
        "    def __init__(self, base_url: str, token: str, timeout: float = 10.0) -> None:",
        '        self.base_url = base_url.rstrip("/")',
        "        self.timeout = timeout",
        "        self.session = requests.Session()",
        '        self.session.headers.update({"Authorization": f"Bearer {token}"})',
        "",
        f"    def list_{f.nouns}(self, page: int = 1) -> list[dict[str, Any]]:",
        f'        response = self.session.get(f"{{self.base_url}}/{f.nouns}", params={{"page": page}}, timeout=self.timeout)',
        "        response.raise_for_status()",
        '        return response.json()["items"]',
        "",
        "    def close(self) -> None:",
        "        self.session.close()",
        "",
        "",
        f"def download_{f.noun}_export(url: str) -> bytes:",
        "    with requests.Session() as session:",
        "        session.headers[\"Accept\"] = \"text/csv\"",
        "        response = session.get(url, timeout=30)",
        "        response.raise_for_status()",
        "        return response.content",
    ]


def _aiohttp_fetch(f: _File) -> list[str]:
    """Near-miss: `async with aiohttp.ClientSession() as session`."""
    f.need("aiohttp")
    f.need("asyncio")
    f.need("typing", "Any")
    return [
        f"async def fetch_{f.noun}_pages(urls: list[str], concurrency: int = 4) -> list[dict[str, Any]]:",
        '    """Fetch every page, at most `concurrency` at a time."""',
        "    semaphore = asyncio.Semaphore(concurrency)",
        "    timeout = aiohttp.ClientTimeout(total=30)",
        "    async with aiohttp.ClientSession(timeout=timeout) as session:",
        "",
        "        async def one(url: str) -> dict[str, Any]:",
        "            async with semaphore, session.get(url) as response:",
        "                response.raise_for_status()",
        "                return await response.json()",
        "",
        "        return list(await asyncio.gather(*(one(url) for url in urls)))",
    ]


def _httpx_client(f: _File) -> list[str]:
    f.need("httpx")
    return [
        f"async def post_{f.noun}_event(url: str, payload: dict[str, object]) -> int:",
        "    async with httpx.AsyncClient(timeout=5.0) as client:",
        "        response = await client.post(url, json=payload)",
        "        return response.status_code",
    ]


def _typed_handlers(f: _File) -> list[str]:
    """Near-miss: an injected `sqlalchemy.orm.Session`, used but never created here."""
    f.need("sqlalchemy.orm", "Session")
    f.need("sqlalchemy", "select")
    f.need("models", "User", "Order")
    f.need("aiogram.types", "CallbackQuery")
    verb = f.pick(VERBS)
    return [
        f"async def handle_{verb}_{f.noun}(callback_query: CallbackQuery, session: Session, user: User) -> None:",
        '    """Session is injected by UserMiddleware; it commits and closes after the handler."""',
        "    orders = session.query(Order).filter_by(status=\"pending\").all()",
        "    if not orders:",
        f'        await callback_query.answer("no {f.nouns}")',
        "        return",
        "    for order in orders:",
        f"        order.status = \"{f.pick(QUALS)}\"",
        "    session.flush()",
        '    await callback_query.answer(f"{len(orders)} updated")',
        "",
        "",
        f"def find_{f.noun}_owner(session: Session, user_id: int) -> User | None:",
        "    return session.execute(select(User).where(User.userID == user_id)).scalar_one_or_none()",
    ]


def _analytics_sessions(f: _File) -> list[str]:
    """Near-miss: "session" as a domain word (browsing sessions)."""
    f.need("dataclasses", "dataclass")
    f.need("datetime", "datetime", "timedelta")
    return [
        "SESSION_TIMEOUT = timedelta(minutes=30)",
        'SESSION_COOKIE = "session_id"',
        "",
        "",
        "@dataclass",
        "class BrowsingSession:",
        "    session_id: str",
        "    started_at: datetime",
        "    last_seen: datetime",
        "    pages: int = 0",
        "",
        "",
        "def split_sessions(hits: list[tuple[str, datetime]]) -> list[BrowsingSession]:",
        '    """Group page hits into sessions separated by SESSION_TIMEOUT of inactivity."""',
        "    sessions: list[BrowsingSession] = []",
        "    for session_id, seen in sorted(hits, key=lambda hit: hit[1]):",
        "        current = sessions[-1] if sessions else None",
        "        if current is None or seen - current.last_seen > SESSION_TIMEOUT:",
        "            sessions.append(BrowsingSession(session_id, seen, seen, 1))",
        "        else:",
        "            current.last_seen = seen",
        "            current.pages += 1",
        "    return sessions",
    ]


_NEAR_MISSES: tuple[tuple[float, Callable[[_File], list[str]]], ...] = (
    (0.08, _requests_client),
    (0.05, _aiohttp_fetch),
    (0.03, _httpx_client),
    (0.07, _typed_handlers),
    (0.04, _analytics_sessions),
)


def _plain_blocks(f: _File, target: int) -> None:
    rng = f.rng
    f.add(_constants(f))
    if rng.random() < 0.7:
        f.has_record = True
        f.add(_dataclass(f, f.record))
    for chance, block in _NEAR_MISSES:
        if rng.random() < chance:
            f.add(block(f))
    while f.lines < target:
        roll = rng.random()
        if roll < 0.35:
            f.add(_service_class(f))
        elif roll < 0.45:
            f.add(_enum(f))
        elif roll < 0.52:
            f.add(_pydantic(f))
        else:
            f.add(_function(f, f"{f.pick(VERBS)}_{f.pick(QUALS)}_{f.nouns}", is_async=rng.random() < 0.1))


# -- session anti-patterns, in the audits' style ----------------------------------------------


def _with_raw(f: _File, n: str) -> list[str]:
    return [
        f"def notify_{n}_users(user_ids: list[int], text: str) -> int:",
        '    """Create one notification per user."""',
        "    created = 0",
        "    with Session() as session:",
        "        for user_id in user_ids:",
        "            notification = Notification(userID=user_id, text=text)",
        "            session.add(notification)",
        "            created += 1",
        "        session.commit()",
        "    return created",
    ]


def _per_row_commit(f: _File, n: str) -> list[str]:
    return [
        f"def import_{n}_rows(rows: list[dict[str, str]]) -> int:",
        "    imported = 0",
        "    with Session() as session:",
        "        for idx, row in enumerate(rows, start=2):",
        '            order = session.query(Order).filter_by(code=row["code"]).first()',
        "            if order is None:",
        '                order = Order(code=row["code"])',
        "                session.add(order)",
        '            order.amount = float(row.get("amount") or 0)',
        "            session.commit()",
        "            imported += 1",
        "    return imported",
    ]


def _swallowing(f: _File, n: str) -> list[str]:
    return [
        f"def process_{n}_queue() -> None:",
        "    with Session() as session:",
        "        try:",
        '            pending = session.query(Order).filter_by(status="pending").all()',
        "            for order in pending:",
        '                order.status = "processed"',
        "            session.commit()",
        "        except Exception as e:",
        "            session.rollback()",
        f'            logger.error(f"Error in process_{n}_queue: {{e}}")',
    ]


def _bare_call(f: _File, n: str) -> list[str]:
    if f.rng.random() < 0.5:
        return [
            f"def count_{n}_users() -> int:",
            "    session = Session()",
            "    total = session.query(User).count()",
            "    return total",
        ]
    return [
        f"def credit_{n}_balance(user_id: int, amount: float) -> None:",
        "    session = Session()",
        "    try:",
        "        user = session.query(User).filter_by(userID=user_id).first()",
        "        user.balance += amount",
        "        session.commit()",
        "    finally:",
        "        session.close()",
    ]


def _async_raw(f: _File, n: str) -> list[str]:
    if f.rng.random() < 0.5:
        return [
            f"async def get_{n}_notifications(user_id: str) -> dict[str, Any]:",
            "    async with async_session() as db:",
            "        result = await db.execute(select(Notification).where(Notification.user_id == user_id))",
            "        items = result.scalars().all()",
            '        return {"notifications": [item.id for item in items], "total_unread": len(items)}',
        ]
    return [
        f"async def mark_{n}_read(notification_id: int) -> bool:",
        "    async with async_session() as db:",
        "        notification = await db.get(Notification, notification_id)",
        "        if notification is None:",
        "            return False",
        "        notification.is_read = True",
        "        await db.commit()",
        "        return True",
    ]


def _fallback(f: _File, n: str) -> list[str]:
    return [
        f"class {camel(n, 'sync_engine')}:",
        f'    """Exports the {n} table."""',
        "",
        "    def __init__(self, table_name: str) -> None:",
        "        self.table_name = table_name",
        "",
        "    def export_to_json(self, session: Session = None) -> dict[str, Any]:",
        '        """Export table data to JSON."""',
        "        if session is None:",
        "            from init import Session",
        "            session = Session()",
        "        rows = session.query(Order).all()",
        '        return {"table": self.table_name, "rows": [row.id for row in rows]}',
    ]


_SYNC_PATTERNS = (_with_raw, _per_row_commit, _swallowing, _bare_call)


def _matching_blocks(f: _File, target: int) -> None:
    """One of three kinds, so each file's imports stay coherent (as in the audits)."""
    rng = f.rng
    kind = rng.choices(("sync", "async", "fallback"), weights=(5, 3, 2))[0]
    f.need("logging")
    f.need("typing", "Any")
    f.add(["logger = logging.getLogger(__name__)"])
    patterns: list[list[str]] = []
    if kind == "sync":
        f.need("init", "Session")
        f.need("models", "Notification", "Order", "User")
        for _ in range(rng.randint(1, 4)):
            patterns.append(rng.choice(_SYNC_PATTERNS)(f, f"{f.pick(QUALS)}_{f.noun}"))
    elif kind == "async":
        f.need("core.db", "async_session")
        f.need("models", "Notification")
        f.need("sqlalchemy", "select")
        for _ in range(rng.randint(1, 3)):
            patterns.append(_async_raw(f, f"{f.pick(QUALS)}_{f.noun}"))
    else:
        f.need("sqlalchemy.orm", "Session")
        f.need("models", "Order")
        patterns.append(_fallback(f, f"{f.pick(QUALS)}_{f.noun}"))
    for pattern in patterns:
        f.add(pattern)
        while rng.random() < 0.5 and f.lines < target:
            f.add(_function(f, f"{f.pick(VERBS)}_{f.pick(QUALS)}_{f.nouns}"))
    while f.lines < target:
        f.add(_function(f, f"{f.pick(VERBS)}_{f.pick(QUALS)}_{f.nouns}"))


# -- the tree ---------------------------------------------------------------------------------


def _target_lines(rng: random.Random) -> int:
    """Lognormal: many small modules, a few long ones; ~200 lines on average after overshoot."""
    return max(12, min(1500, int(rng.lognormvariate(math.log(140) - 0.32, 0.8))))


def package_pool(seed: int) -> list[tuple[str, ...]]:
    """Nested package paths; depends on the seed only, never on the number of files."""
    rng = random.Random(f"{seed}:packages")
    pool: list[tuple[str, ...]] = []
    for top in TOP_PACKAGES:
        pool.append((top,))
        for sub in rng.sample(SUB_PACKAGES, rng.randint(2, 5)):
            pool.append((top, sub))
            for deeper in rng.sample(SUB_PACKAGES, rng.randint(0, 3)):
                pool.append((top, sub, deeper))
                if rng.random() < 0.3:
                    pool.append((top, sub, deeper, rng.choice(SUB_PACKAGES)))
    return pool


def module_text(seed: int, kind: str, index: int, pool: list[tuple[str, ...]]) -> tuple[Path, str]:
    """(relative path, source) of the `index`-th module of `kind` ("match" or "plain")."""
    rng = random.Random(f"{seed}:{kind}:{index}")
    noun = rng.choice(NOUNS)
    package = rng.choice(pool)
    tag = "m" if kind == "match" else ""
    name = f"{noun}_{rng.choice(ROLES)}_{tag}{index}"
    f = _File(rng, noun)
    target = _target_lines(rng)
    if kind == "match":
        _matching_blocks(f, target)
    else:
        _plain_blocks(f, target)
    if rng.random() < 0.25:
        f.imports.setdefault("__future__", set()).add("annotations")
    docstring = f"{camel(rng.choice(VERBS))} and {rng.choice(VERBS)} {plural(noun)} for {'.'.join(package)}."
    return Path(*package, f"{name}.py"), f.render(docstring)


def split_counts(files: int, matching_ratio: float) -> tuple[int, int]:
    """(matching, plain) for `files` modules."""
    if files < 0 or not 0.0 <= matching_ratio <= 1.0:
        raise ValueError(f"need files >= 0 and 0 <= ratio <= 1, got {files} and {matching_ratio}")
    matching = round(files * matching_ratio)
    return matching, files - matching


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_tree(root: Path, *, matching: int, plain: int, seed: int = 0) -> dict:
    """Write `matching` + `plain` modules (plus support files) under an empty `root`."""
    root = Path(root)
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root}: directory is not empty")
    root.mkdir(parents=True, exist_ok=True)
    pool = package_pool(seed)
    lines = size = 0
    support = {"pyproject.toml": PYPROJECT, "core/__init__.py": "", "core/db.py": CORE_DB, "models.py": MODELS}
    for relative, text in support.items():
        _write(root / relative, text)
        if relative.endswith(".py"):
            lines += text.count("\n")
            size += len(text.encode("utf-8"))
    packages: set[tuple[str, ...]] = set()
    matching_paths: list[str] = []
    for kind, count in (("match", matching), ("plain", plain)):
        for index in range(count):
            relative, text = module_text(seed, kind, index, pool)
            _write(root / relative, text)
            lines += text.count("\n")
            size += len(text.encode("utf-8"))
            packages.update(relative.parts[:depth] for depth in range(1, len(relative.parts)))
            if kind == "match":
                matching_paths.append(relative.as_posix())
    for package in packages:
        _write(root.joinpath(*package, "__init__.py"), "")
    stats = {
        "seed": seed,
        "modules": matching + plain,
        "matching": matching,
        "plain": plain,
        "files": matching + plain + len(packages) + 3,  # + core/__init__.py, core/db.py, models.py
        "packages": len(packages) + 1,
        "lines": lines,
        "bytes": size,
        "matching_paths": sorted(matching_paths),
    }
    (root / MANIFEST).write_text(json.dumps(stats, indent=1) + "\n", encoding="utf-8")
    return stats


def generate(root: Path, files: int = 5000, matching_ratio: float = 0.03, seed: int = 0) -> dict:
    """Write a project of `files` modules, round(files * matching_ratio) of them matching."""
    matching, plain = split_counts(files, matching_ratio)
    return write_tree(root, matching=matching, plain=plain, seed=seed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path, help="where to write the tree (must be empty or absent)")
    parser.add_argument("--files", type=int, default=5000, help="number of modules (default: 5000)")
    parser.add_argument("--ratio", type=float, default=0.03, help="share of matching modules (default: 0.03)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = parser.parse_args(argv)
    try:
        stats = generate(args.out_dir, args.files, args.ratio, args.seed)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stats.pop("matching_paths")
    print(json.dumps(stats, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
