"""Reading the names a module binds at top level, for the project index (needs libcst, so
`sessionfix.index` imports it only for a module `sessionfix.toplevel_ast`, which gives the same
answer from Python's `ast`, cannot read)."""

from __future__ import annotations

import libcst as cst

from sessionfix.index import Binding, dotted_name, resolve_relative


class TopLevelNames(cst.CSTVisitor):
    """Collects the names a module binds at top level (including under if/try/with/for)."""

    METADATA_DEPENDENCIES = (cst.metadata.PositionProvider,)

    def __init__(self, package: str) -> None:
        super().__init__()
        self.package = package
        self.names: dict[str, Binding] = {}
        self.open = False

    def _line(self, node: cst.CSTNode) -> int:
        return self.get_metadata(cst.metadata.PositionProvider, node).start.line

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self.names[node.name.value] = Binding("def", self._line(node))
        if node.name.value == "__getattr__":
            self.open = True
        return False

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self.names[node.name.value] = Binding("class", self._line(node))
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False

    def _bind_target(self, target: cst.BaseExpression, value: cst.BaseExpression | None, line: int) -> None:
        if isinstance(target, cst.Name):
            source = dotted_name(value) if value is not None else None
            call = dotted_name(value.func) if isinstance(value, cst.Call) else None
            self.names[target.value] = Binding("alias", line, source) if source else Binding("assign", line, call=call)
        elif isinstance(target, (cst.Tuple, cst.List)):
            for element in target.elements:
                self._bind_target(element.value, None, line)
        elif isinstance(target, cst.StarredElement):
            self._bind_target(target.value, None, line)

    def visit_Assign(self, node: cst.Assign) -> bool:
        for target in node.targets:
            self._bind_target(target.target, node.value, self._line(node))
        return False

    def visit_AnnAssign(self, node: cst.AnnAssign) -> bool:
        self._bind_target(node.target, node.value, self._line(node))
        return False

    def visit_AugAssign(self, node: cst.AugAssign) -> bool:
        return False

    def visit_For(self, node: cst.For) -> bool:
        self._bind_target(node.target, None, self._line(node))
        return True

    def visit_WithItem(self, node: cst.WithItem) -> bool:
        if node.asname is not None:
            self._bind_target(node.asname.name, None, self._line(node))
        return False

    def visit_Import(self, node: cst.Import) -> bool:
        for alias in node.names:
            full = dotted_name(alias.name)
            if full is None:
                continue
            if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                self.names[alias.asname.name.value] = Binding("module", self._line(node), full)
            else:
                top = full.split(".")[0]
                self.names[top] = Binding("module", self._line(node), top)
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        base = dotted_name(node.module) if node.module is not None else None
        module = resolve_relative(len(node.relative), base, self.package)
        if module is None:
            return False
        if isinstance(node.names, cst.ImportStar):
            self.open = True
            return False
        for alias in node.names:
            name = dotted_name(alias.name)
            if name is None:
                continue
            local = alias.asname.name.value if alias.asname and isinstance(alias.asname.name, cst.Name) else name
            self.names[local] = Binding("import", self._line(node), f"{module}.{name}")
        return False

    # Function and class bodies do not bind module names; expressions need no walk.
    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
        return True

    def visit_Expr(self, node: cst.Expr) -> bool:
        return False
