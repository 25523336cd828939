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

from sessionfix.config import Settings
from sessionfix.index import ASYNC_SESSIONMAKERS, ASYNC_SESSIONS, SESSIONMAKERS, SESSIONS
from sessionfix.rule import PrefilterNeeds

if TYPE_CHECKING:
    from sessionfix.rule import Rule

Flavour = Literal["sync", "async"]
#: callables that run their arguments later or elsewhere: a session given to them outlives the call
_HANDOFF_CALLS = frozenset({
    "asyncio.create_task", "asyncio.ensure_future", "asyncio.gather", "threading.Thread",
    "threading.Timer", "multiprocessing.Process",
})
_CLOSING = frozenset({"contextlib.closing", "contextlib.aclosing"})
_HANDOFF_METHODS = frozenset({"create_task", "submit", "run_in_executor", "add_task", "start_soon", "apply_async"})
#: methods that keep their argument in the object they are called on
_STORING_METHODS = frozenset({"append", "appendleft", "add", "extend", "insert", "setdefault", "update", "put",
                              "put_nowait"})
_SETATTR = frozenset({"builtins.setattr"})
#: builtins whose result is a plain value, made before any close: nothing in it needs the session
_PLAIN_CALLS = frozenset({"builtins.len", "builtins.bool", "builtins.int", "builtins.float", "builtins.str",
                          "builtins.repr", "builtins.isinstance"})


# -- what makes a session ---------------------------------------------------------------------


def has_bind(call: cst.Call) -> bool | None:
    """Does a `Session(...)` call get an engine? None when `**kwargs` hides the answer."""
    for arg in call.args:
        if arg.star:
            return None
        if arg.keyword is None or arg.keyword.value in ("bind", "binds"):
            return True
    return False


def factory_prefilter_needs(settings: Settings) -> PrefilterNeeds:
    """What a file must spell for `factory_flavour` to find a call in it (SF020, SF021)."""
    factories = frozenset(settings.raw_factories) | {f for f in (settings.sync_factory,) if f}
    return PrefilterNeeds(names=SESSIONS | ASYNC_SESSIONS | factories, made_by=SESSIONMAKERS | ASYNC_SESSIONMAKERS,
                          used_only=True)


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
              "contained", "captured", "with", "deleted", "other"]


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
        if isinstance(call, cst.Call) and _is_storing(rule, call):
            return "contained"
        if isinstance(call, cst.Call) and _is_closing(rule, call):
            return "with" if _inside(rule, call, cst.WithItem) else "argument"
        return "returned-inside" if _inside(rule, parent, cst.Return, stop=cst.BaseStatement) else "argument"
    if _inside(rule, node, cst.Return, stop=cst.BaseStatement):
        return "returned-inside"
    if isinstance(parent, cst.Assign) and any(isinstance(t.target, cst.Subscript) for t in parent.targets):
        return "contained"
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


def _is_storing(rule: Rule, call: cst.Call) -> bool:
    """`bag.append(x)`, `cache.setdefault(k, x)`, `setattr(o, n, x)`: `x` is kept by another object."""
    if isinstance(call.func, cst.Attribute):
        return call.func.attr.value in _STORING_METHODS
    names = rule.canonical_names(call.func)
    return bool(names) and names <= _SETATTR


def _is_handoff(rule: Rule, call: cst.Call) -> bool:
    if rule.canonical_names(call.func) & _HANDOFF_CALLS:
        return True
    return isinstance(call.func, cst.Attribute) and call.func.attr.value in _HANDOFF_METHODS


