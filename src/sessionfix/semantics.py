"""What a configured session helper does when its block ends, read from its definition.

A rule may strip a `commit()` only when the helper commits, and a `rollback()` only when it rolls
back; this module derives those facts, and whether the helper closes, from the helper's code
through the project model (never by importing it). Each fact carries the file:line that proves
it, or the reason it could not be decided. The analysis is conservative: a fact is True only
when the code shows it on every path, False only when no path does it, None otherwise. A helper
it cannot follow gets kind "unknown" and three None facts that say why.

Facts describe `with helper() as s:` (or `async with`). A configured name `X.begin`, whose
prefix is a sessionmaker, describes `with X.begin() as s:`; a rule that sees such a call site
asks `analyse_factory_call(index, "pkg.db.X", "begin")`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Literal, Sequence, Union

import libcst as cst
import libcst.matchers as m
from libcst.metadata import (
    GlobalScope,
    MetadataWrapper,
    PositionProvider,
    QualifiedName,
    QualifiedNameProvider,
    QualifiedNameSource,
    ScopeProvider,
)

from sessionfix.index import ModuleInfo, ProjectIndex, resolve_relative
from sessionfix.model import Fact, HelperSemantics

CONTEXTMANAGER = frozenset({"contextlib.contextmanager"})
ASYNCCONTEXTMANAGER = frozenset({"contextlib.asynccontextmanager"})
SESSIONMAKERS = frozenset({"sqlalchemy.orm.sessionmaker", "sqlalchemy.orm.session.sessionmaker"})
ASYNC_SESSIONMAKERS = frozenset(
    {"sqlalchemy.ext.asyncio.async_sessionmaker", "sqlalchemy.ext.asyncio.session.async_sessionmaker"}
)
SESSIONS = frozenset({"sqlalchemy.orm.Session", "sqlalchemy.orm.session.Session"})
ASYNC_SESSIONS = frozenset({"sqlalchemy.ext.asyncio.AsyncSession", "sqlalchemy.ext.asyncio.session.AsyncSession"})
_BROAD = frozenset({"builtins.Exception", "builtins.BaseException"})
_ACTIONS = ("commit", "rollback", "close")

Action = Literal["commit", "rollback", "close"]
Statement = Union[cst.BaseSmallStatement, cst.BaseCompoundStatement]
_SessionBase = Literal["sync", "async"]


# -- public API ---------------------------------------------------------------------------------


def analyse_helper(index: ProjectIndex, dotted: str) -> HelperSemantics:
    """Semantics of `with <dotted>() as s:`; `X.begin` means `with X.begin() as s:`."""
    return HelperAnalyser(index).analyse(dotted)


def analyse_factory_call(index: ProjectIndex, dotted: str, method: str | None = None) -> HelperSemantics:
    """Semantics of `with <dotted>() as s:` or, with method="begin", `with <dotted>.begin() as s:`."""
    if method is None:
        return analyse_helper(index, dotted)
    if method != "begin":
        return _unknown(f"{dotted}.{method}", f"{dotted}.{method}(): only .begin() of a sessionmaker is understood")
    return analyse_helper(index, f"{dotted}.{method}")


def describe(semantics: HelperSemantics) -> list[tuple[str, str, str]]:
    """Rows (fact, value, evidence) for `sessionfix helpers`."""
    rows = [("kind", semantics.kind, semantics.location or "-")]
    for label, fact in (
        ("commits on exit", semantics.commits_on_exit),
        ("rolls back on error", semantics.rolls_back_on_error),
        ("closes", semantics.closes),
    ):
        rows.append((label, {True: "yes", False: "no", None: "unknown"}[fact.value], fact.evidence))
    return rows


class HelperAnalyser:
    """Analyses the helpers of one project; keep one per run to share parsed metadata."""

    def __init__(self, index: ProjectIndex) -> None:
        self.index = index
        self._modules: dict[str, _Module] = {}
        self._done: dict[str, HelperSemantics] = {}
        self._active: set[str] = set()

    def analyse(self, dotted: str) -> HelperSemantics:
        if dotted in self._done:
            return self._done[dotted]
        if dotted in self._active:
            return _unknown(dotted, f"{dotted} is defined in terms of itself; cannot follow it")
        self._active.add(dotted)
        try:
            result = self._analyse(dotted)
        finally:
            self._active.discard(dotted)
        self._done[dotted] = result
        return result

    # -- what the name is ---------------------------------------------------------------------

    def _analyse(self, dotted: str) -> HelperSemantics:
        target = self.index.canonical(dotted)
        if target in SESSIONS | ASYNC_SESSIONS:
            return _session_class(dotted, target)
        found = self.index.definition(dotted)
        if found is None:
            base, _, attribute = target.rpartition(".")
            if attribute == "begin" and base:
                return self._begin(dotted, base)
            return _unknown(dotted, self._why_undefined(dotted, target))
        info, name, binding = found
        if info.tree is None or info.path is None:
            return _unknown(dotted, f"{dotted}: {info.name} could not be read")
        mod = self._module(info)
        node = mod.top_level(name, binding.line)
        named = node.name if isinstance(node, (cst.FunctionDef, cst.ClassDef)) else node
        location = mod.where(named) if named is not None else f"{mod.display}:{binding.line}"
        if isinstance(node, cst.FunctionDef):
            return self._function(dotted, mod, node, location)
        if isinstance(node, cst.ClassDef):
            return self._class(dotted, mod, node, location)
        if isinstance(node, (cst.Assign, cst.AnnAssign)) and node.value is not None:
            return self._assigned(dotted, mod, name, node.value, location)
        return _unknown(dotted, f"{location}: {name} is bound by {binding.kind}; sessionfix cannot follow it", location)

    def _why_undefined(self, dotted: str, target: str) -> str:
        named = dotted if target == dotted else f"{dotted} ({target})"
        module_info = self.index.module(target)
        if module_info is not None and module_info.status == "project":
            return f"{named} is a module, not a session helper"
        split = self.index.split(target)
        if split is None:
            return f"{named} is neither in the project nor installed"
        module, name = split
        info = self.index.module(module)
        if info is not None and info.status == "environment":
            return (
                f"{dotted} resolves to {target}, defined in an installed package ({module}), "
                "not in the project; sessionfix reads only project code"
            )
        where = self.index.display(info.path) if info is not None and info.path else module
        return f"{dotted}: {where} defines no {name} that sessionfix can see"

    def _module(self, info: ModuleInfo) -> _Module:
        if info.name not in self._modules:
            assert info.tree is not None and info.path is not None
            wrapper = MetadataWrapper(info.tree, unsafe_skip_copy=True)
            package = info.name if info.is_package else info.name.rpartition(".")[0]
            self._modules[info.name] = _Module(
                self.index,
                info,
                info.tree,
                package,
                self.index.display(info.path),
                _Metadata(wrapper),
            )
        return self._modules[info.name]

    def _call(self, mod: _Module, call: cst.Call) -> HelperSemantics:
        """Semantics of the context manager a call inside `mod` produces."""
        func = call.func
        if m.matches(func, m.Attribute(attr=m.Name("begin"))):
            assert isinstance(func, cst.Attribute)
            base = mod.resolve(func.value)
            if base is not None:
                return self.analyse(f"{base}.begin")
        target = mod.resolve(func)
        if target is None:
            return _unknown(
                mod.show(call),
                f"{mod.where(call)}: cannot tell what {mod.show(func)} is (not a module-level or imported name)",
            )
        return self.analyse(target)

    # -- functions ----------------------------------------------------------------------------

    def _function(self, dotted: str, mod: _Module, fn: cst.FunctionDef, location: str) -> HelperSemantics:
        name = fn.name.value
        is_async = fn.asynchronous is not None
        yields = _yields(fn)
        if not fn.decorators:
            if yields:
                why = f"{location}: {name} is a generator without @contextmanager (a FastAPI-style dependency?), not a context manager"
                return _unknown(dotted, why, location)
            if is_async:
                why = f"{location}: async def {name} is not a generator; calling it gives a coroutine, not a context manager"
                return _unknown(dotted, why, location)
            return self._factory(dotted, mod, fn, location)
        if len(fn.decorators) > 1:
            why = f"{location}: {name} has {len(fn.decorators)} decorators; sessionfix follows only a lone @contextmanager"
            return _unknown(dotted, why, location)
        decorator = fn.decorators[0].decorator
        resolved = mod.resolve(decorator)
        if resolved in CONTEXTMANAGER and not is_async:
            kind = "contextmanager"
        elif resolved in ASYNCCONTEXTMANAGER and is_async:
            kind = "asynccontextmanager"
        else:
            why = (
                f"{mod.where(decorator)}: decorator @{mod.show(decorator)} ({resolved or 'unresolved'}) on "
                f"{'async def' if is_async else 'def'} {name} is not one sessionfix can follow"
            )
            return _unknown(dotted, why, location)
        return self._generator(dotted, mod, fn, kind, yields, location)

    def _factory(self, dotted: str, mod: _Module, fn: cst.FunctionDef, location: str) -> HelperSemantics:
        """A plain function: `with f() as s` means whatever the returned object's context does."""
        returns = _returns(fn)
        if not returns:
            return _unknown(dotted, f"{location}: {fn.name.value} returns nothing", location)
        facts: list[tuple[Fact, Fact, Fact]] = []
        for ret in returns:
            if not isinstance(ret.value, cst.Call):
                why = f"{mod.where(ret)}: returns {mod.show(ret.value) if ret.value else 'None'}, not a call sessionfix can follow"
                return HelperSemantics(dotted, "factory", Fact(None, why), Fact(None, why), Fact(None, why), location)
            inner = self._call(mod, ret.value)
            prefix = f"{mod.where(ret)}: returns {mod.show(ret.value)}; "
            facts.append(
                tuple(Fact(f.value, prefix + f.evidence) for f in (inner.commits_on_exit, inner.rolls_back_on_error, inner.closes))  # type: ignore[misc]
            )
        commits, rolls, closes = (_merge([f[i] for f in facts]) for i in range(3))
        return HelperSemantics(dotted, "factory", commits, rolls, closes, location)

    def _generator(
        self, dotted: str, mod: _Module, fn: cst.FunctionDef, kind: str, yields: list[cst.Yield], location: str
    ) -> HelperSemantics:
        def unknown(why: str) -> HelperSemantics:
            return HelperSemantics(dotted, kind, Fact(None, why), Fact(None, why), Fact(None, why), location)

        if len(yields) != 1:
            return unknown(f"{location}: {fn.name.value} has {len(yields)} yields; sessionfix follows exactly one")
        (yielded,) = yields
        if not isinstance(yielded.value, cst.Name):
            what = mod.show(yielded.value) if yielded.value is not None else "nothing"
            return unknown(f"{mod.where(yielded)}: yields {what}, not a session held in a name")
        path = _locate(_block(fn.body), fn, "function", yielded)
        if path is None:
            return unknown(f"{mod.where(yielded)}: the yield is not a statement of its own")
        for frame in path[1:]:
            if not (isinstance(frame.owner, cst.Try) and frame.part in ("body", "orelse")) and not (
                isinstance(frame.owner, cst.With) and frame.part == "body"
            ):
                return unknown(
                    f"{mod.where(yielded)}: the yield is inside {_PART_NAMES[frame.part]}, "
                    "so it does not run on every path"
                )
        session = yielded.value.value
        ctx = _Context(mod, session)
        walk = _GeneratorWalk(self, ctx, path)
        normal = walk.after(len(path) - 1, falls=True, exited=False)
        errors = walk.raise_at(len(path) - 1, [], [])
        return HelperSemantics(
            dotted,
            kind,
            _normal_fact(normal, "commit", f"{location}: no {session}.commit() after the yield on the normal path"),
            _error_fact(errors, closes_somewhere=_any(normal, "close"), location=location, session=session),
            _close_fact(normal, [p.effects for p in errors], f"{location}: {session} is never closed"),
            location,
        )

    # -- classes ------------------------------------------------------------------------------

    def _class(self, dotted: str, mod: _Module, cls: cst.ClassDef, location: str) -> HelperSemantics:
        hierarchy = self._hierarchy(mod, cls)
        flavours = [f for f in ("sync", "async") if hierarchy.exit(f) is not None]
        if not flavours:
            if hierarchy.session is not None and not hierarchy.unknown:
                inherited = _session_class(dotted, hierarchy.session_name or "sqlalchemy.orm.Session")
                return replace(inherited, location=location)
            why = f"{location}: {cls.name.value} defines no __exit__/__aexit__ sessionfix can see"
            if hierarchy.unknown:
                why += f" (bases it cannot follow: {', '.join(hierarchy.unknown)})"
            return _unknown(dotted, why, location)
        results = [self._exit_facts(mod, cls, hierarchy, flavour) for flavour in flavours]
        for result in results:
            if isinstance(result, str):
                return HelperSemantics(dotted, "class", Fact(None, result), Fact(None, result), Fact(None, result), location)
        facts = [r for r in results if not isinstance(r, str)]
        commits, rolls, closes = (_merge([f[i] for f in facts]) for i in range(3))
        return HelperSemantics(dotted, "class", commits, rolls, closes, location)

    def _hierarchy(self, mod: _Module, cls: cst.ClassDef, depth: int = 0) -> _Hierarchy:
        """The dunder methods a project class has or inherits from project bases."""
        result = _Hierarchy({}, None, None, [])
        for statement in _block(cls.body):
            if isinstance(statement, cst.FunctionDef) and statement.name.value in _DUNDERS:
                result.methods.setdefault(statement.name.value, (mod, statement))
        for base in cls.bases:
            if base.keyword is not None:
                continue
            target = mod.resolve(base.value)
            if target == "builtins.object":
                continue
            if target in SESSIONS | ASYNC_SESSIONS:
                result.session = "async" if target in ASYNC_SESSIONS else "sync"
                result.session_name = target
                continue
            found = self.index.definition(target) if target is not None and depth < 20 else None
            node = None
            if found is not None and found[0].tree is not None and found[0].path is not None:
                base_mod = self._module(found[0])
                node = base_mod.top_level(found[1], found[2].line)
            if not isinstance(node, cst.ClassDef):
                result.unknown.append(mod.show(base.value))
                continue
            inner = self._hierarchy(base_mod, node, depth + 1)
            for name, method in inner.methods.items():
                result.methods.setdefault(name, method)
            result.session = result.session or inner.session
            result.session_name = result.session_name or inner.session_name
            result.unknown.extend(inner.unknown)
        return result

    def _exit_facts(
        self, mod: _Module, cls: cst.ClassDef, hierarchy: _Hierarchy, flavour: _SessionBase
    ) -> tuple[Fact, Fact, Fact] | str:
        """Read __exit__ (sync) or __aexit__ (async): what runs with and without an exception."""
        enter_name, exit_name = ("__enter__", "__exit__") if flavour == "sync" else ("__aenter__", "__aexit__")
        found = hierarchy.methods.get(exit_name)
        assert found is not None
        exit_mod, exit_fn = found
        params = [p.name.value for p in exit_fn.params.params]
        if len(params) != 4:
            return f"{exit_mod.where(exit_fn)}: {exit_name} does not take (self, exc_type, exc, tb)"
        path = self._receiver(hierarchy, enter_name)
        if isinstance(path, str):
            return path
        receiver = ".".join([params[0], *path])
        delegate = hierarchy.session is not None
        base = _Context(exit_mod, receiver, delegate=delegate, exc_params=frozenset(params[1:]))
        body = _block(exit_fn.body)
        normal = _run(replace(base, error=False), body, f"in {exit_name} when the block succeeds")
        error = _run(replace(base, error=True), body, f"in {exit_name} when the block raises")
        where = exit_mod.where(exit_fn)
        commits = _normal_fact(normal.effects, "commit", f"{where}: {exit_name} does not call {receiver}.commit() when the block succeeds")
        rolls = _effects_fact([error.effects], "rollback", f"{where}: {exit_name} does not call {receiver}.rollback() when the block raises")
        notes = _swallows_in_exit(replace(base, error=True), exit_name, error)
        if notes:
            rolls = Fact(rolls.value, f"{rolls.evidence}; {notes}")
        closes = _close_fact(normal.effects, [error.effects], f"{where}: {exit_name} never closes {receiver}")
        return commits, rolls, closes

    def _receiver(self, hierarchy: _Hierarchy, enter_name: str) -> tuple[str, ...] | str:
        """Which attribute of self __enter__ hands out: () for self, ("session",) for self.session."""
        found = hierarchy.methods.get(enter_name)
        if found is None:
            if hierarchy.session is not None:
                return ()  # Session.__enter__ returns self
            return f"no {enter_name} sessionfix can see"
        enter_mod, enter_fn = found
        params = enter_fn.params.params
        returns = _returns(enter_fn)
        paths = {_attribute_path(r.value, params[0].name.value) if params and r.value else None for r in returns}
        if len(paths) != 1 or None in paths:
            return f"{enter_mod.where(enter_fn)}: cannot tell which session {enter_name} returns"
        (path,) = paths
        assert path is not None
        if not path and hierarchy.session is None:
            return f"{enter_mod.where(enter_fn)}: {enter_name} returns the helper object itself, not a session"
        return path

    # -- sessionmakers ------------------------------------------------------------------------

    def _assigned(self, dotted: str, mod: _Module, name: str, value: cst.BaseExpression, location: str) -> HelperSemantics:
        if not isinstance(value, cst.Call):
            why = f"{location}: {name} = {mod.show(value)} is not something sessionfix can follow"
            return _unknown(dotted, why, location)
        target = mod.resolve(value.func)
        if target not in SESSIONMAKERS | ASYNC_SESSIONMAKERS:
            why = (
                f"{location}: {name} is the result of {mod.show(value)} ({target or 'unresolved'}), "
                "which sessionfix cannot follow"
            )
            return _unknown(dotted, why, location)
        for statement in m.findall(mod.tree, m.Global()):
            assert isinstance(statement, cst.Global)
            if any(item.name.value == name for item in statement.names):
                why = f"{mod.where(statement)}: {name} is rebound at run time (global {name}); cannot follow it"
                return _unknown(dotted, why, location)
        flavour: _SessionBase = "async" if target in ASYNC_SESSIONMAKERS else "sync"
        maker = f"{name} = {mod.show(value)}"
        for arg in value.args:
            if arg.keyword is not None and arg.keyword.value == "class_":
                return self._custom_class(dotted, mod, arg.value, flavour, maker, location)
        return _maker_semantics(dotted, location, maker, flavour)

    def _custom_class(
        self, dotted: str, mod: _Module, value: cst.BaseExpression, flavour: _SessionBase, maker: str, location: str
    ) -> HelperSemantics:
        """`sessionmaker(class_=C)`: the session's context is C's, read if C overrides it."""
        target = mod.resolve(value)
        if target in SESSIONS | ASYNC_SESSIONS:
            return _maker_semantics(dotted, location, maker, flavour)
        found = self.index.definition(target) if target is not None else None
        node = None
        if found is not None and found[0].tree is not None and found[0].path is not None:
            class_mod = self._module(found[0])
            node = class_mod.top_level(found[1], found[2].line)
        if not isinstance(node, cst.ClassDef):
            why = f"{location}: class_={mod.show(value)} ({target or 'unresolved'}) is not a project class sessionfix can read"
            return HelperSemantics(dotted, "sessionmaker", Fact(None, why), Fact(None, why), Fact(None, why), location)
        hierarchy = self._hierarchy(class_mod, node)
        exit_name = "__exit__" if flavour == "sync" else "__aexit__"
        if hierarchy.exit(flavour) is None:
            if hierarchy.session is not None and not hierarchy.unknown:
                return _maker_semantics(dotted, location, f"{maker} (class_ {node.name.value} keeps {exit_name})", flavour)
            why = f"{location}: class_={node.name.value} is not a Session subclass sessionfix can follow"
            return HelperSemantics(dotted, "sessionmaker", Fact(None, why), Fact(None, why), Fact(None, why), location)
        result = self._exit_facts(class_mod, node, hierarchy, flavour)
        if isinstance(result, str):
            return HelperSemantics(dotted, "sessionmaker", Fact(None, result), Fact(None, result), Fact(None, result), location)
        prefix = f"{location}: class_={node.name.value} overrides {exit_name}; "
        commits, rolls, closes = (Fact(f.value, prefix + f.evidence) for f in result)
        return HelperSemantics(dotted, "sessionmaker", commits, rolls, closes, location)

    def _begin(self, dotted: str, base: str) -> HelperSemantics:
        maker = self.analyse(base)
        if maker.kind != "sessionmaker":
            why = f"{dotted}: {base} is not a sessionmaker (kind {maker.kind}), so .begin() is not understood"
            return _unknown(dotted, why, maker.location)
        where = maker.location
        short = base.rpartition(".")[2]
        commits = Fact(True, f"{where}: {short}.begin() commits when the block succeeds (sessionmaker.begin() wraps Session.begin())")
        rolls = Fact(True, f"{where}: {short}.begin() rolls back when the block raises, then re-raises")
        return HelperSemantics(dotted, "sessionmaker.begin", commits, rolls, maker.closes, where)


