"""The paths out of a helper's block, and the commit/rollback/close calls that run on them.

`sessionfix.semantics` decides what a helper is; this module walks its code: from a
@contextmanager's `yield` outward (the caller's block ending normally, or raising into the
generator), or through an `__exit__` with and without an exception. Each call found is an
`Effect` that is `sure` only when it runs on every path of the region walked; the fact helpers
at the bottom turn effects into `Fact`s, conservatively.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterator, Literal, Sequence, Union

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

from sessionfix.index import ModuleInfo, ProjectIndex, resolve_relative, dotted_name
from sessionfix.metadata import Wrapper
from sessionfix.model import Fact, HelperSemantics

Action = Literal["commit", "rollback", "close"]
Statement = Union[cst.BaseSmallStatement, cst.BaseCompoundStatement]
#: what a call inside a module opens as a context manager (supplied by the analyser)
CallSemantics = Callable[["ModuleView", cst.Call], HelperSemantics]

_ACTIONS = ("commit", "rollback", "close")
_BROAD = frozenset({"builtins.Exception", "builtins.BaseException"})


# -- the module being read --------------------------------------------------------------------


class _Metadata(cst.MetadataDependent):
    """Resolved metadata of one module, read through the public `get_metadata`."""

    METADATA_DEPENDENCIES = (PositionProvider, QualifiedNameProvider, ScopeProvider)

    def __init__(self, wrapper: MetadataWrapper) -> None:
        super().__init__()
        self.metadata = wrapper.resolve_many(self.METADATA_DEPENDENCIES)


@dataclass
class ModuleView:
    index: ProjectIndex
    info: ModuleInfo
    tree: cst.Module
    package: str
    display: str
    metadata: _Metadata

    @classmethod
    def read(cls, index: ProjectIndex, info: ModuleInfo) -> ModuleView:
        """Metadata for a project module the index has parsed (its tree, not a copy)."""
        assert info.tree is not None and info.path is not None
        wrapper = Wrapper(info.tree, unsafe_skip_copy=True)
        package = info.name if info.is_package else info.name.rpartition(".")[0]
        return cls(index, info, info.tree, package, index.display(info.path), _Metadata(wrapper))

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


def block_of(suite: cst.BaseSuite) -> list[Statement]:
    if isinstance(suite, cst.IndentedBlock):
        return _flatten(suite.body)
    assert isinstance(suite, cst.SimpleStatementSuite)
    return list(suite.body)


PART_NAMES = {
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
        yield "body", block_of(statement.body)
        for handler in statement.handlers:
            yield "handler", block_of(handler.body)
        if statement.orelse is not None:
            yield "orelse", block_of(statement.orelse.body)
        if statement.finalbody is not None:
            yield "finally", block_of(statement.finalbody.body)
    elif isinstance(statement, cst.With):
        yield "body", block_of(statement.body)
    elif isinstance(statement, cst.If):
        yield "if", block_of(statement.body)
        if isinstance(statement.orelse, cst.If):
            yield "if", [statement.orelse]
        elif isinstance(statement.orelse, cst.Else):
            yield "if", block_of(statement.orelse.body)
    elif isinstance(statement, (cst.For, cst.While)):
        yield "loop", block_of(statement.body)
        if statement.orelse is not None:
            yield "loop", block_of(statement.orelse.body)
    elif isinstance(statement, cst.Match):
        for case in statement.cases:
            yield "match", block_of(case.body)
    elif isinstance(statement, (cst.TryStar,)):
        yield "other", block_of(statement.body)
        for star_handler in statement.handlers:
            yield "other", block_of(star_handler.body)
        if statement.orelse is not None:
            yield "other", block_of(statement.orelse.body)
        if statement.finalbody is not None:
            yield "other", block_of(statement.finalbody.body)


@dataclass(frozen=True)
class Frame:
    """`block` is `owner`'s `part`; `block[index]` is the next statement towards the yield."""

    block: list[Statement]
    index: int
    owner: cst.CSTNode
    part: str


def locate(block: list[Statement], owner: cst.CSTNode, part: str, target: cst.Yield) -> list[Frame] | None:
    for index, statement in enumerate(block):
        if isinstance(statement, cst.Expr) and statement.value is target:
            return [Frame(block, index, owner, part)]
        if isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            continue
        for sub_part, sub_block in _parts(statement):
            found = locate(sub_block, statement, sub_part, target)
            if found is not None:
                return [Frame(block, index, owner, part), *found]
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


