"""Who owns a session, and does every path close it: the analysis behind SF020 and SF021.

A function owns a session it makes with a plain factory (`s = get_session()`, `SessionLocal()`)
until it hands it on: returns it, yields it, stores it on an object, or lets a closure or another
task keep it. A session it owns must be closed on every path out (success, error, early return).
Everything here reads the original tree through the rule's metadata; nothing rewrites.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Literal, Sequence

import libcst as cst
import libcst.matchers as m
from libcst.metadata import ParentNodeProvider, ScopeProvider
from libcst.metadata.scope_provider import ComprehensionScope, Scope

from sessionfix.index import ASYNC_SESSIONMAKERS, SESSIONMAKERS

if TYPE_CHECKING:
    from sessionfix.rule import Rule

Flavour = Literal["sync", "async"]
SESSIONS = frozenset({"sqlalchemy.orm.Session", "sqlalchemy.orm.session.Session"})
ASYNC_SESSIONS = frozenset({"sqlalchemy.ext.asyncio.AsyncSession", "sqlalchemy.ext.asyncio.session.AsyncSession"})
#: callables that run their arguments later or elsewhere: a session given to them outlives the call
_HANDOFF_CALLS = frozenset({
    "asyncio.create_task", "asyncio.ensure_future", "asyncio.gather", "threading.Thread",
    "threading.Timer", "multiprocessing.Process",
})
_CLOSING = frozenset({"contextlib.closing", "contextlib.aclosing"})
_HANDOFF_METHODS = frozenset({"create_task", "submit", "run_in_executor", "add_task", "start_soon", "apply_async"})


# -- what makes a session ---------------------------------------------------------------------


def has_bind(call: cst.Call) -> bool | None:
    """Does a `Session(...)` call get an engine? None when `**kwargs` hides the answer."""
    for arg in call.args:
        if arg.star:
            return None
        if arg.keyword is None or arg.keyword.value in ("bind", "binds"):
            return True
    return False


def factory_flavour(rule: Rule, call: cst.Call) -> Flavour | None:
    """'sync'/'async' when `call` makes a new session its caller must close, else None.

    Plain factories only: the configured sync-factory, a raw factory, a name made by
    `sessionmaker(...)` / `async_sessionmaker(...)`, or `Session(bind=...)`. Context-manager
    helpers called bare are SF012's, and `Session()` with no bind is SF022's.
    """
    names = rule.canonical_names(call.func)
    if not names:
        return None
    factory = rule.project.canonical(rule.settings.sync_factory) if rule.settings.sync_factory else None
    flavours: set[Flavour | None] = set()
    for name in names:
        full = _in_module(rule, name)
        made = rule.project.made_by(full)
        if name in SESSIONS or name in ASYNC_SESSIONS:
            flavours.add(("sync" if name in SESSIONS else "async") if has_bind(call) else None)
        elif made in SESSIONMAKERS or made in ASYNC_SESSIONMAKERS:
            flavours.add("sync" if made in SESSIONMAKERS else "async")
        elif name == factory:
            flavours.add("sync")
        elif name in rule.raw_factories:
            flavours.add("sync")  # a raw factory that is no sessionmaker we can see: SF003's assumption
        else:
            flavours.add(None)
    return flavours.pop() if len(flavours) == 1 else None


def _in_module(rule: Rule, name: str) -> str:
    """A name defined in this very module has no dots; give it the module's name."""
    if "." in name or not rule.context.full_module_name:
        return name
    return f"{rule.context.full_module_name}.{name}"


# -- uses of a session name --------------------------------------------------------------------

Use = Literal["method", "argument", "handoff", "returned", "returned-inside", "yielded", "stored",
              "captured", "with", "deleted", "other"]


@dataclass(frozen=True)
class Access:
    node: cst.Name
    use: Use


def accesses(rule: Rule, anchor: cst.CSTNode, name: str) -> tuple[Scope, list[Access]] | None:
    """Every read of `name` in the scope where `anchor` (a statement's small node) lives."""
    scope = rule.get_metadata(ScopeProvider, anchor, None)
    if scope is None:
        return None
    found: list[Access] = []
    for assignment in scope.assignments[name]:
        for access in assignment.references:
            node = access.node
            if not isinstance(node, cst.Name) or any(a.node is node for a in found):
                continue
            captured = access.scope is not scope and not isinstance(access.scope, ComprehensionScope)
            found.append(Access(node, "captured" if captured else _classify(rule, node)))
    return scope, found


