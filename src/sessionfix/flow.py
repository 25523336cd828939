"""Path analysis of a block that owns a session: is work left uncommitted on some normal exit?

Replacing a raw session's `with` (which only closes) by a helper that commits on exit is
behaviour-preserving exactly when every normal way out of the block leaves nothing for that
commit to do: the last thing the path did with the session was `commit()` or `rollback()`, and
nothing after it could have touched the database. The analysis walks the block's statements with a
two-valued state per path: clean, or dirty with the statement that made it so (for the reason).
Exceptional exits need no care here: the helper's rollback and the raw session's close both
discard the open transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator, Sequence, Union

import libcst as cst
import libcst.matchers as m

#: None is clean; a node is dirty since that statement
State = Union[cst.CSTNode, None]
_UNREACHABLE = object()


def _join(a: object, b: object) -> object:
    if a is _UNREACHABLE:
        return b
    if b is _UNREACHABLE:
        return a
    return a if a is not None else b


@dataclass
class Outcome:
    fall: object = None  # State, or _UNREACHABLE
    exits: list[State] = field(default_factory=list)  # normal exits that leave the block
    breaks: list[State] = field(default_factory=list)  # loop control inside the block
    continues: list[State] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return self.fall is not _UNREACHABLE


def session_method(stmt: cst.CSTNode, session: str, *, is_async: bool) -> str | None:
    """'commit' for a statement line that is exactly `s.commit()` (or `await s.commit()`)."""
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return None
    return session_call(stmt.body[0], session, is_async=is_async)


def session_call(small: cst.BaseSmallStatement, session: str, *, is_async: bool) -> str | None:
    """'commit' for a small statement that is exactly `s.commit()` (or `await s.commit()`)."""
    if not isinstance(small, cst.Expr):
        return None
    value = small.value
    if is_async:
        if not isinstance(value, cst.Await):
            return None
        value = value.expression
    if m.matches(value, m.Call(func=m.Attribute(value=m.Name(session), attr=m.Name()), args=[])):
        assert isinstance(value, cst.Call) and isinstance(value.func, cst.Attribute)
        return value.func.attr.value
    return None


@dataclass
class PathAnalysis:
    """Walks a block owned by `session`; `is_log_call` says which calls cannot touch the database."""

    session: str | None
    is_async: bool
    is_log_call: Callable[[cst.Call], bool]
    #: calls that cannot reach the database when their arguments cannot (builtins like enumerate)
    is_pure_call: Callable[[cst.Call], bool] = lambda call: False
    #: names bound by `except ... as e`: reading their attributes cannot reach the database
    exception_names: set[str] = field(default_factory=set)

    def inert(self, expr: cst.BaseExpression | None) -> bool:
        """An expression that cannot reach the database (no calls into unknown code, no ORM
        attribute loads)."""
        if expr is None:
            return True
        if isinstance(expr, (cst.Name, cst.Integer, cst.Float, cst.Imaginary, cst.SimpleString, cst.Ellipsis)):
            return True
        if isinstance(expr, cst.ConcatenatedString):
            return self.inert(expr.left) and self.inert(expr.right)
        if isinstance(expr, cst.FormattedString):
            return all(
                not isinstance(part, cst.FormattedStringExpression) or self.inert(part.expression)
                for part in expr.parts
            )
        if isinstance(expr, cst.UnaryOperation):
            return self.inert(expr.expression)
        if isinstance(expr, (cst.BinaryOperation, cst.BooleanOperation)):
            return self.inert(expr.left) and self.inert(expr.right)
        if isinstance(expr, cst.Comparison):
            return self.inert(expr.left) and all(self.inert(c.comparator) for c in expr.comparisons)
        if isinstance(expr, (cst.Tuple, cst.List, cst.Set)):
            return all(self.inert(e.value) for e in expr.elements)
        if isinstance(expr, cst.Subscript):
            return self.inert(expr.value) and all(
                isinstance(e.slice, cst.Index) and self.inert(e.slice.value) for e in expr.slice
            )
        if isinstance(expr, cst.Attribute):
            return isinstance(expr.value, cst.Name) and expr.value.value in self.exception_names
        if isinstance(expr, cst.Call):
            return self.is_pure_call(expr) and all(self.inert(arg.value) for arg in expr.args)
        if isinstance(expr, cst.Lambda):
            return True  # not executed here
        return False

    # -- statements -------------------------------------------------------------------------

    def neutral(self, small: cst.BaseSmallStatement) -> bool:
        if isinstance(small, (cst.Pass, cst.Global, cst.Nonlocal, cst.Import, cst.ImportFrom)):
            return True
        if isinstance(small, cst.Expr):
            value = small.value
            return (
                isinstance(value, cst.Call)
                and self.is_log_call(value)
                and all(self.inert(arg.value) for arg in value.args)
            ) or self.inert(value)
        if isinstance(small, cst.Assign):
            return all(isinstance(t.target, cst.Name) for t in small.targets) and self.inert(small.value)
        if isinstance(small, (cst.AugAssign, cst.AnnAssign)):
            return isinstance(small.target, cst.Name) and self.inert(small.value)
        if isinstance(small, cst.Del):
            return isinstance(small.target, cst.Name)
        return False

    def touches(self, node: cst.CSTNode) -> cst.CSTNode | None:
        """The first statement under `node` that is not neutral (it may touch the database)."""
        for stmt in _statements(node):
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, (cst.Return, cst.Break, cst.Continue, cst.Raise)):
                        if getattr(small, "value", None) is not None and not self.inert(small.value):  # type: ignore[union-attr]
                            return stmt
                        continue
                    if not self.neutral(small):
                        return stmt
        return None

    def block(self, stmts: Sequence[cst.BaseStatement], state: State, loop_depth: int = 0) -> Outcome:
        out = Outcome(fall=state)
        for stmt in stmts:
            if not out.reachable:
                break
            step = self.statement(stmt, out.fall, loop_depth)  # type: ignore[arg-type]
            out.exits += step.exits
            out.breaks += step.breaks
            out.continues += step.continues
            out.fall = step.fall
        return out

    def statement(self, stmt: cst.BaseStatement, state: State, loop_depth: int) -> Outcome:
        if isinstance(stmt, cst.SimpleStatementLine):
            return self.simple(stmt, state, loop_depth)
        if isinstance(stmt, cst.If):
            body = self.block(stmt.body.body, state, loop_depth)
            other = (
                self.statement(stmt.orelse, state, loop_depth)
                if isinstance(stmt.orelse, cst.If)
                else self.block(stmt.orelse.body.body, state, loop_depth)
                if stmt.orelse is not None
                else Outcome(fall=state)
            )
            return _merge(body, other)
        if isinstance(stmt, (cst.For, cst.While)):
            return self.loop(stmt, state, loop_depth)
        if isinstance(stmt, (cst.Try, cst.TryStar)):
            return self.try_(stmt, state, loop_depth)
        if isinstance(stmt, cst.With):
            return self.with_(stmt, state, loop_depth)
        if isinstance(stmt, cst.Match):
            result = Outcome(fall=_UNREACHABLE)
            for case in stmt.cases:
                result = _merge(result, self.block(case.body.body, state, loop_depth))
            return _merge(result, Outcome(fall=stmt if self.touches(stmt.subject) else state))
        if isinstance(stmt, (cst.FunctionDef, cst.ClassDef)):
            return Outcome(fall=state if not stmt.decorators else stmt)
        return Outcome(fall=stmt)

    def simple(self, line: cst.SimpleStatementLine, state: State, loop_depth: int) -> Outcome:
        method = session_method(line, self.session, is_async=self.is_async) if self.session else None
        if method in ("commit", "rollback", "close"):
            return Outcome(fall=None)
        out = Outcome(fall=state)
        for small in line.body:
            if self.session and session_call(small, self.session, is_async=self.is_async) in (
                "commit", "rollback", "close"
            ):
                out.fall = None
            elif isinstance(small, cst.Return):
                out.exits.append(out.fall if self.inert(small.value) else line)  # type: ignore[arg-type]
                out.fall = _UNREACHABLE
            elif isinstance(small, cst.Raise):
                out.fall = _UNREACHABLE
            elif isinstance(small, (cst.Break, cst.Continue)):
                target = out.breaks if isinstance(small, cst.Break) else out.continues
                (target if loop_depth else out.exits).append(out.fall)  # type: ignore[arg-type]
                out.fall = _UNREACHABLE
            elif not self.neutral(small):
                out.fall = line
            if not out.reachable:
                break
        return out

    def loop(self, stmt: cst.For | cst.While, state: State, loop_depth: int) -> Outcome:
        header_dirty = self.touches_expr(stmt.iter if isinstance(stmt, cst.For) else stmt.test)
        head: object = stmt if header_dirty else state
        body = Outcome()
        for _ in range(2):  # the two-valued state reaches its fixpoint in two rounds
            body = self.block(stmt.body.body, head, loop_depth + 1)  # type: ignore[arg-type]
            again = head
            for s in (body.fall, *body.continues):
                again = _join(again, s)
            if header_dirty and again is not _UNREACHABLE:
                again = _join(stmt, again)
            head = again
        done = self.block(stmt.orelse.body.body, head, loop_depth) if stmt.orelse else Outcome(fall=head)  # type: ignore[arg-type]
        fall = done.fall
        for s in body.breaks:
            fall = _join(fall, s)
        return Outcome(fall=fall, exits=body.exits + done.exits, breaks=done.breaks, continues=done.continues)

    def touches_expr(self, expr: cst.BaseExpression) -> bool:
        return not self.inert(expr)

    def try_(self, stmt: cst.Try | cst.TryStar, state: State, loop_depth: int) -> Outcome:
        body = self.block(stmt.body.body, state, loop_depth)
        first = self.touches(stmt.body)
        entry: State = first if first is not None else state
        result = self.block(stmt.orelse.body.body, body.fall, loop_depth) if stmt.orelse and body.reachable else Outcome(fall=body.fall)  # type: ignore[arg-type]
        result.exits = body.exits + result.exits
        result.breaks = body.breaks + result.breaks
        result.continues = body.continues + result.continues
        for handler in stmt.handlers:
            if handler.name is not None and isinstance(handler.name.name, cst.Name):
                self.exception_names.add(handler.name.name.value)
            result = _merge(result, self.block(handler.body.body, entry, loop_depth))
        if stmt.finalbody is not None and finally_exits(stmt):
            # `return`/`break`/`continue` in `finally` swallows any exception in flight and
            # replaces any exit: the paths are no longer what the body says. Treat as unknown.
            result.fall = stmt
            result.exits = [*result.exits, stmt]
            return result
        if stmt.finalbody is not None:
            final_body = stmt.finalbody.body.body

            def through(s: State) -> State:
                after = self.block(final_body, s, loop_depth).fall
                return s if after is _UNREACHABLE else after  # type: ignore[return-value]

            if result.reachable:
                result.fall = through(result.fall)  # type: ignore[arg-type]
            result.exits = [through(s) for s in result.exits]
            result.breaks = [through(s) for s in result.breaks]
            result.continues = [through(s) for s in result.continues]
        return result

    def with_(self, stmt: cst.With, state: State, loop_depth: int) -> Outcome:
        begins = self.session is not None and len(stmt.items) == 1 and m.matches(
            stmt.items[0].item,
            m.Call(func=m.Attribute(value=m.Name(self.session), attr=m.Name("begin")), args=[]),
        )
        entry = state if all(self.inert(item.item) for item in stmt.items) else stmt
        body = self.block(stmt.body.body, entry if not begins else state, loop_depth)  # type: ignore[arg-type]
        if begins:
            # `with s.begin():` commits on normal exit and rolls back on error.
            clean = Outcome(fall=None if body.reachable else _UNREACHABLE)
            clean.exits = [None for _ in body.exits]
            clean.breaks = [None for _ in body.breaks]
            clean.continues = [None for _ in body.continues]
            return clean
        # Another context manager may swallow an exception raised half way through its body.
        inside = self.touches(stmt.body)
        if inside is not None:
            body.fall = _join(body.fall, inside)
        return body


def _merge(a: Outcome, b: Outcome) -> Outcome:
    return Outcome(
        fall=_join(a.fall, b.fall),
        exits=a.exits + b.exits,
        breaks=a.breaks + b.breaks,
        continues=a.continues + b.continues,
    )


def _statements(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """Every statement line under `node` in source order (not entering nested defs)."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, cst.SimpleStatementLine):
            yield current
            continue
        if isinstance(current, (cst.FunctionDef, cst.ClassDef)) and current is not node:
            continue
        stack.extend(reversed(list(current.children)))