def yields_of(fn: cst.FunctionDef) -> list[cst.Yield]:
    collector = _Collect(cst.Yield)
    fn.body.visit(collector)
    return [n for n in collector.found if isinstance(n, cst.Yield)]


def returns_of(fn: cst.FunctionDef) -> list[cst.Return]:
    collector = _Collect(cst.Return)
    fn.body.visit(collector)
    return [n for n in collector.found if isinstance(n, cst.Return)]


def attribute_path(node: cst.BaseExpression, self_name: str) -> tuple[str, ...] | None:
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
class Effect:
    action: Action
    evidence: str
    sure: bool  # happens on every path through the region examined


@dataclass(frozen=True)
class Context:
    mod: ModuleView
    receiver: str  # the session as a dotted expression: "session", "self.session", "self"
    delegate: bool = False  # super().__exit__() is a Session's, which closes
    error: bool | None = None  # in an __exit__: whether an exception is being handled
    exc_params: frozenset[str] = frozenset()


@dataclass
class Run:
    effects: list[Effect]
    falls: bool  # control may reach the end of the block
    exits: list[cst.Return | cst.Raise]  # statements that may leave it early


def _effect(ctx: Context, expr: cst.BaseExpression | None, label: str, sure: bool) -> Effect | None:
    node = expr.expression if isinstance(expr, cst.Await) else expr
    if not isinstance(node, cst.Call) or not isinstance(node.func, cst.Attribute):
        return None
    method = node.func.attr.value
    target = node.func.value
    evidence = f"{ctx.mod.where(node)}: {ctx.mod.show(expr)} {label}"  # type: ignore[arg-type]
    if method in _ACTIONS and dotted_name(target) == ctx.receiver:
        return Effect(method, evidence, sure)  # type: ignore[arg-type]
    if ctx.delegate and isinstance(target, cst.Call) and ctx.mod.resolve(target.func) == "builtins.super":
        if method in _ACTIONS:
            return Effect(method, evidence, sure)  # type: ignore[arg-type]
        if method in ("__exit__", "__aexit__"):
            return Effect("close", f"{evidence}: the Session's own {method} closes", sure)
    return None


def _decide(ctx: Context, test: cst.BaseExpression) -> bool | None:
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
        sides = {dotted_name(test.left), dotted_name(comparison.comparator)}
        if "None" in sides and sides & ctx.exc_params:
            if isinstance(comparison.operator, cst.Is):
                return not ctx.error
            if isinstance(comparison.operator, cst.IsNot):
                return ctx.error
    return None


def run_block(ctx: Context, block: Sequence[Statement], label: str, sure: bool = True) -> Run:
    """Effects of running `block` straight through; `sure` marks those on every path."""
    run = Run([], True, [])
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
            _join(run, run_block(ctx, block_of(statement.body), label, now))
        elif isinstance(statement, (cst.FunctionDef, cst.ClassDef)):
            continue
        elif isinstance(statement, cst.BaseCompoundStatement):
            for _, sub in _parts(statement):
                inner = run_block(ctx, sub, label, False)
                run.effects.extend(inner.effects)
                run.exits.extend(inner.exits)
    return run


def _join(run: Run, inner: Run) -> None:
    run.effects.extend(inner.effects)
    run.exits.extend(inner.exits)
    run.falls = run.falls and inner.falls


def _run_if(ctx: Context, statement: cst.If, label: str, sure: bool) -> Run:
    orelse: list[Statement] = []
    if isinstance(statement.orelse, cst.If):
        orelse = [statement.orelse]
    elif isinstance(statement.orelse, cst.Else):
        orelse = block_of(statement.orelse.body)
    decided = _decide(ctx, statement.test)
    if decided is True:
        return run_block(ctx, block_of(statement.body), label, sure)
    if decided is False:
        return run_block(ctx, orelse, label, sure)
    first = run_block(ctx, block_of(statement.body), label, sure)
    second = run_block(ctx, orelse, label, sure)
    both = {e.action for e in first.effects if e.sure} & {e.action for e in second.effects if e.sure}
    effects = [replace(e, sure=e.sure and e.action in both) for e in first.effects + second.effects]
    return Run(effects, first.falls or second.falls, first.exits + second.exits)


def _run_try(ctx: Context, statement: cst.Try, label: str, sure: bool) -> Run:
    run = run_block(ctx, block_of(statement.body), label, sure)
    if run.falls and statement.orelse is not None:
        _join(run, run_block(ctx, block_of(statement.orelse.body), label, sure and not run.exits))
    for handler in statement.handlers:
        # handlers run only when the helper's own code fails: never on every path
        inner = run_block(ctx, block_of(handler.body), label, False)
        run.effects.extend(inner.effects)
        run.exits.extend(inner.exits)
        run.falls = run.falls or inner.falls
    if statement.finalbody is not None:
        final = run_block(ctx, block_of(statement.finalbody.body), f"in `finally` ({label})", sure)
        _join(run, final)
    return run


