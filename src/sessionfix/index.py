"""The project model: which file a module name loads, and what each name is bound to.

Names are resolved the way Python's import system would resolve them, never matched as text:
a package shadows a module of the same name, re-exports and simple aliases are followed, and a
module counts as missing only when neither the project nor the environment can supply it.
Modules are read on demand and never imported: their names with Python's own `ast`, libcst's
(newest) grammar serving where `ast` cannot, and libcst's tree only when something asks for it.
"""

from __future__ import annotations

import importlib.machinery
import os
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Literal

from sessionfix.errors import UserError
from sessionfix.replay import PROBE
from sessionfix.source import SourceError, parse

if TYPE_CHECKING:
    import libcst as cst

#: where SQLAlchemy defines its session factories (canonical names as imports spell them)
SESSIONMAKERS = frozenset({"sqlalchemy.orm.sessionmaker", "sqlalchemy.orm.session.sessionmaker"})
ASYNC_SESSIONMAKERS = frozenset(
    {"sqlalchemy.ext.asyncio.async_sessionmaker", "sqlalchemy.ext.asyncio.session.async_sessionmaker"}
)

#: SQLAlchemy's session classes themselves
SESSIONS = frozenset({"sqlalchemy.orm.Session", "sqlalchemy.orm.session.Session"})
ASYNC_SESSIONS = frozenset({"sqlalchemy.ext.asyncio.AsyncSession", "sqlalchemy.ext.asyncio.session.AsyncSession"})

BindingKind = Literal["def", "class", "assign", "import", "alias", "module"]
Status = Literal["project", "environment", "missing"]


@dataclass(frozen=True)
class Binding:
    """What a top-level name in a module is bound to."""

    kind: BindingKind
    line: int
    #: for "import": the dotted name imported; for "alias": the dotted name it copies
    target: str | None = None
    #: for `name = callee(...)`: the callee as written (resolved with `ProjectIndex.made_by`)
    call: str | None = None


class _Unparsed(Enum):
    """A tree not asked for yet (an Enum member, so it is still itself after pickling)."""

    UNPARSED = "unparsed"


@dataclass
class ModuleInfo:
    name: str
    path: Path | None  # None for environment modules
    is_package: bool
    status: Status
    names: dict[str, Binding] = field(default_factory=dict)
    #: a star import or a module __getattr__: names we cannot see may exist
    open: bool = False
    #: the bytes `names` were read from, kept for `tree` until it is asked for
    raw: bytes | None = field(default=None, repr=False)
    _tree: cst.Module | None | _Unparsed = field(default=_Unparsed.UNPARSED, repr=False, compare=False)

    @property
    def tree(self) -> cst.Module | None:
        """The module as libcst parses it (None: it cannot), parsed once, on first use: the
        index reads every module it consults, and few of them are ever looked at closer."""
        if self._tree is _Unparsed.UNPARSED:
            self._tree = None
            if self.raw is not None:
                try:
                    self._tree = parse(self.raw)
                except SourceError:
                    pass
            self.raw = None
        return self._tree


@dataclass(frozen=True)
class Lookup:
    """The answer to "does `module` define `name`?"."""

    status: Literal["defined", "submodule", "missing-module", "missing-name", "unknown"]
    module: ModuleInfo | None = None
    binding: Binding | None = None


def dotted_name(node: cst.BaseExpression) -> str | None:
    """`a.b.c` for a Name/Attribute chain; None for anything else."""
    import libcst as cst  # imported already by whoever holds a node; not at the top (see toplevel.py)

    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted_name(node.value)
        return f"{base}.{node.attr.value}" if base else None
    return None


def resolve_relative(level: int, module: str | None, package: str) -> str | None:
    """`from ..x import y` inside `package` -> absolute module name (None if it climbs too far)."""
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (level - 1)]
    if module:
        base.append(module)
    return ".".join(base) or None


def _environment_paths(root: Path) -> list[str]:
    """Where installed packages live: this interpreter's path plus the project's own venv."""
    skip = {str(root), str(root / "src"), "", "."}
    paths = [p for p in sys.path if p not in skip and Path(p or ".").resolve() != root]
    for venv in (root / ".venv", root / "venv"):
        for probed in (venv, venv / "lib"):  # only stats: tell sessionfix.replay what the answer rests on
            sys.audit(PROBE, probed)
        for site in sorted(venv.glob("lib/python3*/site-packages")) + [venv / "Lib" / "site-packages"]:
            sys.audit(PROBE, site)
            if site.is_dir():
                paths.append(str(site))
    return paths