# -- the module being read --------------------------------------------------------------------


class _Metadata(cst.MetadataDependent):
    """Resolved metadata of one module, read through the public `get_metadata`."""

    METADATA_DEPENDENCIES = (PositionProvider, QualifiedNameProvider, ScopeProvider)

    def __init__(self, wrapper: MetadataWrapper) -> None:
        super().__init__()
        self.metadata = wrapper.resolve_many(self.METADATA_DEPENDENCIES)


@dataclass
class _Module:
    index: ProjectIndex
    info: ModuleInfo
    tree: cst.Module
    package: str
    display: str
    metadata: _Metadata

    def line(self, node: cst.CSTNode) -> int:
        return self.metadata.get_metadata(PositionProvider, node).start.line

    def where(self, node: cst.CSTNode) -> str:
        return f"{self.display}:{self.line(node)}"

    def show(self, node: cst.CSTNode) -> str:
        """Short rendering for evidence text (never used to decide anything)."""
        if isinstance(node, cst.Await):
            return f"await {self.show(node.expression)}"
        if isinstance(node, cst.Call):
            return f"{self.show(node.func)}({'...' if node.args else ''})"
        return self.tree.code_for_node(node).strip()

    def resolve(self, expr: cst.BaseExpression) -> str | None:
        """The canonical dotted name `expr` refers to, or None (local, ambiguous, unknown)."""
        found: set[str] = set()
        for qualified in self.metadata.get_metadata(QualifiedNameProvider, expr, set()):
            dotted = self._absolute(expr, qualified)
            if dotted is None:
                return None
            found.add(self.index.canonical(dotted))
        return found.pop() if len(found) == 1 else None

    def _absolute(self, expr: cst.BaseExpression, qualified: QualifiedName) -> str | None:
        name = qualified.name
        if qualified.source == QualifiedNameSource.IMPORT:
            rest = name.lstrip(".")
            level = len(name) - len(rest)
            if level == 0:
                return name
            base = resolve_relative(level, None, self.package)
            return f"{base}.{rest}" if base else None
        if qualified.source == QualifiedNameSource.BUILTIN:
            return name
        root = expr
        while isinstance(root, cst.Attribute):
            root = root.value
        if not isinstance(root, cst.Name):
            return None
        scope = self.metadata.get_metadata(ScopeProvider, root, None)
        if scope is None:
            return None
        assignments = scope[root.value]
        if not assignments or not all(isinstance(a.scope, GlobalScope) for a in assignments):
            return None  # a local variable: what it holds is not followed
        return f"{self.info.name}.{name}"

    def top_level(self, name: str, line: int) -> cst.CSTNode | None:
        """The module-level def, class or assignment that binds `name` at `line`."""
        for node in _top_level_nodes(_block_of_module(self.tree)):
            if self.line(node) != line:
                continue
            if isinstance(node, (cst.FunctionDef, cst.ClassDef)) and node.name.value == name:
                return node
            if isinstance(node, cst.Assign) and any(m.matches(t.target, m.Name(name)) for t in node.targets):
                return node
            if isinstance(node, cst.AnnAssign) and m.matches(node.target, m.Name(name)):
                return node
        return None