def _classify(rule: Rule, node: cst.Name) -> Use:
    parent = rule.get_metadata(ParentNodeProvider, node, None)
    if isinstance(parent, cst.Attribute) and parent.value is node:
        return "method"
    if isinstance(parent, (cst.Comparison, cst.ComparisonTarget)):
        return "method"
    if isinstance(parent, (cst.UnaryOperation, cst.BooleanOperation, cst.Assert, cst.FormattedStringExpression)):
        return "method"  # truth tests (`not s`, `s or other`), asserts and f-strings read, never keep
    if isinstance(parent, (cst.If, cst.While, cst.IfExp)) and getattr(parent, "test", None) is node:
        return "method"
    if isinstance(parent, cst.WithItem) and parent.item is node:
        return "with"
    if isinstance(parent, cst.Return):
        return "returned"
    if isinstance(parent, cst.Del):
        return "deleted"
    if isinstance(parent, cst.Yield):
        return "yielded"
    if isinstance(parent, cst.Arg):
        call = rule.get_metadata(ParentNodeProvider, parent, None)
        if isinstance(call, cst.Call) and _is_handoff(rule, call):
            return "handoff"
        if isinstance(call, cst.Call) and _is_closing(rule, call):
            return "with" if _inside(rule, call, cst.WithItem) else "argument"
        return "returned-inside" if _inside(rule, parent, cst.Return, stop=cst.BaseStatement) else "argument"
    if _inside(rule, node, cst.Return, stop=cst.BaseStatement):
        return "returned-inside"
    if isinstance(parent, (cst.Assign, cst.AnnAssign, cst.AugAssign, cst.Element, cst.DictElement,
                           cst.StarredElement, cst.NamedExpr)):
        return "stored"
    return "other"


def _inside(rule: Rule, node: cst.CSTNode, kind: type, stop: type | None = None) -> bool:
    current = rule.get_metadata(ParentNodeProvider, node, None)
    while current is not None:
        if isinstance(current, kind):
            return True
        if stop is not None and isinstance(current, stop):
            return False
        current = rule.get_metadata(ParentNodeProvider, current, None)
    return False


def _is_closing(rule: Rule, call: cst.Call) -> bool:
    names = rule.canonical_names(call.func)
    return bool(names) and names <= _CLOSING


def _is_handoff(rule: Rule, call: cst.Call) -> bool:
    if rule.canonical_names(call.func) & _HANDOFF_CALLS:
        return True
    return isinstance(call.func, cst.Attribute) and call.func.attr.value in _HANDOFF_METHODS


ESCAPES: dict[Use, str] = {
    "returned": "it is returned to the caller, who owns it from then on",
    "yielded": "it is yielded to the consumer of this generator",
    "stored": "it is stored (on an object, in a container or another name), so it outlives this code",
    "captured": "a nested function or lambda keeps it and may run after this code",
    "handoff": "it is handed to a task, thread or executor that may use it later",
    "deleted": "it is deleted with `del`, so no `finally` could close it",
    "other": "it is used as a value in a way sessionfix cannot follow",
}


# -- the statements that close it --------------------------------------------------------------


def close_call(stmt: cst.CSTNode, name: str) -> bool:
    """`s.close()` or `await s.close()` as a statement of its own."""
    if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Expr)):
        return False
    value = stmt.body[0].value
    if isinstance(value, cst.Await):
        value = value.expression
    return m.matches(value, m.Call(func=m.Attribute(value=m.Name(name), attr=m.Name("close")), args=[]))


def closes_anywhere(stmts: Sequence[cst.CSTNode], name: str) -> list[cst.CSTNode]:
    """Every `s.close()` statement under `stmts`, not entering nested definitions."""
    found: list[cst.CSTNode] = []
    for stmt in _walk(stmts):
        if close_call(stmt, name):
            found.append(stmt)
    return found


def _walk(stmts: Sequence[cst.CSTNode]) -> Iterator[cst.CSTNode]:
    stack = list(reversed(stmts))
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, (cst.FunctionDef, cst.ClassDef, cst.Lambda)):
            continue
        stack.extend(reversed(list(current.children)))


