"""The engine around the rules: worker processes, the cache, `cache clear`, memory of results."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sessionfix.session
from sessionfix.cache import CACHE_DIR
from sessionfix.cli import app
from sessionfix.model import FileResult
from sessionfix.session import Run, prepare
from tests.conftest import write_project

JOB = """\
from init import Session


def notify(text):
    with Session() as session:
        session.add(text)
        session.commit()
"""
PLAIN = """\
import requests


def fetch(url):
    return requests.Session().get(url)
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = write_project(tmp_path)
    for index in range(3):
        (root / f"jobs_{index}.py").write_text(JOB)
        (root / f"plain_{index}.py").write_text(PLAIN)
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "broken.py").write_text("from init import Session\ndef f(:\n")
    return root


def _key(result: FileResult) -> tuple[object, ...]:
    return (result.display_path, result.changes, result.findings, result.new_source, result.error)


def _run(root: Path, *, cache: bool = True, jobs: int = 1, **overrides: object) -> tuple[Run, list[tuple[object, ...]]]:
    run = prepare([root], dict(overrides))
    run.use_cache, run.jobs, run.keep_original, run.prefilter = cache, jobs, False, True
    return run, [_key(r) for r in run.process()]


def test_jobs_give_the_same_results_in_the_same_order(tree: Path) -> None:
    _, one = _run(tree, cache=False, jobs=1)
    _, two = _run(tree, cache=False, jobs=2)
    assert one == two
    assert [k[0] for k in one] == sorted(k[0] for k in one)
    assert any(k[3] for k in one) and any(k[4] for k in one)  # changes and an error among them


def test_chunks_keep_order_and_give_heavy_files_their_own() -> None:
    from sessionfix.parallel import chunk
    from sessionfix.runner import Job

    jobs = [Job(Path(f"f{i}.py"), f"f{i}.py") for i in range(10)]
    heavy = {jobs[2], jobs[3], jobs[9]}
    chunks = chunk(jobs, 3, lambda job: job in heavy)
    assert [job for part in chunks for job in part] == jobs
    assert [len(part) for part in chunks] == [2, 1, 1, 3, 2, 1]
    assert all(part == [job] for part in chunks for job in part if job in heavy)


@pytest.mark.parametrize("jobs", [1, 2])
def test_processing_collects_rarely_and_leaves_the_collector_as_it_was(tree: Path, jobs: int) -> None:
    import gc

    from sessionfix.parallel import COLLECT_AFTER

    before = (gc.get_threshold(), gc.get_freeze_count(), gc.isenabled())
    run = prepare([tree], {})
    run.jobs, run.prefilter = jobs, True
    results = run.process()
    next(results)
    assert gc.get_threshold()[0] == COLLECT_AFTER and gc.get_freeze_count() > 0
    results.close()  # a caller that stops early (an error, Ctrl-C) restores it too
    assert (gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()) == before
    _, again = _run(tree, cache=False, jobs=jobs)
    assert (gc.get_threshold(), gc.get_freeze_count()) == before[:2]
    assert sum(1 for key in again if key[3] is not None) == 3  # the three jobs_N.py files


def test_overlapping_runs_put_the_collector_back_once_both_are_done(tree: Path) -> None:
    import gc

    before = gc.get_threshold()
    first, second = prepare([tree], {}), prepare([tree], {})
    a, b = first.process(), second.process()
    next(a)
    next(b)
    list(a)  # the first run ends while the second still runs: it keeps the raised threshold
    assert gc.get_threshold() != before
    list(b)
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_hosts_own_collector_settings_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    from sessionfix.parallel import collecting_rarely

    before = gc.get_threshold()
    calls: list[str] = []
    monkeypatch.setattr(gc, "get_freeze_count", lambda: 18292)  # a host (a pre-fork server) froze its objects
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    monkeypatch.setattr(gc, "unfreeze", lambda: calls.append("unfreeze"))
    with collecting_rarely():
        pass
    assert calls == []  # unfreezing would thaw the host's objects too
    gc.set_threshold(0)  # collection turned off by threshold: not turned back on
    try:
        with collecting_rarely():
            assert gc.get_threshold()[0] == 0
    finally:
        gc.set_threshold(*before)