# -- a @contextmanager generator, outward from its yield ----------------------------------------


@dataclass
class ErrorPath:
    effects: list[Effect]
    #: "replaces": an `except` raises another exception (`raise X from e`) instead of the caller's
    outcome: Literal["propagates", "replaces", "swallows", "may-swallow"]
    notes: list[str]
    why: tuple[str, ...] = ()  # file:line of what swallows or replaces the exception on this path


class GeneratorWalk:
    """What runs after the yield: normally (`after`) and when the caller's block raises."""

    def __init__(self, call_semantics: CallSemantics, ctx: Context, path: list[Frame]) -> None:
        self.call_semantics = call_semantics
        self.ctx = ctx
        self.path = path

    def after(self, level: int, falls: bool, exited: bool) -> list[Effect]:
        """Effects once path[level].block[index] completes, outward to the end of the function."""
        effects: list[Effect] = []
        for depth in range(level, -1, -1):
            frame = self.path[depth]
            if falls:
                run = run_block(self.ctx, frame.block[frame.index + 1 :], "after the yield", not exited)
                effects.extend(run.effects)
                exited = exited or bool(run.exits)
                falls = run.falls
                owner = frame.owner
                if isinstance(owner, cst.Try) and frame.part == "body" and owner.orelse is not None and falls:
                    run = run_block(self.ctx, block_of(owner.orelse.body), "in `else` after the yield", not exited)
                    effects.extend(run.effects)
                    exited = exited or bool(run.exits)
                    falls = run.falls
            effects.extend(self._leave(frame, error=False))
        return effects

    def raise_at(self, level: int, effects: list[Effect], notes: list[str]) -> list[ErrorPath]:
        """The caller's exception leaves path[level].block[index]; follow it outward."""
        for depth in range(level, -1, -1):
            frame = self.path[depth]
            owner = frame.owner
            if isinstance(owner, cst.Try) and frame.part == "body" and owner.handlers:
                return self._handlers(depth, effects, notes)
            effects = effects + self._leave(frame, error=True)
        return [ErrorPath(effects, "propagates", notes)]

    def _leave(self, frame: Frame, error: bool) -> list[Effect]:
        """What runs as control leaves `frame.owner`: a `finally`, or the with-items' exits."""
        owner = frame.owner
        if isinstance(owner, cst.Try) and owner.finalbody is not None and frame.part != "finally":
            return run_block(self.ctx, block_of(owner.finalbody.body), "in `finally`").effects
        if isinstance(owner, cst.With):
            return self._with_exits(owner, error)
        return []

    def _handlers(self, depth: int, effects: list[Effect], notes: list[str]) -> list[ErrorPath]:
        frame = self.path[depth]
        owner = frame.owner
        assert isinstance(owner, cst.Try)
        mod = self.ctx.mod
        paths: list[ErrorPath] = []
        caught_all = False
        for handler in owner.handlers:
            caught_all = self._catches_all(handler)
            name = handler.name.name.value if handler.name and isinstance(handler.name.name, cst.Name) else None
            what = f"`except {mod.show(handler.type)}`" if handler.type is not None else "bare `except`"
            run = run_block(self.ctx, block_of(handler.body), f"in {what}")
            taken = effects + run.effects
            raises = [e for e in run.exits if isinstance(e, cst.Raise)]
            path_notes = list(notes)
            replacing: list[str] = []
            for statement in raises:
                # `raise e` of the caught name (with or without `from`) re-raises the same object
                if statement.exc is not None and (name is None or dotted_name(statement.exc) != name):
                    raised = mod.show(statement.exc)
                    path_notes.append(f"{mod.where(statement)}: raises {raised} instead of the caller's exception")
                    replacing.append(f"{mod.where(statement)}: {what} raises {raised} instead")
                else:
                    path_notes.append(f"{mod.where(statement)}: re-raises")
            leaving = taken + self._leave(frame, error=True)
            if not run.falls and len(raises) == len(run.exits):
                found = self.raise_at(depth - 1, leaving, path_notes)
                paths.extend(_replaced(found, replacing) if replacing else found)
            else:
                verb = "may not re-raise" if raises else "does not re-raise"
                path_notes.append(
                    f"{mod.where(handler)}: {what} {verb}: the helper SWALLOWS the caller's exception, "
                    "so it is not safe to substitute for anything"
                )
                why = (f"{mod.where(handler)}: {what} {verb}",)
                if raises:
                    found = self.raise_at(depth - 1, leaving, path_notes)
                    paths.extend(replace(p, outcome="may-swallow", why=p.why + why) for p in found)
                rest = self.after(depth - 1, falls=run.falls, exited=bool(run.exits))
                paths.append(ErrorPath(leaving + rest, "swallows", path_notes, why))
            if caught_all:
                break
        if not caught_all:
            paths.extend(self.raise_at(depth - 1, effects + self._leave(frame, error=True), notes))
        return paths

    def suppressors(self) -> tuple[list[str], list[str]]:
        """What around the yield stops the caller's exception whatever the handlers do.

        (surely, maybe): a `finally` that returns discards the exception (surely), one that
        raises may replace it (maybe); so does a `with` that binds the session and whose exit
        swallows (surely) or may (maybe). Every error path leaves through these frames.
        """
        mod = self.ctx.mod
        surely: list[str] = []
        maybe: list[str] = []
        for frame in self.path[1:]:
            owner = frame.owner
            if isinstance(owner, cst.Try) and owner.finalbody is not None:
                final = run_block(self.ctx, block_of(owner.finalbody.body), "in `finally`")
                for statement in final.exits:
                    if isinstance(statement, cst.Return):
                        surely.append(f"{mod.where(statement)}: `return` in `finally` discards the caller's exception")
                    elif statement.exc is not None:
                        maybe.append(f"{mod.where(statement)}: `finally` may raise {mod.show(statement.exc)} instead")
            if not isinstance(owner, cst.With):
                continue
            for item in owner.items:
                target = item.asname.name if item.asname is not None else None
                if not isinstance(target, (cst.Name, cst.Attribute)) or dotted_name(target) != self.ctx.receiver:
                    continue
                if not isinstance(item.item, cst.Call):
                    maybe.append(f"{mod.where(item.item)}: cannot tell whether {mod.show(item.item)} re-raises")
                    continue
                fact = self.call_semantics(mod, item.item).propagates_errors
                if fact.value is not True:
                    prefix = f"{mod.where(item.item)}: with {mod.show(item.item)} as {self.ctx.receiver}: "
                    (surely if fact.value is False else maybe).append(prefix + fact.evidence)
        return surely, maybe

    def _catches_all(self, handler: cst.ExceptHandler) -> bool:
        if handler.type is None:
            return True
        types = [e.value for e in handler.type.elements] if isinstance(handler.type, cst.Tuple) else [handler.type]
        return any(self.ctx.mod.resolve(t) in _BROAD for t in types)

    def _with_exits(self, owner: cst.With, error: bool) -> list[Effect]:
        effects: list[Effect] = []
        mod = self.ctx.mod
        for item in reversed(owner.items):
            call = item.item
            binds = item.asname is not None and dotted_name(item.asname.name) == self.ctx.receiver  # type: ignore[arg-type]
            if not isinstance(call, cst.Call):
                if binds:  # `with some_object as session`: what its exit does is not followed
                    why = f"{mod.where(call)}: cannot tell what {mod.show(call)} does when its block ends"
                    effects.extend(Effect(a, why, False) for a in ("rollback" if error else "commit", "close"))
                continue
            func = call.func
            begins = isinstance(func, cst.Attribute) and func.attr.value == "begin"
            if begins and dotted_name(func.value) == self.ctx.receiver:  # type: ignore[union-attr]
                action: Action = "rollback" if error else "commit"
                when = "rolls back when the block raises" if error else "commits when the block succeeds"
                effects.append(Effect(action, f"{mod.where(call)}: {mod.show(call)} {when}", True))
                continue
            if not binds:
                continue
            inner = self.call_semantics(mod, call)
            primary = ("rollback", inner.rolls_back_on_error) if error else ("commit", inner.commits_on_exit)
            for action, fact in (primary, ("close", inner.closes)):
                if fact.value is not False:
                    evidence = f"{mod.where(call)}: with {mod.show(call)} as {self.ctx.receiver}: {fact.evidence}"
                    effects.append(Effect(action, evidence, fact.value is True))  # type: ignore[arg-type]
        return effects


