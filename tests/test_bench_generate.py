"""The benchmark's tree generator and measurement helper (bench/), on a small tree.

bench/ is a pair of scripts, not a package, so its modules are loaded from their files.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import libcst as cst
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
RAW_FACTORY_IMPORTS = {("init", "Session"), ("core.db", "async_session")}


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"sessionfix_bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


generate = _load("generate")
measure = _load("measure")


def _dotted(node: cst.BaseExpression) -> str:
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    assert isinstance(node, cst.Name)
    return node.value


class _Imports(cst.CSTVisitor):
    """(module, name) for every `from module import name`, and every Name used."""

    def __init__(self) -> None:
        self.imported: set[tuple[str, str]] = set()
        self.names: set[str] = set()

    def visit_ImportFrom(self, node: cst.ImportFrom) -> None:
        if node.module is not None and not isinstance(node.names, cst.ImportStar):
            for alias in node.names:
                self.imported.add((_dotted(node.module), _dotted(alias.name)))

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)


def _python_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.py"))}


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("tree")
    return root, generate.generate(root, files=40, matching_ratio=0.1, seed=7)


@pytest.fixture(scope="module")
def parsed(tree: tuple[Path, dict]) -> dict[str, _Imports]:
    """Every generated .py file parsed with libcst (raises if one does not parse)."""
    root, _ = tree
    result = {}
    for relative, data in _python_files(root).items():
        visitor = _Imports()
        cst.parse_module(data).visit(visitor)
        result[relative] = visitor
    return result


def test_same_seed_same_bytes_other_seed_other_bytes(tree: tuple[Path, dict], tmp_path: Path) -> None:
    root, stats = tree
    again = generate.generate(tmp_path / "again", files=40, matching_ratio=0.1, seed=7)
    other = generate.generate(tmp_path / "other", files=40, matching_ratio=0.1, seed=8)
    assert again == stats
    assert _python_files(tmp_path / "again") == _python_files(root)
    assert _python_files(tmp_path / "other") != _python_files(root)
    assert (tmp_path / "again" / "pyproject.toml").read_bytes() == (root / "pyproject.toml").read_bytes()


def test_requested_share_of_files_import_a_raw_factory(tree: tuple[Path, dict], parsed: dict[str, _Imports]) -> None:
    _, stats = tree
    assert (stats["matching"], stats["plain"], stats["modules"]) == (4, 36, 40)
    importing = {path for path, v in parsed.items() if v.imported & RAW_FACTORY_IMPORTS}
    assert importing == set(stats["matching_paths"])


def test_every_file_parses_and_stats_match_the_tree(tree: tuple[Path, dict], parsed: dict[str, _Imports]) -> None:
    root, stats = tree
    files = _python_files(root)
    assert set(parsed) == set(files)  # the fixture parsed all of them
    assert stats["files"] == len(files)
    assert stats["lines"] == sum(data.count(b"\n") for data in files.values())
    assert stats["bytes"] == sum(len(data) for data in files.values())
    assert 100 <= stats["lines"] / stats["modules"] <= 300
    assert {"core/__init__.py", "core/db.py", "models.py"} <= set(files)
    packages = {str(Path(path).parent) for path in files} - {"."}
    assert all(f"{package}/__init__.py" in files for package in packages)
    assert max(len(Path(path).parts) for path in files) >= 3


def test_helpers_named_in_pyproject_are_defined_in_core_db(parsed: dict[str, _Imports]) -> None:
    names = parsed["core/db.py"].names
    assert {"get_session", "get_db_session_ctx", "async_session", "get_async_session",
            "contextmanager", "asynccontextmanager", "async_sessionmaker"} <= names


def test_non_matching_files_hold_session_near_misses(tree: tuple[Path, dict], parsed: dict[str, _Imports]) -> None:
    _, stats = tree
    plain = {path: v for path, v in parsed.items()
             if path not in stats["matching_paths"] and not path.endswith("__init__.py")
             and path not in ("core/db.py", "models.py")}
    assert not any(v.imported & RAW_FACTORY_IMPORTS for v in plain.values())
    near = {path for path, v in plain.items()
            if ("sqlalchemy.orm", "Session") in v.imported or {"requests", "aiohttp"} & v.names}
    assert near  # a prefilter must meet `Session` / `.session` in files it has to rule out


def test_doubled_tree_keeps_every_file_of_the_base_tree(tree: tuple[Path, dict], tmp_path: Path) -> None:
    root, stats = tree
    doubled = generate.write_tree(tmp_path / "x2", matching=stats["matching"], plain=2 * stats["plain"], seed=7)
    base, bigger = _python_files(root), _python_files(tmp_path / "x2")
    assert {path: bigger.get(path) for path in base} == base
    assert doubled["matching_paths"] == stats["matching_paths"]
    assert doubled["plain"] == 72


def test_generate_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        generate.generate(tmp_path, files=3)


def test_measure_reports_time_cpu_and_memory_of_a_child() -> None:
    # Measured from a fresh interpreter: on Linux a child's peak memory starts from its parent's
    # at the fork (a test worker may hold hundreds of MB). Busy for a while: CPU time of a
    # child that exits at once can round down to 0.
    probe = (f"import json, sys; sys.path.insert(0, {str(BENCH)!r}); import measure; "
             "r = measure.measure([sys.executable, '-c', 'sum(range(5_000_000))']); "
             "print(json.dumps([r.returncode, r.stderr_tail, r.wall, r.cpu, r.peak_mb]))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    returncode, stderr_tail, wall, cpu, peak_mb = json.loads(done.stdout)
    assert (returncode, stderr_tail) == (0, "")
    assert wall > 0 and cpu > 0
    assert 1 < peak_mb < 500


def test_measure_keeps_exit_code_and_output() -> None:
    result = measure.measure([sys.executable, "-c", "import sys; print('x' * 10); sys.exit(3)"])
    assert (result.returncode, result.stdout_bytes) == (3, 11)


def test_combine_adds_times_and_keeps_largest_memory() -> None:
    first = measure.Measurement(("a",), 1.0, 0.5, 100, 150, 0, 1, "00", "")
    second = measure.Measurement(("b",), 2.0, 1.5, 300, 120, 1, 2, "11", "boom")
    both = measure.combine([first, second])
    assert (both.wall, both.cpu, both.peak_rss, both.tree_rss) == (3.0, 2.0, 300, 150)
    assert (both.returncode, both.stderr_tail, both.stdout_bytes) == (1, "boom", 3)
