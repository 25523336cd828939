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

import weakref
from dataclasses import dataclass, replace
from typing import Literal

import libcst as cst
import libcst.matchers as m

from sessionfix.exitpaths import (
    PART_NAMES,
    Context,
    GeneratorWalk,
    ModuleView,
    any_effect,
    attribute_path,
    block_of,
    close_fact,
    effects_fact,
    error_fact,
    exit_propagation_fact,
    locate,
    merge_facts,
    normal_fact,
    propagation_fact,
    returns_of,
    run_block,
    swallows_in_exit,
    yields_of,
)
from sessionfix.index import ASYNC_SESSIONS, SESSIONS, ModuleInfo, ProjectIndex
from sessionfix.model import Fact, HelperSemantics

CONTEXTMANAGER = frozenset({"contextlib.contextmanager"})
ASYNCCONTEXTMANAGER = frozenset({"contextlib.asynccontextmanager"})
SESSIONMAKERS = frozenset({"sqlalchemy.orm.sessionmaker", "sqlalchemy.orm.session.sessionmaker"})
ASYNC_SESSIONMAKERS = frozenset(
    {"sqlalchemy.ext.asyncio.async_sessionmaker", "sqlalchemy.ext.asyncio.session.async_sessionmaker"}
)

_SessionBase = Literal["sync", "async"]
_ANALYSERS: weakref.WeakKeyDictionary[ProjectIndex, HelperAnalyser] = weakref.WeakKeyDictionary()


# -- public API ---------------------------------------------------------------------------------


def analyse_helper(index: ProjectIndex, dotted: str) -> HelperSemantics:
    """Semantics of `with <dotted>() as s:`; `X.begin` means `with X.begin() as s:`.

    Results are cached per index (an index is read-only once built), so rules may ask per site.
    """
    analyser = _ANALYSERS.get(index)
    if analyser is None:
        analyser = _ANALYSERS[index] = HelperAnalyser(index)
    return analyser.analyse(dotted)


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
        ("re-raises errors", semantics.propagates_errors),
    ):
        rows.append((label, {True: "yes", False: "no", None: "unknown"}[fact.value], fact.evidence))
    return rows