def first_dirty_exit(outcome: Outcome) -> tuple[bool, State]:
    """(all normal exits clean?, the statement that dirties the first unclean exit)."""
    exits: list[object] = list(outcome.exits)
    if outcome.reachable:
        exits.append(outcome.fall)
    for state in exits:
        if state is not None:
            return False, state  # type: ignore[return-value]
    return True, None


def finally_exits(stmt: cst.Try | cst.TryStar) -> bool:
    """Does the `finally` of `stmt` hold a return/break/continue (which swallows exceptions)?"""
    if stmt.finalbody is None:
        return False
    for line in _statements(stmt.finalbody):
        if isinstance(line, cst.SimpleStatementLine) and any(
            isinstance(small, (cst.Return, cst.Break, cst.Continue)) for small in line.body
        ):
            return True
    return False


def tail_statements(
    stmts: Sequence[cst.BaseStatement], unwrapped: frozenset[cst.CSTNode] | set[cst.CSTNode] = frozenset()
) -> Iterator[cst.BaseStatement]:
    """Statements that are the last thing executed on a normal path out of `stmts`.

    A `try` in `unwrapped` is about to be replaced by its body, so its body's tail counts.
    """
    if not stmts:
        return
    last = stmts[-1]
    if last in unwrapped:
        yield from tail_statements(last.body.body, unwrapped)  # type: ignore[attr-defined]
    elif isinstance(last, cst.SimpleStatementLine):
        yield last
    elif isinstance(last, cst.If):
        yield from tail_statements(last.body.body, unwrapped)  # type: ignore[arg-type]
        orelse = last.orelse
        if isinstance(orelse, cst.If):
            yield from tail_statements([orelse], unwrapped)
        elif orelse is not None:
            yield from tail_statements(orelse.body.body, unwrapped)  # type: ignore[arg-type]
    elif isinstance(last, cst.Try) and last.finalbody is None:
        if last.orelse is not None:
            yield from tail_statements(last.orelse.body.body, unwrapped)  # type: ignore[arg-type]
        for handler in last.handlers:
            yield from tail_statements(handler.body.body, unwrapped)  # type: ignore[arg-type]