def _block_of_module(tree: cst.Module) -> list[Statement]:
    return _flatten(tree.body)


def _top_level_nodes(statements: Sequence[Statement]) -> Iterator[cst.CSTNode]:
    for statement in statements:
        yield statement
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            continue
        for _, block in _parts(statement):
            yield from _top_level_nodes(block)


# -- statements and the paths through them -----------------------------------------------------


def _flatten(statements: Sequence[cst.BaseStatement]) -> list[Statement]:
    out: list[Statement] = []
    for statement in statements:
        if isinstance(statement, cst.SimpleStatementLine):
            out.extend(statement.body)
        else:
            assert isinstance(statement, cst.BaseCompoundStatement)
            out.append(statement)
    return out


def _block(suite: cst.BaseSuite) -> list[Statement]:
    if isinstance(suite, cst.IndentedBlock):
        return _flatten(suite.body)
    assert isinstance(suite, cst.SimpleStatementSuite)
    return list(suite.body)


_PART_NAMES = {
    "function": "the function body",
    "body": "a block",
    "orelse": "an else block",
    "handler": "an except handler",
    "finally": "a finally block",
    "if": "an if",
    "loop": "a loop",
    "match": "a match",
    "other": "a construct sessionfix does not follow",
}


def _parts(statement: Statement) -> Iterator[tuple[str, list[Statement]]]:
    """The blocks a compound statement holds, each named by how control reaches it."""
    if isinstance(statement, cst.Try):
        yield "body", _block(statement.body)
        for handler in statement.handlers:
            yield "handler", _block(handler.body)
        if statement.orelse is not None:
            yield "orelse", _block(statement.orelse.body)
        if statement.finalbody is not None:
            yield "finally", _block(statement.finalbody.body)
    elif isinstance(statement, cst.With):
        yield "body", _block(statement.body)
    elif isinstance(statement, cst.If):
        yield "if", _block(statement.body)
        if isinstance(statement.orelse, cst.If):
            yield "if", [statement.orelse]
        elif isinstance(statement.orelse, cst.Else):
            yield "if", _block(statement.orelse.body)
    elif isinstance(statement, (cst.For, cst.While)):
        yield "loop", _block(statement.body)
        if statement.orelse is not None:
            yield "loop", _block(statement.orelse.body)
    elif isinstance(statement, cst.Match):
        for case in statement.cases:
            yield "match", _block(case.body)
    elif isinstance(statement, (cst.TryStar,)):
        yield "other", _block(statement.body)
        for star_handler in statement.handlers:
            yield "other", _block(star_handler.body)
        if statement.orelse is not None:
            yield "other", _block(statement.orelse.body)
        if statement.finalbody is not None:
            yield "other", _block(statement.finalbody.body)