class ProjectIndex:
    """Read-only after construction except for its caches; one per run."""

    def __init__(
        self,
        root: Path,
        *,
        declared: Iterable[str] = (),
        extra_roots: Iterable[Path] = (),
    ) -> None:
        self.root = root.resolve()
        roots = [self.root]
        src = self.root / "src"
        sys.audit(PROBE, src / "__init__.py")
        if src.is_dir() and not (src / "__init__.py").is_file():
            roots.append(src)
        roots.extend(Path(p).resolve() for p in extra_roots)
        self.roots: tuple[Path, ...] = tuple(roots)
        self.declared = frozenset(declared)
        self._env_paths = _environment_paths(self.root)
        self._modules: dict[str, ModuleInfo | None] = {}
        #: directory -> {entry name: is a directory}, listed once per index (see `_entries`)
        self._listings: dict[Path, dict[str, bool]] = {}
        self._specs: dict[tuple[str, tuple[str, ...]], tuple[bool, tuple[str, ...]]] = {}
        self._real_dirs: dict[Path, Path] = {}

    # -- module names <-> files -------------------------------------------------------------

    def _find_in_project(self, name: str) -> tuple[Path, bool] | None:
        """(file, is_package) with Python's precedence, or None."""
        parts = name.split(".")
        locations: list[Path] = list(self.roots)
        for position, part in enumerate(parts):
            last = position == len(parts) - 1
            namespace: list[Path] = []
            found: tuple[Path, bool] | None = None
            for location in locations:
                entries = self._entries(location)
                if entries.get(part):
                    directory = location / part
                    if self._entries(directory).get("__init__.py") is False:
                        found = (directory / "__init__.py", True)
                        break
                if entries.get(f"{part}.py") is False:
                    found = (location / f"{part}.py", False)
                    break
                if entries.get(part):
                    namespace.append(location / part)
            if found is not None:
                if last:
                    return found
                file, is_package = found
                if not is_package:
                    return None  # a plain module has no submodules
                locations = [file.parent]
            elif namespace:
                if last:
                    return (namespace[0], True)  # a namespace package: a directory, no file
                locations = namespace
            else:
                return None
        return None

    def _entries(self, directory: Path) -> dict[str, bool]:
        """The directory's entries (name -> is a directory, following symlinks), read once: a
        run asks about thousands of module names, and a listing answers all of one directory's."""
        listing = self._listings.get(directory)
        if listing is None:
            listing = {}
            try:
                with os.scandir(directory) as scan:
                    for entry in scan:
                        try:
                            if entry.is_dir():
                                listing[entry.name] = True
                            elif entry.is_file():
                                listing[entry.name] = False
                        except OSError:
                            continue
            except OSError:
                pass
            self._listings[directory] = listing
        return listing

    def _resolved(self, path: Path) -> Path:
        """`path.resolve()`, each directory resolved once per index (module names are asked for
        every file of the tree, and resolving costs a system call per part of the path). Like
        the index's other memos, it holds for one run: a directory replaced meanwhile is not seen."""
        try:
            linked = path.is_symlink()
        except OSError:  # a name too long, a directory without search permission: as resolve() says
            linked = True
        if not path.is_absolute() or path.name in ("", ".", "..") or linked:
            return path.resolve()
        parent = self._real_dirs.get(path.parent)
        if parent is None:
            parent = self._real_dirs[path.parent] = path.parent.resolve()
        return parent / path.name

    def module_name_for(self, path: Path) -> tuple[str, str]:
        """(module, package) for a file inside the project; ("", "") outside every root."""
        path = self._resolved(path)
        for root in sorted(self.roots, key=lambda r: len(r.parts), reverse=True):
            try:
                relative = path.relative_to(root)
            except ValueError:
                continue
            parts = list(relative.with_suffix("").parts)
            if not parts or not all(p.isidentifier() for p in parts):
                continue
            if parts[-1] == "__init__":
                parts.pop()
                return ".".join(parts), ".".join(parts)
            return ".".join(parts), ".".join(parts[:-1])
        return "", ""

    def _in_environment(self, name: str) -> bool:
        top = name.split(".")[0]
        if top in sys.builtin_module_names or top in getattr(sys, "stdlib_module_names", ()):
            return True
        if top.lower() in self.declared:
            return True
        found, locations = self._find_spec(top, tuple(self._env_paths))
        if not found:
            return False
        for part in name.split(".")[1:]:
            if not locations:
                return True  # an extension or frozen module: we cannot look inside, so not missing
            found, locations = self._find_spec(part, locations)
            if not found:
                return False
        return True

    def _find_spec(self, name: str, path: tuple[str, ...]) -> tuple[bool, tuple[str, ...]]:
        """(found, where its submodules live) for one import step, asked once per index."""
        key = (name, path)
        known = self._specs.get(key)
        if known is None:
            try:
                spec = importlib.machinery.PathFinder.find_spec(name, list(path))
            except (ImportError, ValueError):
                spec = None
            known = (spec is not None, tuple(spec.submodule_search_locations or ()) if spec else ())
            self._specs[key] = known
        return known

    def module(self, name: str) -> ModuleInfo | None:
        """The module `name` as the import system would load it; None when missing."""
        if name in self._modules:
            return self._modules[name]
        info: ModuleInfo | None = None
        found = self._find_in_project(name)
        if found is not None:
            file, is_package = found
            info = ModuleInfo(name, file if file.is_file() else None, is_package, "project")
            if file.is_file():
                self._read_names(info, file)
            else:
                info.open = True  # a namespace package: its names are its submodules
        elif self._in_environment(name):
            info = ModuleInfo(name, None, False, "environment", open=True)
        self._modules[name] = info
        return info

    def _read_names(self, info: ModuleInfo, file: Path) -> None:
        """Fill `info.names` and `info.open` from `ast`, leaving libcst's tree for later (see
        `sessionfix.toplevel_ast`); with libcst when `ast` cannot give the same answer."""
        package = info.name if info.is_package else info.name.rpartition(".")[0]
        try:
            raw = file.read_bytes()
        except OSError:
            info.open = True  # unreadable: claim nothing about it
            return
        from sessionfix.toplevel_ast import top_level_names

        found = top_level_names(raw, package)
        if found is None:
            self._read_names_with_libcst(info, raw, package)
            return
        info.names, info.open = found
        info.raw = raw

    @staticmethod
    def _read_names_with_libcst(info: ModuleInfo, raw: bytes, package: str) -> None:
        try:
            tree = parse(raw)
        except SourceError:
            info.open = True  # unparsable: claim nothing about it
            info._tree = None
            return
        from sessionfix.metadata import Wrapper
        from sessionfix.toplevel import TopLevelNames

        wrapper = Wrapper(tree, unsafe_skip_copy=True)
        collector = TopLevelNames(package)
        wrapper.visit(collector)
        info.names = collector.names
        info.open = collector.open
        info._tree = tree

    def status(self, name: str) -> Status:
        info = self.module(name)
        return "missing" if info is None else info.status

    # -- names ------------------------------------------------------------------------------

    def lookup(self, module: str, name: str) -> Lookup:
        info = self.module(module)
        if info is None:
            return Lookup("missing-module")
        if name in info.names:
            return Lookup("defined", info, info.names[name])
        if info.is_package and self.module(f"{module}.{name}") is not None:
            return Lookup("submodule", info)
        if info.open or info.status != "project":
            return Lookup("unknown", info)
        return Lookup("missing-name", info)

    def split(self, dotted: str) -> tuple[str, str] | None:
        """Split `a.b.c` into (module, attribute) at the longest prefix that is a module."""
        parts = dotted.split(".")
        for cut in range(len(parts) - 1, 0, -1):
            module = ".".join(parts[:cut])
            if self.module(module) is not None:
                return module, ".".join(parts[cut:])
        return None

    def canonical(self, dotted: str) -> str:
        """Follow re-exports and simple aliases to where `dotted` is really defined."""
        seen: set[str] = set()
        current = dotted
        while current not in seen:
            seen.add(current)
            if self.module(current) is not None:
                return current
            split = self.split(current)
            if split is None:
                return current
            module, rest = split
            head, _, tail = rest.partition(".")
            found = self.lookup(module, head)
            if found.status != "defined" or found.binding is None:
                return current
            binding = found.binding
            if binding.kind in ("import", "module") and binding.target:
                current = binding.target + (f".{tail}" if tail else "")
            elif binding.kind == "alias" and binding.target:
                first, _, more = binding.target.partition(".")
                inner = self.lookup(module, first)
                if inner.status != "defined":
                    return current
                base = f"{module}.{first}"
                current = base + (f".{more}" if more else "") + (f".{tail}" if tail else "")
            else:
                return current
        return current

    def definition(self, dotted: str) -> tuple[ModuleInfo, str, Binding] | None:
        """The module, name and binding that finally define `dotted`, if in the project."""
        split = self.split(self.canonical(dotted))
        if split is None:
            return None
        module, name = split
        found = self.lookup(module, name)
        if found.status == "defined" and found.module is not None and found.binding is not None:
            return found.module, name, found.binding
        return None

    def made_by(self, dotted: str) -> str | None:
        """For `X = f(...)` at module level: the canonical name of `f`; else None."""
        found = self.definition(dotted)
        if found is None:
            return None
        info, _, binding = found
        if binding.kind != "assign" or not binding.call:
            return None
        return self.canonical(f"{info.name}.{binding.call}")

    def require(self, option: str, dotted: str) -> None:
        """Raise a one-line UserError unless `dotted` resolves to a defined name."""
        module, _, name = dotted.rpartition(".")
        info = self.module(module)
        if info is None:
            raise UserError(
                f"{option} {dotted}: module {module} is neither in the project ({self.root}) "
                "nor installed; nothing was changed"
            )
        found = self.lookup(module, name)
        if found.status == "missing-name":
            where = self.display(info.path) if info.path else module
            raise UserError(f"{option} {dotted}: {where} defines no {name}; nothing was changed")

    def display(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)
