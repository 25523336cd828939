"""Replay of a repeated `sessionfix diff` (sessionfix.replay): identical output, and a full run
as soon as anything the recorded run consulted changes.

Each test drives the real entry point in a child process. The probe notes whether typer was
imported: a replay never imports it. A record is only made from files older than two seconds
(replay.RACY_NS), and a ctime cannot be set back, so every project the module's tests use is laid
out at once (`_prepared` says how, where a test needs more than the default) and aged once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from sessionfix.cache import CACHE_DIR
from sessionfix.replay import RACY_NS
from sessionfix.rule import DEFAULT_PROJECT
from tests.conftest import write_project

PROBE = """\
import atexit, sys
atexit.register(lambda: print("replayed" if "typer" not in sys.modules else "ran", file=open("probe.out", "w")))
sys.argv = ["sessionfix", *sys.argv[1:]]
from sessionfix.replay import main
main()
"""
JOB = """\
from init import Session


def notify(text):
    with Session() as session:
        session.add(text)
        session.commit()
"""
PLAIN = "def add(a, b):\n    return a + b\n"


#: test function name -> how its project is laid out under a fresh directory (returns the root)
PREPARED: dict[str, Callable[[Path], Path]] = {}


def _prepared(test: str) -> Callable[[Callable[[Path], Path]], Callable[[Path], Path]]:
    def register(build: Callable[[Path], Path]) -> Callable[[Path], Path]:
        PREPARED[test] = build
        return build

    return register


def _default_project(base: Path) -> Path:
    return write_project(base, {**DEFAULT_PROJECT, "jobs.py": JOB, "plain.py": PLAIN, "pkg/__init__.py": "",
                                "pkg/deep.py": PLAIN})


@pytest.fixture(scope="session")
def _aged_projects(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    here = sys.modules[__name__]
    base = tmp_path_factory.mktemp("replay")
    items = [item for item in request.session.items if getattr(item, "module", None) is here]
    roots = {item.name: PREPARED.get(item.originalname, _default_project)(base / f"t{n}" / "project")  # type: ignore[attr-defined]
             for n, item in enumerate(items)}
    _age()
    return roots


@pytest.fixture
def aged(request: pytest.FixtureRequest, _aged_projects: dict[str, Path]) -> Path:
    """This test's project, old enough to be recorded; things it needs outside go next to it."""
    return _aged_projects[request.node.name]


def _age() -> None:
    time.sleep(RACY_NS / 1e9 + 0.2)