@dataclass(frozen=True)
class _Frame:
    """`block` is `owner`'s `part`; `block[index]` is the next statement towards the yield."""

    block: list[Statement]
    index: int
    owner: cst.CSTNode
    part: str


def _locate(block: list[Statement], owner: cst.CSTNode, part: str, target: cst.Yield) -> list[_Frame] | None:
    for index, statement in enumerate(block):
        if isinstance(statement, cst.Expr) and statement.value is target:
            return [_Frame(block, index, owner, part)]
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            continue
        for sub_part, sub_block in _parts(statement):
            found = _locate(sub_block, statement, sub_part, target)
            if found is not None:
                return [_Frame(block, index, owner, part), *found]
    return None


class _Collect(cst.CSTVisitor):
    """Yields or returns of one function body, not of functions nested in it."""

    def __init__(self, kind: type[cst.CSTNode]) -> None:
        super().__init__()
        self.kind = kind
        self.found: list[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, self.kind):
            self.found.append(node)
        return not isinstance(node, (cst.FunctionDef, cst.ClassDef, cst.Lambda))


def _yields(fn: cst.FunctionDef) -> list[cst.Yield]:
    collector = _Collect(cst.Yield)
    fn.body.visit(collector)
    return [n for n in collector.found if isinstance(n, cst.Yield)]