# -- facts from effects --------------------------------------------------------------------------


def _evidence(effects: Sequence[Effect]) -> str:
    return "; ".join(dict.fromkeys(e.evidence for e in effects))


def any_effect(effects: Sequence[Effect], action: Action) -> bool:
    return any(e.action == action for e in effects)


def normal_fact(effects: Sequence[Effect], action: Action, none: str) -> Fact:
    return effects_fact([effects], action, none)


def effects_fact(paths: Sequence[Sequence[Effect]], action: Action, none: str) -> Fact:
    """True if every path surely does `action`, False if none may, else None."""
    sure = [[e for e in p if e.action == action and e.sure] for p in paths]
    maybe = [e for p in paths for e in p if e.action == action]
    if all(sure):
        return Fact(True, _evidence([e for s in sure for e in s]))
    if not maybe:
        return Fact(False, none)
    return Fact(None, f"only on some paths: {_evidence(maybe)}")


def close_fact(normal: Sequence[Effect], errors: Sequence[Sequence[Effect]], none: str) -> Fact:
    return effects_fact([normal, *errors], "close", none)


def error_fact(errors: list[ErrorPath], closes_somewhere: bool, location: str, session: str) -> Fact:
    none = f"{location}: no {session}.rollback() when the caller's block raises"
    if closes_somewhere:
        none += " (closing discards uncommitted work, but that is not a rollback() call)"
    fact = effects_fact([p.effects for p in errors], "rollback", none)
    notes = list(dict.fromkeys(n for p in errors for n in p.notes))
    if notes:
        fact = Fact(fact.value, f"{fact.evidence}; {'; '.join(notes)}")
    return fact