def _diff(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[str, subprocess.CompletedProcess[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, "diff", "--jobs", "1", *args], cwd=root, text=True,
                          capture_output=True, env=env)
    assert done.returncode in (0, 1), done.stderr
    how = (root / "probe.out").read_text().strip()
    (root / "probe.out").unlink()
    return how, done


def _records(root: Path) -> list[Path]:
    return sorted((root / CACHE_DIR).glob("run-*.json"))


def _same(a: subprocess.CompletedProcess[str], b: subprocess.CompletedProcess[str]) -> bool:
    return (a.stdout, a.stderr, a.returncode) == (b.stdout, b.stderr, b.returncode)


def _truth(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """What a run without any cache prints (never recorded, never replayed)."""
    how, done = _diff(root, "--no-cache", *args)
    assert how == "ran"
    return done


def test_a_repeated_run_replays_the_cold_runs_output(aged: Path) -> None:
    how, cold = _diff(aged)
    assert how == "ran" and cold.returncode == 1 and "jobs.py" in cold.stdout
    assert len(_records(aged)) == 1, "the cold run checked that the cache answers it, and recorded"
    how, again = _diff(aged)
    assert how == "replayed" and _same(again, cold)
    assert _same(again, _truth(aged))
    assert len(_records(aged)) == 1, "--no-cache neither replays nor records"


def test_a_bytecode_cache_appearing_still_replays(aged: Path) -> None:
    """Python writes `__pycache__` wherever a module is first imported from: the project's own
    tests, or, in a fresh checkout, another process importing a package of sessionfix that `diff`
    never imports (CI failed so). No run's answer depends on it, so it does not stop a replay."""
    _diff(aged)
    how, recorded = _diff(aged)
    assert how == "replayed"
    for directory in (aged, aged / "pkg"):
        (directory / "__pycache__").mkdir()
        (directory / "__pycache__" / "plain.cpython-311.pyc").write_bytes(b"")
    how, again = _diff(aged)
    assert how == "replayed" and _same(again, recorded)
    (aged / "pkg" / "more.py").write_text(JOB)  # while a new module still means a full run
    assert _diff(aged)[0] == "ran"


@pytest.mark.parametrize("change", ["edit", "same-size-same-mtime", "new-file", "removed-file", "config"])
def test_a_change_to_what_the_run_consulted_means_a_full_run(aged: Path, change: str) -> None:
    _diff(aged)
    how, recorded = _diff(aged)
    assert how == "replayed"
    if change == "edit":
        (aged / "plain.py").write_text(JOB)
    elif change == "same-size-same-mtime":  # only the ctime tells: the mtime is put back by hand
        before = (aged / "jobs.py").stat()
        (aged / "jobs.py").write_text(JOB.replace("session.add(text)", "session.add(txet)"))
        os.utime(aged / "jobs.py", ns=(before.st_atime_ns, before.st_mtime_ns))
        assert (aged / "jobs.py").stat().st_size == before.st_size
    elif change == "new-file":
        (aged / "pkg" / "more.py").write_text(JOB)
    elif change == "removed-file":
        (aged / "jobs.py").unlink()
    else:
        (aged / "pyproject.toml").write_text((aged / "pyproject.toml").read_text().replace("init.Session", "nowhere.Session"))
    how, after = _diff(aged)
    assert how == "ran"
    assert _same(after, _truth(aged)) and after.stdout != recorded.stdout


def test_what_happens_beside_the_project_does_not_matter(aged: Path) -> None:
    """The project's parent directory (often /tmp or a home directory) changes all the time."""
    _diff(aged)
    assert _diff(aged)[0] == "replayed"
    (aged.parent / "unrelated.txt").write_text("x\n")
    how, again = _diff(aged)
    assert how == "replayed" and _same(again, _truth(aged))


def test_the_environment_and_arguments_are_part_of_the_key(aged: Path) -> None:
    base = dict(os.environ)  # explicit: the C-level environment can hold more than os.environ
    _diff(aged, env=base)
    assert _diff(aged, env=base)[0] == "replayed"
    assert _diff(aged, env={**base, "SESSIONFIX_TEST_OTHER": "1"})[0] == "ran"
    assert _diff(aged, "--format", "json", env=base)[0] == "ran"
    assert _diff(aged, env={**base, "OLDPWD": "/elsewhere", "SHLVL": "7"})[0] == "replayed"  # a `cd` before
    assert _diff(aged, env=base)[0] == "replayed"


def test_no_record_from_files_changed_moments_ago(aged: Path) -> None:
    (aged / "plain.py").write_text(PLAIN + "\n")  # its mtime is now: a same-tick edit would go unseen
    how, cold = _diff(aged)
    assert how == "ran" and _records(aged) == []
    _age()
    assert _diff(aged)[0] == "ran" and len(_records(aged)) == 1  # answered by the cache, recorded
    assert _diff(aged)[0] == "replayed"


@_prepared("test_a_closed_pipe_is_never_recorded")
def _big(base: Path) -> Path:
    root = _default_project(base)
    (root / "big.py").write_text(JOB * 400)  # a diff far larger than a pipe's buffer
    return root


def test_a_closed_pipe_is_never_recorded(aged: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", PROBE, "diff", "--jobs", "1"], cwd=aged,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert child.stdout is not None
    child.stdout.read(10)
    child.stdout.close()
    child.wait(timeout=120)
    assert _records(aged) == []


@_prepared("test_what_git_ignores_is_asked_again")
def _in_git(base: Path) -> Path:
    root = _default_project(base)
    if shutil.which("git") is not None:
        for command in (["init", "-q"], ["add", "-A"]):
            subprocess.run(["git", *command], cwd=root, check=True, capture_output=True)
    return root


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_what_git_ignores_is_asked_again(aged: Path) -> None:
    _, cold = _diff(aged)
    assert _diff(aged)[0] == "replayed" and "jobs.py" in cold.stdout
    with (aged / ".git" / "info" / "exclude").open("a") as exclude:
        exclude.write("jobs.py\n")
    subprocess.run(["git", "rm", "-q", "--cached", "jobs.py"], cwd=aged, check=True)
    how, after = _diff(aged)
    assert how == "ran" and "jobs.py" not in after.stdout
    assert _same(after, _truth(aged))


# -- found by review: each once gave a stale or broken replay ------------------------------------


def _replays_then(root: Path, change: Callable[[], None], *args: str) -> None:
    """Record, check the replay, make `change`, and expect a full run that prints the truth."""
    _diff(root, *args)
    how, recorded = _diff(root, *args)
    assert how == "replayed"
    change()
    how, after = _diff(root, *args)
    assert how == "ran"
    assert _same(after, _truth(root, *args)) and after.stdout + after.stderr != recorded.stdout + recorded.stderr


@_prepared("test_a_package_installed_into_the_projects_venv")
def _with_empty_venv(base: Path) -> Path:
    root = _default_project(base)
    (root / "uses.py").write_text("import newmod\n")
    (root / ".venv").mkdir()
    return root


def test_a_package_installed_into_the_projects_venv(aged: Path) -> None:

    def install() -> None:
        (aged / ".venv" / "lib" / "python3.11" / "site-packages" / "newmod").mkdir(parents=True)
        (aged / ".venv" / "lib" / "python3.11" / "site-packages" / "newmod" / "__init__.py").write_text("")

    _replays_then(aged, install)


@_prepared("test_a_pyproject_appearing_between_a_project_and_its_configuration")
def _configured_from_above(base: Path) -> Path:
    # the configuration two levels up (not /tmp's ancestors, whose listings change all the time)
    write_project(base, {"pyproject.toml": "[tool.sessionfix]\n"})
    return write_project(base / "outer" / "proj", {"jobs.py": JOB, "plain.py": PLAIN})


def test_a_pyproject_appearing_between_a_project_and_its_configuration(aged: Path) -> None:
    _replays_then(aged, lambda: (aged.parent / "pyproject.toml").write_text(
        '[tool.sessionfix]\nexclude = ["proj/jobs.py"]\n'))


@_prepared("test_a_symlink_pointed_elsewhere")
def _with_link(base: Path) -> Path:
    root = _default_project(base)
    elsewhere = root.parent / "ext"
    elsewhere.mkdir()
    (elsewhere / "a.py").write_text(JOB)
    (elsewhere / "b.py").write_text(PLAIN)
    (root / "linked.py").symlink_to(elsewhere / "a.py")
    return root


def test_a_symlink_pointed_elsewhere(aged: Path) -> None:
    elsewhere = aged.parent / "ext"

    def retarget() -> None:
        (aged / "linked.py").unlink()
        (aged / "linked.py").symlink_to(elsewhere / "b.py")

    _replays_then(aged, retarget)


@_prepared("test_a_file_turned_into_a_directory")
def _with_notes(base: Path) -> Path:
    root = _default_project(base)
    (root / "extra").write_text("notes\n")
    return root


def test_a_file_turned_into_a_directory(aged: Path) -> None:

    def turn() -> None:
        (aged / "extra").unlink()
        (aged / "extra").mkdir()
        (aged / "extra" / "job.py").write_text(JOB)

    _replays_then(aged, turn)


@_prepared("test_a_directory_named_like_the_cache_is_still_watched")
def _with_cache_lookalike(base: Path) -> Path:
    root = _default_project(base)
    (root / f"{CACHE_DIR}_old").mkdir()
    (root / f"{CACHE_DIR}_old" / "job.py").write_text(PLAIN)
    return root


def test_a_directory_named_like_the_cache_is_still_watched(aged: Path) -> None:
    _replays_then(aged, lambda: (aged / f"{CACHE_DIR}_old" / "job.py").write_text(JOB))


def test_a_warning_is_never_replayed(aged: Path) -> None:
    _diff(aged)
    for results in (aged / CACHE_DIR).glob("results-*.json"):
        results.write_text('{"key": ')
    for record in _records(aged):
        record.unlink()
    how, warned = _diff(aged)
    assert how == "ran" and "warning" in warned.stderr
    assert _records(aged) == []
    assert all("warning" not in _diff(aged)[1].stderr for _ in range(2))


@_prepared("test_stdout_and_stderr_interleave_as_they_did")
def _two_jobs(base: Path) -> Path:
    root = _default_project(base)
    (root / "more.py").write_text(JOB)
    return root


def test_stdout_and_stderr_interleave_as_they_did(aged: Path) -> None:
    merged = [subprocess.run([sys.executable, "-c", PROBE, "diff", "--jobs", "1"], cwd=aged, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for _ in range(3)]
    assert (aged / "probe.out").read_text().strip() == "replayed"
    assert merged[2].stdout == merged[1].stdout == merged[0].stdout


def test_a_closed_stdout_pipe_still_gets_stderr_written(aged: Path) -> None:
    _diff(aged)
    assert _diff(aged)[0] == "replayed"
    child = subprocess.Popen([sys.executable, "-c", PROBE, "diff", "--jobs", "1"], cwd=aged,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()
    errors = child.stderr.read()
    assert child.wait(timeout=60) == 1 and "would change" in errors


def test_a_closed_stdout_is_neither_recorded_nor_replayed(aged: Path) -> None:
    runs = [subprocess.run([sys.executable, "-c", PROBE, "diff", "--jobs", "1", "plain.py"], cwd=aged, text=True,
                           stderr=subprocess.PIPE, preexec_fn=lambda: os.close(1)) for _ in range(3)]
    assert [r.returncode for r in runs] == [0, 0, 0] and all("Traceback" not in r.stderr for r in runs)
    assert _records(aged) == []


@pytest.mark.parametrize("damage", [
    lambda r: {**r, "files": {"bad\0path": None}},
    lambda r: {**r, "commands": [[5, None, "x"]]},
    lambda r: {**r, "commands": [[["rm", "-rf", "x"], None, "x"]]},
    lambda r: {**r, "output": [["out", "\ud800"]]},
    lambda r: {**r, "output": "text"},
    lambda r: "[" * 100_000,
])
def test_a_damaged_record_means_a_normal_run(aged: Path, damage: Callable[[Any], Any]) -> None:
    _, cold = _diff(aged)
    (record,) = _records(aged)
    damaged = damage(json.loads(record.read_text()))
    record.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
    how, after = _diff(aged)
    assert how == "ran" and _same(after, cold)


@_prepared("test_a_dangling_symlinks_target_appearing")
def _with_dangling_link(base: Path) -> Path:
    root = _default_project(base)
    (root.parent / "ext").mkdir()  # exists already: only its (unwatched) content changes
    (root / "init").symlink_to(root.parent / "ext" / "init")
    return root


def test_a_dangling_symlinks_target_appearing(aged: Path) -> None:
    """Found by review: `init` links to a directory that does not exist yet, so `init` is missing."""
    elsewhere = aged.parent / "ext"

    def create() -> None:
        (elsewhere / "init").mkdir()
        (elsewhere / "init" / "__init__.py").write_text(
            "from sqlalchemy.orm import sessionmaker\n\nSession = sessionmaker()\n")

    _replays_then(aged, create)


@_prepared("test_a_project_inside_a_directory_named_like_the_cache")
def _below_cache_lookalike(base: Path) -> Path:
    return _default_project(base / CACHE_DIR / "proj")


def test_a_project_inside_a_directory_named_like_the_cache(aged: Path) -> None:
    """Found by review: only the cache's own files are left out, not everything below the name."""
    _replays_then(aged, lambda: (aged / "plain.py").write_text(JOB))