def _returns(fn: cst.FunctionDef) -> list[cst.Return]:
    collector = _Collect(cst.Return)
    fn.body.visit(collector)
    return [n for n in collector.found if isinstance(n, cst.Return)]


def _dotted(node: cst.BaseExpression | None) -> str | None:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None


def _attribute_path(node: cst.BaseExpression, self_name: str) -> tuple[str, ...] | None:
    """`self.a.b` -> ("a", "b"); `self` -> (); anything else -> None."""
    parts: list[str] = []
    while isinstance(node, cst.Attribute):
        parts.insert(0, node.attr.value)
        node = node.value
    if isinstance(node, cst.Name) and node.value == self_name:
        return tuple(parts)
    return None


# -- running a block ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Effect:
    action: Action
    evidence: str
    sure: bool  # happens on every path through the region examined


@dataclass(frozen=True)
class _Context:
    mod: _Module
    receiver: str  # the session as a dotted expression: "session", "self.session", "self"
    delegate: bool = False  # super().__exit__() is a Session's, which closes
    error: bool | None = None  # in an __exit__: whether an exception is being handled
    exc_params: frozenset[str] = frozenset()
    handler_name: str | None = None  # `except E as <name>`


@dataclass
class _Run:
    effects: list[_Effect]
    falls: bool  # control may reach the end of the block
    exits: list[cst.Return | cst.Raise]  # statements that may leave it early