class HelperAnalyser:
    """Analyses the helpers of one project; keep one per run to share parsed metadata."""

    def __init__(self, index: ProjectIndex) -> None:
        self.index = index
        self._modules: dict[str, ModuleView] = {}
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

    def _module(self, info: ModuleInfo) -> ModuleView:
        if info.name not in self._modules:
            assert info.tree is not None and info.path is not None
            self._modules[info.name] = ModuleView.read(self.index, info)
        return self._modules[info.name]

    def _project_class(self, target: str | None) -> tuple[ModuleView, cst.ClassDef] | None:
        found = self.index.definition(target) if target is not None else None
        if found is None or found[0].tree is None or found[0].path is None:
            return None
        mod = self._module(found[0])
        node = mod.top_level(found[1], found[2].line)
        return (mod, node) if isinstance(node, cst.ClassDef) else None

    def _call(self, mod: ModuleView, call: cst.Call) -> HelperSemantics:
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

    def _function(self, dotted: str, mod: ModuleView, fn: cst.FunctionDef, location: str) -> HelperSemantics:
        name = fn.name.value
        is_async = fn.asynchronous is not None
        yields = yields_of(fn)
        if not fn.decorators:
            if yields:
                why = (
                    f"{location}: {name} is a generator without @contextmanager "
                    "(a FastAPI-style dependency?), not a context manager"
                )
                return _unknown(dotted, why, location)
            if is_async:
                why = (
                    f"{location}: async def {name} is not a generator; "
                    "calling it gives a coroutine, not a context manager"
                )
                return _unknown(dotted, why, location)
            return self._factory(dotted, mod, fn, location)
        if len(fn.decorators) > 1:
            count = len(fn.decorators)
            why = f"{location}: {name} has {count} decorators; sessionfix follows only a lone @contextmanager"
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

    def _factory(self, dotted: str, mod: ModuleView, fn: cst.FunctionDef, location: str) -> HelperSemantics:
        """A plain function: `with f() as s` means whatever the returned object's context does."""
        returns = returns_of(fn)
        if not returns:
            return _unknown(dotted, f"{location}: {fn.name.value} returns nothing", location)
        facts: list[_Facts] = []
        for ret in returns:
            if not isinstance(ret.value, cst.Call):
                what = mod.show(ret.value) if ret.value else "None"
                why = f"{mod.where(ret)}: returns {what}, not a call sessionfix can follow"
                return _unknown(dotted, why, location, "factory")
            inner = self._call(mod, ret.value)
            facts.append(_prefixed(f"{mod.where(ret)}: returns {mod.show(ret.value)}; ", _facts(inner)))
        commits, rolls, closes, propagates = (merge_facts([f[i] for f in facts]) for i in range(4))
        return HelperSemantics(dotted, "factory", commits, rolls, closes, location, propagates)

    def _generator(
        self, dotted: str, mod: ModuleView, fn: cst.FunctionDef, kind: str, yields: list[cst.Yield], location: str
    ) -> HelperSemantics:
        def unknown(why: str) -> HelperSemantics:
            return _unknown(dotted, why, location, kind)

        if len(yields) != 1:
            return unknown(f"{location}: {fn.name.value} has {len(yields)} yields; sessionfix follows exactly one")
        (yielded,) = yields
        if not isinstance(yielded.value, cst.Name):
            what = mod.show(yielded.value) if yielded.value is not None else "nothing"
            return unknown(f"{mod.where(yielded)}: yields {what}, not a session held in a name")
        path = locate(block_of(fn.body), fn, "function", yielded)
        if path is None:
            return unknown(f"{mod.where(yielded)}: the yield is not a statement of its own")
        for frame in path[1:]:
            if not (isinstance(frame.owner, cst.Try) and frame.part in ("body", "orelse")) and not (
                isinstance(frame.owner, cst.With) and frame.part == "body"
            ):
                return unknown(
                    f"{mod.where(yielded)}: the yield is inside {PART_NAMES[frame.part]}, "
                    "so it does not run on every path"
                )
        session = yielded.value.value
        ctx = Context(mod, session)
        walk = GeneratorWalk(self._call, ctx, path)
        normal = walk.after(len(path) - 1, falls=True, exited=False)
        errors = walk.raise_at(len(path) - 1, [], [])
        return HelperSemantics(
            dotted,
            kind,
            normal_fact(normal, "commit", f"{location}: no {session}.commit() after the yield on the normal path"),
            error_fact(errors, closes_somewhere=any_effect(normal, "close"), location=location, session=session),
            close_fact(normal, [p.effects for p in errors], f"{location}: {session} is never closed"),
            location,
            propagation_fact(errors, walk.suppressors(), location),
        )

    # -- classes ------------------------------------------------------------------------------

    def _class(self, dotted: str, mod: ModuleView, cls: cst.ClassDef, location: str) -> HelperSemantics:
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
                return _unknown(dotted, result, location, "class")
        facts = [r for r in results if not isinstance(r, str)]
        commits, rolls, closes, propagates = (merge_facts([f[i] for f in facts]) for i in range(4))
        return HelperSemantics(dotted, "class", commits, rolls, closes, location, propagates)

    def _hierarchy(self, mod: ModuleView, cls: cst.ClassDef, depth: int = 0) -> _Hierarchy:
        """The dunder methods a project class has or inherits from project bases."""
        result = _Hierarchy({}, None, None, [])
        for statement in block_of(cls.body):
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
            found = self._project_class(target) if depth < 20 else None
            if found is None:
                result.unknown.append(mod.show(base.value))
                continue
            inner = self._hierarchy(*found, depth + 1)
            for name, method in inner.methods.items():
                result.methods.setdefault(name, method)
            result.session = result.session or inner.session
            result.session_name = result.session_name or inner.session_name
            result.unknown.extend(inner.unknown)
        return result

    def _exit_facts(
        self, mod: ModuleView, cls: cst.ClassDef, hierarchy: _Hierarchy, flavour: _SessionBase
    ) -> _Facts | str:
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
        base = Context(exit_mod, receiver, delegate=delegate, exc_params=frozenset(params[1:]))
        body = block_of(exit_fn.body)
        normal = run_block(replace(base, error=False), body, f"in {exit_name} when the block succeeds")
        error = run_block(replace(base, error=True), body, f"in {exit_name} when the block raises")
        where = exit_mod.where(exit_fn)
        commits = normal_fact(
            normal.effects, "commit", f"{where}: {exit_name} does not call {receiver}.commit() when the block succeeds"
        )
        rolls = effects_fact(
            [error.effects], "rollback", f"{where}: {exit_name} does not call {receiver}.rollback() when the block raises"
        )
        notes = swallows_in_exit(replace(base, error=True), exit_name, error)
        if notes:
            rolls = Fact(rolls.value, f"{rolls.evidence}; {notes}")
        closes = close_fact(normal.effects, [error.effects], f"{where}: {exit_name} never closes {receiver}")
        propagates = exit_propagation_fact(replace(base, error=True), exit_name, error, where)
        return commits, rolls, closes, propagates

    def _receiver(self, hierarchy: _Hierarchy, enter_name: str) -> tuple[str, ...] | str:
        """Which attribute of self __enter__ hands out: () for self, ("session",) for self.session."""
        found = hierarchy.methods.get(enter_name)
        if found is None:
            if hierarchy.session is not None:
                return ()  # Session.__enter__ returns self
            return f"no {enter_name} sessionfix can see"
        enter_mod, enter_fn = found
        params = enter_fn.params.params
        returns = returns_of(enter_fn)
        paths = {attribute_path(r.value, params[0].name.value) if params and r.value else None for r in returns}
        if len(paths) != 1 or None in paths:
            return f"{enter_mod.where(enter_fn)}: cannot tell which session {enter_name} returns"
        (path,) = paths
        assert path is not None
        if not path and hierarchy.session is None:
            return f"{enter_mod.where(enter_fn)}: {enter_name} returns the helper object itself, not a session"
        return path

    # -- sessionmakers ------------------------------------------------------------------------

    def _assigned(
        self, dotted: str, mod: ModuleView, name: str, value: cst.BaseExpression, location: str
    ) -> HelperSemantics:
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
        self, dotted: str, mod: ModuleView, value: cst.BaseExpression, flavour: _SessionBase, maker: str, location: str
    ) -> HelperSemantics:
        """`sessionmaker(class_=C)`: the session's context is C's, read if C overrides it."""
        target = mod.resolve(value)
        if target in SESSIONS | ASYNC_SESSIONS:
            return _maker_semantics(dotted, location, maker, flavour)
        found = self._project_class(target)
        if found is None:
            why = (
                f"{location}: class_={mod.show(value)} ({target or 'unresolved'}) "
                "is not a project class sessionfix can read"
            )
            return _unknown(dotted, why, location, "sessionmaker")
        class_mod, node = found
        hierarchy = self._hierarchy(class_mod, node)
        exit_name = "__exit__" if flavour == "sync" else "__aexit__"
        if hierarchy.exit(flavour) is None:
            if hierarchy.session is not None and not hierarchy.unknown:
                kept = f"{maker} (class_ {node.name.value} keeps {exit_name})"
                return _maker_semantics(dotted, location, kept, flavour)
            why = f"{location}: class_={node.name.value} is not a Session subclass sessionfix can follow"
            return _unknown(dotted, why, location, "sessionmaker")
        result = self._exit_facts(class_mod, node, hierarchy, flavour)
        if isinstance(result, str):
            return _unknown(dotted, result, location, "sessionmaker")
        commits, rolls, closes, propagates = _prefixed(
            f"{location}: class_={node.name.value} overrides {exit_name}; ", result
        )
        return HelperSemantics(dotted, "sessionmaker", commits, rolls, closes, location, propagates)

    def _begin(self, dotted: str, base: str) -> HelperSemantics:
        maker = self.analyse(base)
        if maker.kind != "sessionmaker":
            why = f"{dotted}: {base} is not a sessionmaker (kind {maker.kind}), so .begin() is not understood"
            return _unknown(dotted, why, maker.location)
        where = maker.location
        short = base.rpartition(".")[2]
        commits = Fact(
            True, f"{where}: {short}.begin() commits when the block succeeds (sessionmaker.begin() wraps Session.begin())"
        )
        rolls = Fact(True, f"{where}: {short}.begin() rolls back when the block raises, then re-raises")
        if maker.propagates_errors.value is not True:  # a class_ whose __exit__ swallows
            propagates = maker.propagates_errors
        else:
            propagates = Fact(True, f"{where}: {short}.begin() re-raises the caller's exception after the rollback")
        return HelperSemantics(dotted, "sessionmaker.begin", commits, rolls, maker.closes, where, propagates)