def finally_closes(stmt: cst.CSTNode, name: str) -> bool:
    """A `try` whose `finally` closes `name` (directly or under `if flag:`)."""
    if not isinstance(stmt, cst.Try) or stmt.finalbody is None:
        return False
    return bool(closes_anywhere(stmt.finalbody.body.body, name))


def managed_by_with(rule: Rule, stmt: cst.CSTNode, name: str, rest: Sequence[cst.CSTNode]) -> bool:
    """`with s:`, `with closing(s):`, or `with s.begin():` after which `s` is only closed."""
    if not isinstance(stmt, cst.With):
        return False
    for item in stmt.items:
        expr = item.item
        if m.matches(expr, m.Name(name)):
            return True
        if m.matches(expr, m.Call(args=[m.Arg(m.Name(name))])) and _is_closing(rule, expr):  # type: ignore[arg-type]
            return True
        if m.matches(expr, m.Call(func=m.Attribute(value=m.Name(name), attr=m.Name("begin")), args=[])):
            # Session.begin() commits or rolls back, releasing the connection; nothing after it may
            # start another transaction before the session is closed.
            later = [s for s in rest if not close_call(s, name)]
            return not any(_mentions(s, name) for s in later)
    return False


def _mentions(stmt: cst.CSTNode, name: str) -> bool:
    return any(isinstance(n, cst.Name) and n.value == name for n in _walk([stmt]))


def returns_in(stmts: Sequence[cst.CSTNode]) -> list[cst.Return]:
    """Every `return` under `stmts`, in source order, not entering nested definitions."""
    return [node for node in _walk(stmts) if isinstance(node, cst.Return)]


def statements(stmts: Sequence[cst.CSTNode]) -> list[cst.SimpleStatementLine]:
    """Every statement line under `stmts`, not entering nested definitions."""
    return [node for node in _walk(stmts) if isinstance(node, cst.SimpleStatementLine)]


# -- new code ----------------------------------------------------------------------------------


def free_name(function: cst.FunctionDef, base: str) -> str:
    """`base`, or `base_2`, ... : a name no code in `function` reads, writes or declares."""
    taken = {node.value for node in _all_nodes(function) if isinstance(node, cst.Name)}
    candidate, number = base, 1
    while candidate in taken:
        number += 1
        candidate = f"{base}_{number}"
    return candidate


def node_ids(stmts: Sequence[cst.CSTNode]) -> set[int]:
    """Identities of every node under `stmts`, to ask "is this access inside?"."""
    return {id(node) for stmt in stmts for node in _all_nodes(stmt)}


def _all_nodes(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(current.children)


def close_line(name: str, flavour: Flavour) -> cst.SimpleStatementLine:
    call: cst.BaseExpression = cst.Call(func=cst.Attribute(value=cst.Name(name), attr=cst.Name("close")))
    if flavour == "async":
        call = cst.Await(expression=call)
    return cst.SimpleStatementLine(body=[cst.Expr(call)])


def wrap_in_finally(
    stmts: Sequence[cst.BaseStatement], final: Sequence[cst.BaseStatement]
) -> cst.Try:
    """`try: <stmts> finally: <final>`; blank lines before the first statement move above `try:`,
    its comments stay with it. A lone `try/except` gets the `finally` clause itself."""
    first = stmts[0]
    finalbody = cst.Finally(body=cst.IndentedBlock(body=list(final)))
    if len(stmts) == 1 and isinstance(first, cst.Try) and first.finalbody is None:
        return first.with_changes(finalbody=finalbody)  # `try/except` + `finally` means the same
    lines = list(first.leading_lines)
    blank = next((i for i, line in enumerate(lines) if line.comment is not None), len(lines))
    body = [first.with_changes(leading_lines=lines[blank:]), *stmts[1:]]
    return cst.Try(
        body=cst.IndentedBlock(body=body),
        finalbody=finalbody,
        leading_lines=lines[:blank],
    )


def enclosing_function(rule: Rule, node: cst.CSTNode) -> cst.FunctionDef | None:
    current = rule.get_metadata(ParentNodeProvider, node, None)
    while current is not None:
        if isinstance(current, cst.FunctionDef):
            return current
        if isinstance(current, (cst.ClassDef, cst.Lambda)):
            return None
        current = rule.get_metadata(ParentNodeProvider, current, None)
    return None