def _effect(ctx: _Context, expr: cst.BaseExpression | None, label: str, sure: bool) -> _Effect | None:
    node = expr.expression if isinstance(expr, cst.Await) else expr
    if not isinstance(node, cst.Call) or not isinstance(node.func, cst.Attribute):
        return None
    method = node.func.attr.value
    target = node.func.value
    evidence = f"{ctx.mod.where(node)}: {ctx.mod.show(expr)} {label}"  # type: ignore[arg-type]
    if method in _ACTIONS and _dotted(target) == ctx.receiver:
        return _Effect(method, evidence, sure)  # type: ignore[arg-type]
    if ctx.delegate and isinstance(target, cst.Call) and ctx.mod.resolve(target.func) == "builtins.super":
        if method in _ACTIONS:
            return _Effect(method, evidence, sure)  # type: ignore[arg-type]
        if method in ("__exit__", "__aexit__"):
            return _Effect("close", f"{evidence}: the Session's own {method} closes", sure)
    return None


def _decide(ctx: _Context, test: cst.BaseExpression) -> bool | None:
    """Whether an `if` test holds, when it only inspects __exit__'s exception arguments."""
    if ctx.error is None:
        return None
    if isinstance(test, cst.Name) and test.value in ctx.exc_params:
        return ctx.error
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner = _decide(ctx, test.expression)
        return None if inner is None else not inner
    if isinstance(test, cst.Comparison) and len(test.comparisons) == 1:
        (comparison,) = test.comparisons
        sides = {_dotted(test.left), _dotted(comparison.comparator)}
        if "None" in sides and sides & ctx.exc_params:
            if isinstance(comparison.operator, cst.Is):
                return not ctx.error
            if isinstance(comparison.operator, cst.IsNot):
                return ctx.error
    return None


def _run(ctx: _Context, block: Sequence[Statement], label: str, sure: bool = True) -> _Run:
    """Effects of running `block` straight through; `sure` marks those on every path."""
    run = _Run([], True, [])
    for statement in block:
        if not run.falls:
            break
        now = sure and not run.exits
        if isinstance(statement, (cst.Return, cst.Raise)):
            if isinstance(statement, cst.Return):
                found = _effect(ctx, statement.value, label, now)
                if found is not None:
                    run.effects.append(found)
            run.exits.append(statement)
            run.falls = False
        elif isinstance(statement, cst.Expr):
            found = _effect(ctx, statement.value, label, now)
            if found is not None:
                run.effects.append(found)
        elif isinstance(statement, (cst.Assign, cst.AnnAssign)):
            found = _effect(ctx, statement.value, label, now)
            if found is not None:
                run.effects.append(found)
        elif isinstance(statement, cst.If):
            _join(run, _run_if(ctx, statement, label, now))
        elif isinstance(statement, cst.Try):
            _join(run, _run_try(ctx, statement, label, now))
        elif isinstance(statement, cst.With):
            _join(run, _run(ctx, _block(statement.body), label, now))
        elif isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            continue
        elif isinstance(statement, cst.BaseCompoundStatement):
            for _, sub in _parts(statement):
                inner = _run(ctx, sub, label, False)
                run.effects.extend(inner.effects)
                run.exits.extend(inner.exits)
    return run


def _join(run: _Run, inner: _Run) -> None:
    run.effects.extend(inner.effects)
    run.exits.extend(inner.exits)
    run.falls = run.falls and inner.falls


def _run_if(ctx: _Context, statement: cst.If, label: str, sure: bool) -> _Run:
    orelse: list[Statement] = []
    if isinstance(statement.orelse, cst.If):
        orelse = [statement.orelse]
    elif isinstance(statement.orelse, cst.Else):
        orelse = _block(statement.orelse.body)
    decided = _decide(ctx, statement.test)
    if decided is True:
        return _run(ctx, _block(statement.body), label, sure)
    if decided is False:
        return _run(ctx, orelse, label, sure)
    first = _run(ctx, _block(statement.body), label, sure)
    second = _run(ctx, orelse, label, sure)
    both = {e.action for e in first.effects if e.sure} & {e.action for e in second.effects if e.sure}
    effects = [replace(e, sure=e.sure and e.action in both) for e in first.effects + second.effects]
    return _Run(effects, first.falls or second.falls, first.exits + second.exits)