def _replaced(paths: list[ErrorPath], why: list[str]) -> list[ErrorPath]:
    why_ = tuple(why)
    return [replace(p, outcome="replaces", why=p.why + why_) if p.outcome == "propagates" else p for p in paths]


def propagation_fact(errors: list[ErrorPath], suppressors: tuple[list[str], list[str]], location: str) -> Fact:
    """True when the caller's exception leaves the helper unchanged on every path."""
    surely, maybe = suppressors
    swallowing = [w for p in errors if p.outcome in ("swallows", "may-swallow") for w in p.why] + surely
    if swallowing:
        return Fact(False, "swallows the caller's exception: " + "; ".join(dict.fromkeys(swallowing)))
    replacing = [w for p in errors if p.outcome == "replaces" for w in p.why]
    if replacing:
        return Fact(False, "replaces the caller's exception: " + "; ".join(dict.fromkeys(replacing)))
    if maybe:
        return Fact(None, "may not re-raise the caller's exception: " + "; ".join(dict.fromkeys(maybe)))
    reraises = list(dict.fromkeys(n for p in errors for n in p.notes))
    if reraises:
        return Fact(True, "; ".join(reraises))
    return Fact(True, f"{location}: nothing around the yield catches the caller's exception")


def exit_propagation_fact(ctx: Context, exit_name: str, error: Run, where: str) -> Fact:
    """__exit__ with an exception: a truthy return swallows it, `raise X` replaces it."""
    mod = ctx.mod
    swallows: list[str] = []
    unsure: list[str] = []
    replaces: list[str] = []
    for statement in error.exits:
        if isinstance(statement, cst.Raise):
            exc = statement.exc
            if exc is not None and not (isinstance(exc, cst.Name) and exc.value in ctx.exc_params):
                replaces.append(f"{mod.where(statement)}: {exit_name} raises {mod.show(exc)} instead")
            continue
        value = statement.value
        if value is None or m.matches(value, m.Name("False") | m.Name("None")):
            continue
        if m.matches(value, m.Name("True")):
            swallows.append(f"{mod.where(statement)}: {exit_name} returns True")
        elif _effect(ctx, value, "", True) is None:
            unsure.append(f"{mod.where(statement)}: {exit_name} returns {mod.show(value)}, which may be true")
    if swallows:
        return Fact(False, "swallows the caller's exception: " + "; ".join(swallows))
    if replaces:
        return Fact(False, "replaces the caller's exception: " + "; ".join(replaces))
    if unsure:
        return Fact(None, "may swallow the caller's exception: " + "; ".join(unsure))
    return Fact(True, f"{where}: {exit_name} returns nothing true and raises nothing else: the exception propagates")


def swallows_in_exit(ctx: Context, exit_name: str, error: Run) -> str:
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
            shown = mod.show(value)
            notes.append(f"{mod.where(statement)}: {exit_name} returns {shown}, which may swallow the exception")
    return "; ".join(notes)


def merge_facts(facts: Sequence[Fact]) -> Fact:
    values = {f.value for f in facts}
    evidence = "; ".join(dict.fromkeys(f.evidence for f in facts))
    if len(values) == 1:
        return Fact(values.pop(), evidence)
    return Fact(None, f"differs between paths: {evidence}")
