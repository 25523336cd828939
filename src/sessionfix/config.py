"""`[tool.sessionfix]` in the nearest pyproject.toml, overridden by CLI options."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sessionfix.errors import UserError
from sessionfix.replay import PROBE

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib


@dataclass(frozen=True)
class Settings:
    """Resolved configuration; every field is also a CLI option of the same (kebab-case) name."""

    sync_context: str | None = None
    sync_factory: str | None = None
    async_context: str | None = None
    raw_factories: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    unsafe: bool = False

    def with_overrides(self, **overrides: Any) -> Settings:
        given = {k: v for k, v in overrides.items() if v is not None and v != ()}
        for key in ("raw_factories", "exclude"):
            if key in given:
                given[key] = tuple(given[key])
        return replace(self, **given)

    def fingerprint(self) -> str:
        """A stable text form, for cache keys and reports."""
        return repr(sorted((f.name, getattr(self, f.name)) for f in fields(self)))


#: keys accepted in [tool.sessionfix] (kebab-case), mapped to Settings fields
CONFIG_KEYS: dict[str, str] = {
    "sync-context": "sync_context",
    "sync-factory": "sync_factory",
    "async-context": "async_context",
    "raw-factories": "raw_factories",
    "exclude": "exclude",
}
_LIST_KEYS = {"raw-factories", "exclude"}
_DOTTED_KEYS = {"sync-context", "sync-factory", "async-context", "raw-factories"}


@dataclass(frozen=True)
class ProjectConfig:
    root: Path  # the directory holding pyproject.toml (or the target itself)
    pyproject: Path | None
    settings: Settings = field(default_factory=Settings)


def find_pyproject(start: Path) -> Path | None:
    start = start.resolve()
    here = start if start.is_dir() else start.parent
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        sys.audit(PROBE, candidate)  # only a stat: tells sessionfix.replay what the answer rests on
        if candidate.is_file():
            return candidate
    return None


def _key_line(text: str, key: str) -> int:
    """Line of `key =` inside [tool.sessionfix]; 1 when it cannot be pinned down."""
    in_table = False
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            in_table = stripped.replace(" ", "") == "[tool.sessionfix]"
            continue
        if in_table and stripped.split("=", 1)[0].strip().strip('"') == key:
            return number
    return 1


def _is_dotted_name(value: str) -> bool:
    parts = value.split(".")
    return len(parts) >= 2 and all(part.isidentifier() for part in parts)


def parse_settings(table: dict[str, Any], *, source: str, text: str = "") -> Settings:
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"{source}:{_key_line(text, key)}"
        if key not in CONFIG_KEYS:
            known = ", ".join(CONFIG_KEYS)
            raise UserError(f"{where}: unknown key '{key}' in [tool.sessionfix] (known: {known})")
        if key in _LIST_KEYS:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise UserError(f"{where}: '{key}' must be a list of strings")
            items = tuple(value)
        else:
            if not isinstance(value, str):
                raise UserError(f"{where}: '{key}' must be a string")
            items = (value,)
        if key in _DOTTED_KEYS:
            for item in items:
                if not _is_dotted_name(item):
                    raise UserError(
                        f"{where}: '{key}' value '{item}' is not a dotted name like 'package.module.name'"
                    )
        values[CONFIG_KEYS[key]] = items if key in _LIST_KEYS else value
    return Settings(**values)


def check_dotted_option(option: str, value: str) -> None:
    """Validate a dotted name given on the command line."""
    if not _is_dotted_name(value):
        raise UserError(f"--{option}: '{value}' is not a dotted name like 'package.module.name'")


def load_config(target: Path) -> ProjectConfig:
    """Read the nearest pyproject.toml at or above `target`."""
    pyproject = find_pyproject(target)
    if pyproject is None:
        root = target.resolve() if target.is_dir() else target.resolve().parent
        return ProjectConfig(root=root, pyproject=None)
    text = pyproject.read_text(encoding="utf-8", errors="replace")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{pyproject}: invalid TOML ({exc}); nothing was changed") from None
    table = data.get("tool", {}).get("sessionfix", {})
    if not isinstance(table, dict):
        raise UserError(f"{pyproject}:{_key_line(text, 'sessionfix')}: [tool.sessionfix] must be a table")
    settings = parse_settings(table, source=str(pyproject), text=text)
    return ProjectConfig(root=pyproject.parent, pyproject=pyproject, settings=settings)


def declared_dependencies(pyproject: Path | None) -> frozenset[str]:
    """Import-style names of the project's declared dependencies (best effort).

    A dependency that is declared but not installed where sessionfix runs is not "missing".
    """
    if pyproject is None:
        return frozenset()
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8", errors="replace"))
    except tomllib.TOMLDecodeError:
        return frozenset()
    project = data.get("project", {})
    specs: list[str] = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        specs.extend(extra)
    names = set()
    for spec in specs:
        name = spec
        for stop in "[<>=!~;@ (":
            name = name.split(stop, 1)[0]
        if name.strip():
            names.add(name.strip().lower().replace("-", "_").replace(".", "_"))
    return frozenset(names)