@dataclass
class _Hierarchy:
    methods: dict[str, tuple[ModuleView, cst.FunctionDef]]
    session: _SessionBase | None  # a SQLAlchemy Session/AsyncSession is among the bases
    session_name: str | None
    unknown: list[str]

    def exit(self, flavour: _SessionBase) -> tuple[ModuleView, cst.FunctionDef] | None:
        return self.methods.get("__exit__" if flavour == "sync" else "__aexit__")


_DUNDERS = frozenset({"__enter__", "__exit__", "__aenter__", "__aexit__"})


def _unknown(name: str, why: str, location: str = "", kind: str = "unknown") -> HelperSemantics:
    """Four undecided facts that all say why; `kind` stays when only the body defeats us."""
    fact = Fact(None, why)
    return HelperSemantics(name, kind, fact, fact, fact, location, fact)


#: commits_on_exit, rolls_back_on_error, closes, propagates_errors
_Facts = tuple[Fact, Fact, Fact, Fact]


def _facts(semantics: HelperSemantics) -> _Facts:
    return semantics.commits_on_exit, semantics.rolls_back_on_error, semantics.closes, semantics.propagates_errors


def _prefixed(prefix: str, facts: _Facts) -> _Facts:
    commits, rolls, closes, propagates = (Fact(f.value, prefix + f.evidence) for f in facts)
    return commits, rolls, closes, propagates


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
        propagates_errors=Fact(True, f"{short}.{method} returns None: the caller's exception propagates (SQLAlchemy)"),
    )


def _maker_semantics(dotted: str, location: str, maker: str, flavour: _SessionBase) -> HelperSemantics:
    session = "AsyncSession" if flavour == "async" else "Session"
    method = "__aexit__" if flavour == "async" else "__exit__"
    return HelperSemantics(
        dotted,
        "sessionmaker",
        Fact(
            False,
            f"{location}: {maker}: a {session} used as a context manager never commits ({session}.{method} only closes)",
        ),
        Fact(
            False,
            f"{location}: {maker}: {session}.{method} issues no rollback(); close() releases the connection, "
            "which discards uncommitted work implicitly, but that is not a rollback of the session",
        ),
        Fact(True, f"{location}: {maker}: {session}.{method} calls close()"),
        location,
        Fact(True, f"{location}: {maker}: {session}.{method} returns None, so the caller's exception propagates"),
    )