def _run_try(ctx: _Context, statement: cst.Try, label: str, sure: bool) -> _Run:
    run = _run(ctx, _block(statement.body), label, sure)
    if run.falls and statement.orelse is not None:
        _join(run, _run(ctx, _block(statement.orelse.body), label, sure and not run.exits))
    for handler in statement.handlers:
        # handlers run only when the helper's own code fails: never on every path
        inner = _run(ctx, _block(handler.body), label, False)
        run.effects.extend(inner.effects)
        run.exits.extend(inner.exits)
        run.falls = run.falls or inner.falls
    if statement.finalbody is not None:
        final = _run(ctx, _block(statement.finalbody.body), f"in `finally` ({label})", sure)
        _join(run, final)
    return run


# -- a @contextmanager generator, outward from its yield ----------------------------------------


@dataclass
class _ErrorPath:
    effects: list[_Effect]
    outcome: Literal["propagates", "swallows", "may-swallow"]
    notes: list[str]


class _GeneratorWalk:
    """What runs after the yield: normally (`after`) and when the caller's block raises."""

    def __init__(self, analyser: HelperAnalyser, ctx: _Context, path: list[_Frame]) -> None:
        self.analyser = analyser
        self.ctx = ctx
        self.path = path

    def after(self, level: int, falls: bool, exited: bool) -> list[_Effect]:
        """Effects once path[level].block[index] completes, outward to the end of the function."""
        effects: list[_Effect] = []
        for depth in range(level, -1, -1):
            frame = self.path[depth]
            if falls:
                run = _run(self.ctx, frame.block[frame.index + 1 :], "after the yield", not exited)
                effects.extend(run.effects)
                exited = exited or bool(run.exits)
                falls = run.falls
                owner = frame.owner
                if isinstance(owner, cst.Try) and frame.part == "body" and owner.orelse is not None and falls:
                    run = _run(self.ctx, _block(owner.orelse.body), "in `else` after the yield", not exited)
                    effects.extend(run.effects)
                    exited = exited or bool(run.exits)
                    falls = run.falls
            effects.extend(self._leave(frame, error=False))
        return effects

    def raise_at(self, level: int, effects: list[_Effect], notes: list[str]) -> list[_ErrorPath]:
        """The caller's exception leaves path[level].block[index]; follow it outward."""
        for depth in range(level, -1, -1):
            frame = self.path[depth]
            owner = frame.owner
            if isinstance(owner, cst.Try) and frame.part == "body" and owner.handlers:
                return self._handlers(depth, effects, notes)
            effects = effects + self._leave(frame, error=True)
        return [_ErrorPath(effects, "propagates", notes)]

    def _leave(self, frame: _Frame, error: bool) -> list[_Effect]:
        """What runs as control leaves `frame.owner`: a `finally`, or the with-items' exits."""
        owner = frame.owner
        if isinstance(owner, cst.Try) and owner.finalbody is not None and frame.part != "finally":
            return _run(self.ctx, _block(owner.finalbody.body), "in `finally`").effects
        if isinstance(owner, cst.With):
            return self._with_exits(owner, error)
        return []

    def _handlers(self, depth: int, effects: list[_Effect], notes: list[str]) -> list[_ErrorPath]:
        frame = self.path[depth]
        owner = frame.owner
        assert isinstance(owner, cst.Try)
        mod = self.ctx.mod
        paths: list[_ErrorPath] = []
        caught_all = False
        for handler in owner.handlers:
            caught_all = self._catches_all(handler)
            name = handler.name.name.value if handler.name and isinstance(handler.name.name, cst.Name) else None
            what = f"`except {mod.show(handler.type)}`" if handler.type is not None else "bare `except`"
            run = _run(replace(self.ctx, handler_name=name), _block(handler.body), f"in {what}")
            taken = effects + run.effects
            raises = [e for e in run.exits if isinstance(e, cst.Raise)]
            path_notes = list(notes)
            for statement in raises:
                if statement.exc is not None and _dotted(statement.exc) != name:
                    path_notes.append(f"{mod.where(statement)}: raises {mod.show(statement.exc)} instead of the caller's exception")
                else:
                    path_notes.append(f"{mod.where(statement)}: re-raises")
            leaving = taken + self._leave(frame, error=True)
            if not run.falls and len(raises) == len(run.exits):
                paths.extend(self.raise_at(depth - 1, leaving, path_notes))
            else:
                verb = "may not re-raise" if raises else "does not re-raise"
                path_notes.append(
                    f"{mod.where(handler)}: {what} {verb}: the helper SWALLOWS the caller's exception, "
                    "so it is not safe to substitute for anything"
                )
                if raises:
                    paths.extend(
                        replace(p, outcome="may-swallow") for p in self.raise_at(depth - 1, leaving, path_notes)
                    )
                rest = self.after(depth - 1, falls=run.falls, exited=bool(run.exits))
                paths.append(_ErrorPath(leaving + rest, "swallows", path_notes))
            if caught_all:
                break
        if not caught_all:
            paths.extend(self.raise_at(depth - 1, effects + self._leave(frame, error=True), notes))
        return paths

    def _catches_all(self, handler: cst.ExceptHandler) -> bool:
        if handler.type is None:
            return True
        types = [e.value for e in handler.type.elements] if isinstance(handler.type, cst.Tuple) else [handler.type]
        return any(self.ctx.mod.resolve(t) in _BROAD for t in types)

    def _with_exits(self, owner: cst.With, error: bool) -> list[_Effect]:
        effects: list[_Effect] = []
        mod = self.ctx.mod
        for item in reversed(owner.items):
            call = item.item
            if not isinstance(call, cst.Call):
                continue
            func = call.func
            if isinstance(func, cst.Attribute) and func.attr.value == "begin" and _dotted(func.value) == self.ctx.receiver:
                action: Action = "rollback" if error else "commit"
                when = "rolls back when the block raises" if error else "commits when the block succeeds"
                effects.append(_Effect(action, f"{mod.where(call)}: {mod.show(call)} {when}", True))
                continue
            if item.asname is None or _dotted(item.asname.name) != self.ctx.receiver:  # type: ignore[arg-type]
                continue
            inner = self.analyser._call(mod, call)
            primary = ("rollback", inner.rolls_back_on_error) if error else ("commit", inner.commits_on_exit)
            for action, fact in (primary, ("close", inner.closes)):
                if fact.value is not False:
                    evidence = f"{mod.where(call)}: with {mod.show(call)} as {self.ctx.receiver}: {fact.evidence}"
                    effects.append(_Effect(action, evidence, fact.value is True))  # type: ignore[arg-type]
        return effects