ESCAPES: dict[Use, str] = {
    "returned": "it is returned to the caller, who owns it from then on",
    "yielded": "it is yielded to the consumer of this generator",
    "stored": "it is stored (on an object, in a container or another name), so it outlives this code",
    "contained": "it is put into a container or onto an object (`append`, `x[k] = ...`, `setattr`) that may "
                 "outlive this code",
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


# -- values that still need the session -------------------------------------------------------


@dataclass(frozen=True)
class Leak:
    """A value read through the session that leaves the function: returned, yielded or stored.

    ORM objects it holds are detached by the close (a lazy relationship then raises
    DetachedInstanceError), and a query or result returned unread can no longer be read. Without
    types a plain value cannot be told from an ORM object, so anything read through the session
    counts, except what `_plain` knows is a fresh number, string or bool.
    """

    node: cst.CSTNode  # the return, yield or store
    action: str  # "returns `x`", "yields `x`", "stores `x` on `self.cache`"
    source: str  # the session, or the local name the value came through
    line: int | None  # where that name was loaded; None for the session itself
    whole: bool  # the value is that name itself

    def reason(self, session: str) -> str:
        origin = (f"read through `{session}`" if self.line is None
                  else f"loaded from `{session}` at line {self.line}" if self.whole
                  else f"which holds `{self.source}`, loaded from `{session}` at line {self.line}")
        return (f"it {self.action}, {origin}; after the close, ORM objects in it are detached "
                "and a query or result in it can no longer be read")


def leaks(rule: Rule, function: cst.FunctionDef, session: str) -> list[Leak]:
    """Every return, yield or store in `function` of a value derived from `session`, in order.

    Derived: a call or attribute on the session, an expression or comprehension using one, or a
    local name assigned from such an expression (followed through simple assignments, `for`
    targets, `with ... as`, and `local.append(...)` / `local[k] = ...`, to a fixed point). The
    session itself, returned or yielded bare, is the caller's to judge (see `accesses`).
    """
    nodes = list(_walk(list(function.body.body) if isinstance(function.body, cst.IndentedBlock) else [function.body]))
    declared = {n.name.value for node in nodes if isinstance(node, (cst.Global, cst.Nonlocal))
                for n in node.names}
    local = {name for node in nodes if not isinstance(node, cst.Call) for target, _ in _flows(rule, node)
             for name in _target_names(target)} - declared
    tainted: dict[str, int | None] = {session: None}  # name -> line it was loaded at
    found: list[Leak] = []
    changed = True
    while changed:  # `for` loops can feed a name to a statement above: run to a fixed point
        changed, found = False, []
        for node in nodes:
            for target, value in _flows(rule, node):
                mention = _derived(rule, value, tainted)
                if mention is None:
                    continue
                for kept in _bound(target, local, tainted):
                    if kept not in tainted:
                        tainted[kept] = rule.location(node).line
                        changed = True
                if _escapes(target, local, tainted):
                    action = f"stores `{_short(value)}` on `{_short(target)}`"
                    found.append(Leak(node, action, mention.value, tainted.get(mention.value), value is mention))
            if isinstance(node, (cst.Return, cst.Yield)) and node.value is not None:
                value = node.value.item if isinstance(node.value, cst.From) else node.value
                mention = None if m.matches(value, m.Name(session)) else _derived(rule, value, tainted)
                if mention is not None:
                    action = f"{'returns' if isinstance(node, cst.Return) else 'yields'} `{_short(value)}`"
                    found.append(Leak(node, action, mention.value, tainted.get(mention.value), value is mention))
    return found


def _flows(rule: Rule, node: cst.CSTNode) -> list[tuple[cst.BaseExpression, cst.BaseExpression]]:
    """(where a value goes, the value) for the bindings and stores `node` makes."""
    if isinstance(node, cst.Assign):
        return [(t.target, node.value) for t in node.targets]
    if isinstance(node, (cst.AnnAssign, cst.AugAssign)) and node.value is not None:
        return [(node.target, node.value)]
    if isinstance(node, cst.For):
        return [(node.target, node.iter)]
    if isinstance(node, cst.WithItem) and node.asname is not None:
        return [(node.asname.name, node.item)]  # type: ignore[list-item]
    if isinstance(node, cst.NamedExpr):
        return [(node.target, node.value)]
    if isinstance(node, cst.Call) and _is_storing(rule, node):
        if isinstance(node.func, cst.Attribute):
            return [(node.func.value, arg.value) for arg in node.args]
        if len(node.args) == 3:  # setattr(obj, name, value)
            return [(node.args[0].value, node.args[2].value)]
    return []


def _target_names(target: cst.BaseExpression) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in _target_names(e.value)]
    if isinstance(target, cst.StarredElement):
        return _target_names(target.value)
    return []