def test_the_first_pass_reads_the_same_in_workers(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessionfix.session, "SCAN_IN_PARALLEL", 2)
    gone = tree / "gone.py"
    gone.symlink_to(tree / "nowhere.py")  # unreadable
    (tree / "settled.py").write_text("import httpx\n\nclient = httpx.Session()\n")
    tokens = [b"Session", b"requests", b"get_db_session_ctx"]
    scans = []
    for workers in (1, 2):
        run = prepare([tree], {})
        run._scan([*run.files, gone], tokens, workers=workers)
        scans.append({path: (scanned.digest, scanned.tokens) for path, scanned in run._scanned.items()})
        settled = {path: scanned.settled for path, scanned in run._scanned.items()}
    assert scans[0] == scans[1]
    assert scans[1][gone][0] is None and scans[1][tree / "plain_0.py"][1] == {b"requests", b"Session"}
    # the workers' pass also notes that the bytes show `httpx.Session` is httpx's: that file is
    # scheduled with the light ones (no parse expected)
    assert settled[tree / "settled.py"] and not settled[tree / "plain_0.py"]
    _, one = _run(tree, cache=False, jobs=1)
    _, two = _run(tree, cache=False, jobs=2)
    assert one == two


def test_diff_output_is_identical_for_any_jobs(tree: Path) -> None:
    runner = CliRunner()
    outputs = [runner.invoke(app, ["diff", str(tree), "--no-cache", "--jobs", jobs, "--format", "json"]).stdout
               for jobs in ("1", "3")]
    assert outputs[0] == outputs[1] and json.loads(outputs[0])["files"]


def test_warm_run_parses_nothing_and_reproduces_results(tree: Path) -> None:
    cold_run, cold = _run(tree)
    assert cold_run.parsed > 0 and cold_run.cached == 0
    warm_run, warm = _run(tree)
    assert warm == cold
    assert (warm_run.parsed, warm_run.cached) == (0, len(cold))


def test_edit_a_file_reprocesses_only_that_file(tree: Path) -> None:
    _run(tree)
    (tree / "jobs_1.py").write_text(JOB.replace("text", "item"))
    run, results = _run(tree)
    assert (run.parsed, run.cached) == (1, len(results) - 1)
    assert _run(tree, cache=False)[1] == results