# -- facts from effects --------------------------------------------------------------------------


def _evidence(effects: Sequence[_Effect]) -> str:
    return "; ".join(dict.fromkeys(e.evidence for e in effects))


def _any(effects: Sequence[_Effect], action: Action) -> bool:
    return any(e.action == action for e in effects)


def _normal_fact(effects: Sequence[_Effect], action: Action, none: str) -> Fact:
    return _effects_fact([effects], action, none)


def _effects_fact(paths: Sequence[Sequence[_Effect]], action: Action, none: str) -> Fact:
    """True if every path surely does `action`, False if none may, else None."""
    sure = [[e for e in p if e.action == action and e.sure] for p in paths]
    maybe = [e for p in paths for e in p if e.action == action]
    if all(sure):
        return Fact(True, _evidence([e for s in sure for e in s]))
    if not maybe:
        return Fact(False, none)
    return Fact(None, f"only on some paths: {_evidence(maybe)}")


def _close_fact(normal: Sequence[_Effect], errors: Sequence[Sequence[_Effect]], none: str) -> Fact:
    return _effects_fact([normal, *errors], "close", none)


def _error_fact(errors: list[_ErrorPath], closes_somewhere: bool, location: str, session: str) -> Fact:
    none = f"{location}: no {session}.rollback() when the caller's block raises"
    if closes_somewhere:
        none += " (closing discards uncommitted work, but that is not a rollback() call)"
    fact = _effects_fact([p.effects for p in errors], "rollback", none)
    notes = list(dict.fromkeys(n for p in errors for n in p.notes))
    if notes:
        fact = Fact(fact.value, f"{fact.evidence}; {'; '.join(notes)}")
    return fact


def _swallows_in_exit(ctx: _Context, exit_name: str, error: _Run) -> str:
    """__exit__ returning a true value suppresses the caller's exception."""
    mod = ctx.mod
    notes = []
    for statement in error.exits:
        if not isinstance(statement, cst.Return) or statement.value is None:
            continue
        value = statement.value
        if m.matches(value, m.Name("False") | m.Name("None")):
            continue
        if m.matches(value, m.Name("True")):
            notes.append(
                f"{mod.where(statement)}: {exit_name} returns True: the helper SWALLOWS the caller's exception, "
                "so it is not safe to substitute for anything"
            )
        elif _effect(ctx, value, "", True) is None:
            notes.append(f"{mod.where(statement)}: {exit_name} returns {mod.show(value)}, which may swallow the exception")
    return "; ".join(notes)


def _merge(facts: Sequence[Fact]) -> Fact:
    values = {f.value for f in facts}
    evidence = "; ".join(dict.fromkeys(f.evidence for f in facts))
    if len(values) == 1:
        return Fact(values.pop(), evidence)
    return Fact(None, f"differs between paths: {evidence}")


@dataclass
class _Hierarchy:
    methods: dict[str, tuple[_Module, cst.FunctionDef]]
    session: _SessionBase | None  # a SQLAlchemy Session/AsyncSession is among the bases
    session_name: str | None
    unknown: list[str]

    def exit(self, flavour: _SessionBase) -> tuple[_Module, cst.FunctionDef] | None:
        return self.methods.get("__exit__" if flavour == "sync" else "__aexit__")


_DUNDERS = frozenset({"__enter__", "__exit__", "__aenter__", "__aexit__"})


def _unknown(name: str, why: str, location: str = "") -> HelperSemantics:
    fact = Fact(None, why)
    return HelperSemantics(name, "unknown", fact, fact, fact, location)


def _session_class(dotted: str, target: str) -> HelperSemantics:
    """SQLAlchemy's Session/AsyncSession as a context manager: it closes, and nothing else."""
    method = "__aexit__" if target in ASYNC_SESSIONS else "__exit__"
    short = target.rpartition(".")[2]
    return HelperSemantics(
        dotted,
        "class",
        Fact(False, f"{short}.{method} never commits (SQLAlchemy)"),
        Fact(False, f"{short}.{method} issues no rollback(); close() discards uncommitted work implicitly"),
        Fact(True, f"{short}.{method} calls close() (SQLAlchemy)"),
    )


def _maker_semantics(dotted: str, location: str, maker: str, flavour: _SessionBase) -> HelperSemantics:
    session = "AsyncSession" if flavour == "async" else "Session"
    method = "__aexit__" if flavour == "async" else "__exit__"
    return HelperSemantics(
        dotted,
        "sessionmaker",
        Fact(False, f"{location}: {maker}: a {session} used as a context manager never commits ({session}.{method} only closes)"),
        Fact(
            False,
            f"{location}: {maker}: {session}.{method} issues no rollback(); close() releases the connection, "
            "which discards uncommitted work implicitly, but that is not a rollback of the session",
        ),
        Fact(True, f"{location}: {maker}: {session}.{method} calls close()"),
        location,
    )