def _base(target: cst.BaseExpression) -> cst.BaseExpression:
    """`a` for `a.b[c].d`: the object a store into an attribute or item changes."""
    while isinstance(target, (cst.Attribute, cst.Subscript)):
        target = target.value
    return target


def _bound(target: cst.BaseExpression, local: set[str], tainted: dict[str, int | None]) -> list[str]:
    """Local names that hold the value after the store: the target, or the local object it goes into."""
    names = _target_names(target)
    if names or isinstance(target, (cst.Tuple, cst.List)):
        return [n for n in names if n in local]
    base = _base(target)
    return [base.value] if isinstance(base, cst.Name) and base.value in local else []


def _escapes(target: cst.BaseExpression, local: set[str], tainted: dict[str, int | None]) -> bool:
    """A store that outlives the function: a global name, or an attribute or item of an object
    that is not a local of this function (a parameter, `self`, a module global)."""
    for name in _target_names(target):
        if name not in local and name not in tainted:
            return True  # a global, or an object from outside (`bag.append(x)` with `bag` a parameter)
    if isinstance(target, (cst.Name, cst.Tuple, cst.List, cst.StarredElement)):
        return False
    base = _base(target)
    if isinstance(base, cst.Name) and (base.value in local or base.value in tainted):
        return False  # a local object, or the session's own state (`s.info[k] = v`)
    return True


def _derived(rule: Rule, expr: cst.CSTNode, tainted: dict[str, int | None]) -> cst.Name | None:
    """The first tainted name `expr`'s value may hold or have been read through, else None."""
    if isinstance(expr, cst.Name):
        return expr if expr.value in tainted else None
    if _plain(rule, expr):
        return None
    if isinstance(expr, cst.Attribute):
        return _derived(rule, expr.value, tainted)
    if isinstance(expr, cst.Arg):
        return _derived(rule, expr.value, tainted)
    if isinstance(expr, (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)):
        return _derived_comprehension(rule, expr, tainted)
    for child in expr.children:
        found = _derived(rule, child, tainted)
        if found is not None:
            return found
    return None


def _derived_comprehension(rule: Rule, expr: cst.BaseComp | cst.DictComp,
                           tainted: dict[str, int | None]) -> cst.Name | None:
    """Only what a comprehension produces counts: `[str(u.name) for u in s.query(U)]` is plain."""
    inner = dict(tainted)
    origin: dict[str, cst.Name] = {}  # a loop variable -> the outer name its values come from
    clause: cst.CompFor | None = expr.for_in
    while clause is not None:
        mention = _derived(rule, clause.iter, inner)
        if mention is not None:
            source = origin.get(mention.value, mention)
            for name in _target_names(clause.target):
                inner[name], origin[name] = tainted.get(source.value), source
        clause = clause.inner_for_in
    parts = [expr.key, expr.value] if isinstance(expr, cst.DictComp) else [expr.elt]
    found = next((found for part in parts if (found := _derived(rule, part, inner)) is not None), None)
    return origin.get(found.value, found) if found is not None else None


def _plain(rule: Rule, expr: cst.CSTNode) -> bool:
    """An expression whose value is a fresh number, string or bool: `len(...)`, `str(...)`,
    `x == y`, `not x`, `query.count()`."""
    if isinstance(expr, cst.Comparison):
        return True
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Not):
        return True
    if not isinstance(expr, cst.Call):
        return False
    if m.matches(expr, m.Call(func=m.Attribute(attr=m.Name("count")), args=[])):
        return True  # Query.count(): an int
    names = rule.canonical_names(expr.func)
    return bool(names) and names <= _PLAIN_CALLS


def _short(expr: cst.BaseExpression | str, limit: int = 40) -> str:
    code = expr if isinstance(expr, str) else cst.Module([]).code_for_node(expr)
    first = code.splitlines()[0] if code else code
    return first if len(first) <= limit and first == code else first[:limit - 3] + "..."


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