def test_warm_scan_reuses_tokens_only_for_unchanged_bytes(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(tree)
    _run(tree)  # the closure was cached already by the first run; this one records the scan too
    searched: list[bytes] = []
    real = sessionfix.session.held_tokens
    monkeypatch.setattr(sessionfix.session, "held_tokens", lambda tokens, raw: searched.append(raw) or real(tokens, raw))
    (tree / "plain_0.py").write_text(JOB)  # a file that held no token now holds one
    run, results = _run(tree)
    assert set(searched) == {JOB.encode()}, "only the edited file's bytes are searched again"
    assert [k for k in results if k[0] == "plain_0.py"][0][1], "and its new site is found"
    assert results == _run(tree, cache=False)[1]


def test_edit_the_helper_module_invalidates(tree: Path) -> None:
    _run(tree)
    db = tree / "core" / "db.py"
    db.write_text(db.read_text().replace("session.rollback()\n", "pass\n", 1))
    run, results = _run(tree)
    assert run.cached == 0 and run.parsed > 0
    assert results == _run(tree, cache=False)[1]


def test_edit_an_imported_module_invalidates_its_importers(tree: Path) -> None:
    (tree / "models.py").write_text("class User:\n    pass\n")
    (tree / "uses.py").write_text("from models import User, Order\n")
    _, before = _run(tree)
    assert [f.message for f in dict((k[0], k) for k in before)["uses.py"][2]] == ["models.py defines no Order"]
    (tree / "models.py").write_text("class User:\n    pass\n\n\nclass Order:\n    pass\n")
    run, after = _run(tree)
    assert dict((k[0], k) for k in after)["uses.py"][2] == []
    assert run.cached == len(after) - 2  # uses.py and models.py itself


def test_files_the_first_pass_settles_need_no_worker(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file that holds no prefilter token and whose imports all resolve is answered from the
    first pass: no worker reads it again, and its answer is the one a worker gives."""
    import sessionfix.parallel

    (tree / "models.py").write_text("class User:\n    pass\n")
    (tree / "uses.py").write_text("import json\nfrom models import User\n")
    (tree / "missing.py").write_text("from models import Order\n")
    sent: list[str] = []
    real = sessionfix.parallel.work_one
    monkeypatch.setattr(sessionfix.parallel, "work_one", lambda state, job: sent.append(job.display) or real(state, job))
    _, results = _run(tree, cache=False)
    assert "uses.py" not in sent and "models.py" not in sent
    assert {"missing.py", "jobs_0.py", "plain_0.py", "pkg/broken.py"} <= set(sent)
    monkeypatch.setattr(sessionfix.parallel, "work_one", real)
    run = prepare([tree], {})
    run.prefilter, run.keep_original = False, False  # every file through a worker's rules
    assert results == [_key(r) for r in run.process()]


def test_a_settled_file_is_invalidated_by_the_modules_its_imports_consulted(tree: Path) -> None:
    (tree / "models.py").write_text("class User:\n    pass\n\n\nclass Order:\n    pass\n")
    (tree / "uses.py").write_text("from models import User, Order\n")
    _, before = _run(tree)
    assert dict((k[0], k) for k in before)["uses.py"][2] == []
    (tree / "models.py").write_text("class User:\n    pass\n")
    run, after = _run(tree)
    assert [f.message for f in dict((k[0], k) for k in after)["uses.py"][2]] == ["models.py defines no Order"]
    assert run.cached == len(after) - 2  # uses.py and models.py itself
    assert after == _run(tree, cache=False)[1]


def test_a_settled_file_depends_on_no_module_when_no_rule_checks_imports(tree: Path) -> None:
    """A worker checks imports only for a rule that reports them; so does a settled file's entry."""
    from sessionfix.registry import RULES

    rules = [rule for rule in RULES if rule.CODE == "SF002"]
    (tree / "models.py").write_text("class User:\n    pass\n\n\nclass Order:\n    pass\n")
    (tree / "uses.py").write_text("from models import User, Order\n")

    def run() -> Run:
        current = prepare([tree], {}, rules)
        current.use_cache, current.keep_original, current.prefilter = True, False, True
        list(current.process())
        return current

    run()
    (tree / "models.py").write_text("class User:\n    pass\n")
    assert run().cached == len(run().files) - 1  # models.py itself only: uses.py's entry stands


def test_config_change_invalidates(tree: Path) -> None:
    _run(tree)
    run, results = _run(tree, unsafe=True)
    assert run.cached == 0
    assert results == _run(tree, cache=False, unsafe=True)[1]


def test_version_upgrade_invalidates(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _run(tree)
    monkeypatch.setattr(sessionfix.session, "__version__", "99.0")
    run, _ = _run(tree)
    assert run.cached == 0


def _counting_prefilters(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    made: list[object] = []

    class Counted(sessionfix.session.Prefilter):
        def __init__(self, *args: object) -> None:
            made.append(self)
            super().__init__(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sessionfix.session, "Prefilter", Counted)
    return made


def test_warm_run_builds_no_prefilter_until_something_changes(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _, cold = _run(tree)
    made = _counting_prefilters(monkeypatch)
    run, warm = _run(tree)
    assert (warm, run.cached, made) == (cold, len(cold), []), "answered from the stored closure, no rule needed"
    monkeypatch.setattr(sessionfix.session, "installation_stamp", lambda: "a rule file changed")
    run, again = _run(tree)
    assert again == cold and len(made) == 1 and run.cached == len(cold)
    (tree / "plain_1.py").write_text(JOB)  # an edit: the file needs the rules again
    run, edited = _run(tree)
    assert len(made) == 2 and run.parsed == 1 and edited == _run(tree, cache=False)[1]


def test_warm_diff_never_imports_libcst(tree: Path) -> None:
    import subprocess
    import sys

    probe = ("import sys\nfrom sessionfix.cli import app\ntry:\n    app(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print('libcst imported:', 'libcst' in sys.modules)\n")
    runs = [subprocess.run([sys.executable, "-c", probe, "diff", "--jobs", "1", str(tree)], capture_output=True,
                           text=True, cwd=tree) for _ in range(2)]
    assert runs[0].stdout.endswith("libcst imported: True\n")  # the first run parses the files
    assert runs[1].stdout.endswith("libcst imported: False\n"), runs[1].stderr
    assert runs[1].stdout == runs[0].stdout.replace("True\n", "False\n") and runs[1].stderr == runs[0].stderr


def test_a_module_that_appears_or_goes_renews_the_closure(tmp_path: Path) -> None:
    """Found by review: `core.py` (no token in it) hides the package `core/`; once it is gone,
    `core.db.DbSession` resolves, and the cached closure must learn the new spelling."""
    root = write_project(tmp_path, {
        "pyproject.toml": "[tool.sessionfix]\n",
        "core/db.py": "from sqlalchemy.ext.asyncio import (\n    AsyncSession as DbSession,\n)\n",
        "core.py": "X = 1\n",
        "app.py": textwrap.dedent("""\
            import asyncio

            from core.db import DbSession


            async def dashboard(db: DbSession, load_users, load_orders):
                return await asyncio.gather(load_users(db), load_orders(db))
            """),
    })
    _run(root)
    (root / "core.py").unlink()
    _, warm = _run(root)
    _, cold = _run(root, cache=False)
    assert warm == cold
    assert [f.rule for f in dict((k[0], k) for k in cold)["app.py"][2]] == ["SF013"]


def test_helper_check_is_repeated_when_its_module_changes(tree: Path) -> None:
    from sessionfix.errors import UserError

    prepare([tree], {}, cache=True)
    assert (tree / CACHE_DIR / "helpers.json").is_file()
    prepare([tree], {}, cache=True)
    db = tree / "core" / "db.py"
    db.write_text(db.read_text().replace("def get_db_session_ctx", "def renamed_ctx"))
    with pytest.raises(UserError, match="defines no get_db_session_ctx"):
        prepare([tree], {}, cache=True)


def test_broken_cache_is_a_warning_never_an_error(tree: Path) -> None:
    _, cold = _run(tree)
    for path in (tree / CACHE_DIR).glob("*.json"):
        path.write_text("{not json")
    warnings: list[str] = []
    run = prepare([tree], {})
    run.use_cache, run.warn, run.prefilter = True, warnings.append, True
    assert [_key(r) for r in run.process()] == cold
    assert len(warnings) == 1 and "ignoring unreadable cache" in warnings[0]


def test_unwritable_cache_is_a_warning(tree: Path) -> None:
    (tree / CACHE_DIR).write_text("a file where the directory should be")
    warnings: list[str] = []
    run = prepare([tree], {})
    run.use_cache, run.warn, run.prefilter = True, warnings.append, True
    results = list(run.process())
    assert results and warnings and all("warning" in w for w in warnings)


def test_unchanged_results_carry_no_bytes(tree: Path) -> None:
    run = prepare([tree], {})
    run.keep_original = False
    results = {r.display_path: r for r in run.process()}
    assert results["plain_0.py"].original == b""
    assert results["jobs_0.py"].original == JOB.encode() and results["jobs_0.py"].changed


def test_cache_clear(tree: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(app, ["diff", str(tree)]).exit_code == 2  # broken.py
    assert (tree / CACHE_DIR / ".gitignore").is_file()
    result = runner.invoke(app, ["cache", "clear", str(tree)])
    assert result.exit_code == 0 and "removed" in result.stdout
    assert not (tree / CACHE_DIR).exists()
    assert "no cache" in runner.invoke(app, ["cache", "clear", str(tree)]).stdout


def test_no_cache_writes_nothing(tree: Path) -> None:
    CliRunner().invoke(app, ["diff", str(tree), "--no-cache", "--jobs", "1"])
    assert not (tree / CACHE_DIR).exists()


def test_progress_only_on_a_terminal(tree: Path) -> None:
    from rich.console import Console

    from sessionfix.progress import with_progress

    import io
    quiet = io.StringIO()
    assert list(with_progress(iter(range(3)), 3, Console(file=quiet), delay=0)) == [0, 1, 2]
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    list(with_progress(iter(range(3)), 3, Console(file=shown, force_terminal=True), delay=0))
    assert "3/3" in shown.getvalue() or "checking" in shown.getvalue()


def test_files_no_rule_needs_are_never_parsed(tree: Path) -> None:
    """The issue's rule: such a file's syntax error goes unreported (audit/check still parse all)."""
    (tree / "unrelated.py").write_text("def f(:\n")
    run, results = _run(tree, cache=False)
    assert [k[0] for k in results if k[4]] == ["pkg/broken.py"]
    assert run.parsed == len(results) - 3  # not: the two empty __init__.py files and unrelated.py
