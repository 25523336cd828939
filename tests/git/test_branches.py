"""`create_branches` in real temporary git repositories: commits, untouched state, refusals, atomicity."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sessionfix import branches
from sessionfix.branches import BranchError, create_branches, plan_branches
from sessionfix.model import Applicability, Change, FileResult, Location

SRC = Path(__file__).resolve().parents[2] / "src"

FILES = {
    "background/legacy_processor.py": b"def run():\n    session = Session()\n    return session\n",
    "background/jobs.py": b"def job():\n    pass\n",
    "api/routes.py": b"def route():\n    return 1\n",
    "tool.py": b"#!/usr/bin/env python\nprint('tool')\n",
    "untouched.py": b"x = 1\n",
    "README.md": b"# demo\n",
    "CHANGES.txt": b"v1\n",
}


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, text=True).stdout


@pytest.fixture(autouse=True)
def hermetic_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user or system git config, no identity from the environment."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    for name in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL",
                 "GIT_DIR", "GIT_INDEX_FILE", "GIT_WORK_TREE", branches.DELAY_ENV):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository on `main` with a stash, a staged change and an unstaged change to unfixed files."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.name", "Test User")
    git(root, "config", "user.email", "test@example.com")
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / "tool.py").chmod(0o755)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "initial")
    (root / "README.md").write_bytes(b"# stashed edit\n")
    git(root, "stash", "push", "-q", "-m", "user stash")
    (root / "README.md").write_bytes(b"# staged edit\n")
    git(root, "add", "README.md")
    (root / "CHANGES.txt").write_bytes(b"v2, not staged\n")
    (root / "notes.txt").write_bytes(b"untracked\n")
    return root


def result(root: Path, rel: str, *rules: tuple[str, int], suffix: bytes = b"# fixed\n") -> FileResult:
    original = (root / rel).read_bytes()
    changes = [
        Change(rule, Location(rel, line), Applicability.SAFE, f"{rule} reason at {line}") for rule, line in rules
    ]
    return FileResult(root / rel, rel, original, original + suffix, changes)


def fixed(root: Path, suffix: bytes = b"# fixed\n") -> list[FileResult]:
    return [
        result(root, "background/legacy_processor.py", ("SF002", 2), ("SF001", 1), suffix=suffix),
        result(root, "background/jobs.py", ("SF003", 1), suffix=suffix),
        result(root, "api/routes.py", ("SF001", 2), suffix=suffix),
        result(root, "tool.py", ("SF005", 2), suffix=suffix),
        FileResult(root / "untouched.py", "untouched.py", FILES["untouched.py"]),  # not changed: no branch
    ]


def snapshot(root: Path) -> dict[str, object]:
    """Everything of the user's that must survive: worktree, index bytes, HEAD, other refs, stash."""
    worktree = {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".git" not in p.relative_to(root).parts
    }
    refs = [line for line in git(root, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
            if not line.startswith("refs/heads/sessionfix/")]
    return {
        "worktree": worktree,
        "index": (root / ".git" / "index").read_bytes(),
        "status": git(root, "--no-optional-locks", "status", "--porcelain=v1"),
        "HEAD": (root / ".git" / "HEAD").read_text(),
        "head_commit": git(root, "rev-parse", "HEAD"),
        "refs": refs,
        "stash": git(root, "stash", "list"),
    }


def prefixed_refs(root: Path) -> list[str]:
    return git(root, "for-each-ref", "--format=%(refname:strip=2)", "refs/heads/sessionfix/").split()


def object_count(root: Path, kind: str) -> int:
    out = git(root, "cat-file", "--batch-all-objects", "--batch-check=%(objecttype)")
    return out.split().count(kind)


def test_one_branch_per_changed_file_holding_one_commit_on_base(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    results = fixed(repo)

    outcomes = create_branches(repo, results)

    assert [(o.branch, o.files, o.changes, o.status) for o in outcomes] == [
        ("sessionfix/api-routes-py", ("api/routes.py",), 1, "created"),
        ("sessionfix/background-jobs-py", ("background/jobs.py",), 1, "created"),
        ("sessionfix/background-legacy-processor-py", ("background/legacy_processor.py",), 2, "created"),
        ("sessionfix/tool-py", ("tool.py",), 1, "created"),
    ]
    assert prefixed_refs(repo) == [o.branch for o in outcomes]
    by_path = {r.display_path: r for r in results}
    for outcome in outcomes:
        (path,) = outcome.files
        assert git(repo, "rev-parse", outcome.branch).strip() == outcome.commit
        assert git(repo, "rev-list", "--parents", "-n", "1", outcome.branch).split() == [outcome.commit, base]
        assert git(repo, "rev-list", "--count", f"{base}..{outcome.branch}").strip() == "1"
        assert git(repo, "diff-tree", "-r", "--name-only", "--no-commit-id", base, outcome.branch).split() == [path]
        shown = subprocess.run(["git", "show", f"{outcome.branch}:{path}"], cwd=repo, capture_output=True, check=True)
        assert shown.stdout == by_path[path].new_source
    assert git(repo, "log", "-1", "--format=%B", "sessionfix/background-legacy-processor-py") == (
        "sessionfix: background/legacy_processor.py (SF001, SF002)\n\n"
        "line 1: SF001 (safe): SF001 reason at 1\n"
        "line 2: SF002 (safe): SF002 reason at 2\n\n"
    )
    author = git(repo, "log", "-1", "--format=%an <%ae>", "sessionfix/tool-py").strip()
    assert author == "Test User <test@example.com>"
    # The executable bit of the base blob is kept.
    assert git(repo, "ls-tree", "sessionfix/tool-py", "tool.py").split()[0] == "100755"
    assert git(repo, "ls-tree", "sessionfix/api-routes-py", "api/routes.py").split()[0] == "100644"


def test_worktree_index_head_branch_and_stash_untouched(repo: Path) -> None:
    # Same content, new mtimes: a plain `git status` would refresh (rewrite) the index here.
    for rel in ("api/routes.py", "tool.py", "untouched.py"):
        os.utime(repo / rel, (time.time() + 5, time.time() + 5))
    before = snapshot(repo)
    outcomes = create_branches(repo, fixed(repo))
    assert len(outcomes) == 4
    assert snapshot(repo) == before
    assert git(repo, "symbolic-ref", "HEAD").strip() == "refs/heads/main"
    assert "user stash" in before["stash"]  # type: ignore[operator]


@pytest.mark.parametrize(
    ("make_dirty", "reason"),
    [
        (lambda root: (root / "api/routes.py").write_bytes(b"edited\n"), "uncommitted changes"),
        (lambda root: ((root / "api/routes.py").write_bytes(b"staged\n"), git(root, "add", "api/routes.py"),
                       (root / "api/routes.py").write_bytes(FILES["api/routes.py"])), "uncommitted changes"),
        (lambda root: (root / "api/new.py").write_bytes(b"new\n"), "not committed"),
    ],
    ids=["worktree", "index", "untracked"],
)
def test_dirty_file_refuses_the_whole_run(repo: Path, make_dirty, reason: str) -> None:
    make_dirty(repo)
    results = fixed(repo)
    if reason == "not committed":
        results.append(result(repo, "api/new.py", ("SF001", 1)))
    before = snapshot(repo)
    commits = object_count(repo, "commit")

    with pytest.raises(BranchError) as error:
        create_branches(repo, results)

    message = str(error.value)
    assert "\n" not in message
    dirty = "api/new.py" if reason == "not committed" else "api/routes.py"
    assert f"{dirty} ({reason})" in message and "no branch created" in message
    assert "background/jobs.py" not in message
    assert prefixed_refs(repo) == []
    assert object_count(repo, "commit") == commits
    assert snapshot(repo) == before


def test_file_changed_since_it_was_read_is_refused(repo: Path) -> None:
    results = fixed(repo)
    results[2].original = b"what sessionfix read earlier\n"
    with pytest.raises(BranchError, match=r"api/routes\.py \(changed on disk since it was read\)"):
        create_branches(repo, results)
    assert prefixed_refs(repo) == []


def test_rerun_with_same_content_is_skipped(repo: Path) -> None:
    first = create_branches(repo, fixed(repo))
    refs = git(repo, "for-each-ref", "refs/heads/sessionfix/")

    second = create_branches(repo, fixed(repo))

    assert [o.status for o in second] == ["skipped-same"] * 4
    assert [o.commit for o in second] == [o.commit for o in first]
    assert git(repo, "for-each-ref", "refs/heads/sessionfix/") == refs


def test_different_content_is_an_error_unless_forced(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    first = create_branches(repo, fixed(repo))
    refs = git(repo, "for-each-ref", "refs/heads/sessionfix/")
    other = fixed(repo, suffix=b"# fixed differently\n")

    with pytest.raises(BranchError, match="already exists with different content; use --force") as error:
        create_branches(repo, other)
    assert "sessionfix/api-routes-py" in str(error.value)
    assert git(repo, "for-each-ref", "refs/heads/sessionfix/") == refs

    before = snapshot(repo)
    forced = create_branches(repo, other, force=True)

    assert [o.status for o in forced] == ["replaced"] * 4
    assert snapshot(repo) == before
    for old, new in zip(first, forced):
        assert new.commit != old.commit
        assert git(repo, "rev-parse", new.branch).strip() == new.commit
        assert git(repo, "rev-list", "--parents", "-n", "1", new.branch).split() == [new.commit, base]
    shown = subprocess.run(["git", "show", "sessionfix/tool-py:tool.py"], cwd=repo, capture_output=True, check=True)
    assert shown.stdout.endswith(b"# fixed differently\n")


def test_force_only_replaces_what_differs(repo: Path) -> None:
    create_branches(repo, fixed(repo))
    results = fixed(repo)
    results[3] = result(repo, "tool.py", ("SF005", 2), suffix=b"# other\n")
    outcomes = create_branches(repo, results, force=True)
    assert {o.branch: o.status for o in outcomes}["sessionfix/tool-py"] == "replaced"
    assert sorted(o.status for o in outcomes) == ["replaced", "skipped-same", "skipped-same", "skipped-same"]


def test_branch_checked_out_in_a_worktree_is_never_replaced(repo: Path, tmp_path: Path) -> None:
    create_branches(repo, fixed(repo))
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"), "sessionfix/tool-py")
    with pytest.raises(BranchError, match="sessionfix/tool-py is checked out"):
        create_branches(repo, fixed(repo, suffix=b"# other\n"), force=True)
    assert "# fixed" in (tmp_path / "wt" / "tool.py").read_text()


def test_group_by_directory(repo: Path) -> None:
    base = git(repo, "rev-parse", "HEAD").strip()
    before = snapshot(repo)

    outcomes = create_branches(repo, fixed(repo), group_by="directory")

    assert [(o.branch, o.files, o.changes) for o in outcomes] == [
        ("sessionfix/api", ("api/routes.py",), 1),
        ("sessionfix/background", ("background/jobs.py", "background/legacy_processor.py"), 3),
        ("sessionfix/top-level", ("tool.py",), 1),
    ]
    changed = git(repo, "diff-tree", "-r", "--name-only", "--no-commit-id", base, "sessionfix/background").split()
    assert changed == ["background/jobs.py", "background/legacy_processor.py"]
    assert git(repo, "rev-list", "--count", f"{base}..sessionfix/background").strip() == "1"
    assert git(repo, "log", "-1", "--format=%B", "sessionfix/background") == (
        "sessionfix: background/ (2 files) (SF001, SF002, SF003)\n\n"
        "background/jobs.py:1: SF003 (safe): SF003 reason at 1\n"
        "background/legacy_processor.py:1: SF001 (safe): SF001 reason at 1\n"
        "background/legacy_processor.py:2: SF002 (safe): SF002 reason at 2\n\n"
    )
    assert git(repo, "log", "-1", "--format=%s", "sessionfix/top-level").strip() == (
        "sessionfix: top-level files (1 file) (SF005)"
    )
    assert snapshot(repo) == before


def test_plan_names_are_readable_unique_valid_and_independent_of_order(tmp_path: Path) -> None:
    def changed(rel: str) -> FileResult:
        return FileResult(tmp_path / rel, rel, b"a\n", b"b\n")

    paths = ["a_b.py", "a-b.py", "Pkg/Émigré module.py", "__init__.py", "deep/x/y.py"]
    plans = plan_branches([changed(p) for p in paths], repo_root=tmp_path, prefix="fix/")
    again = plan_branches([changed(p) for p in reversed(paths)], repo_root=tmp_path, prefix="fix/")

    assert plans == again
    names = {plan.files[0]: plan.branch for plan in plans}
    assert names["__init__.py"] == "fix/init-py"
    assert names["deep/x/y.py"] == "fix/deep-x-y-py"
    assert names["Pkg/Émigré module.py"] == "fix/pkg-migr-module-py"
    assert names["a_b.py"] != names["a-b.py"]
    assert all(names[p].startswith("fix/a-b-py-") for p in ("a_b.py", "a-b.py"))
    for name in names.values():
        subprocess.run(["git", "check-ref-format", f"refs/heads/{name}"], check=True)


def test_base_other_than_head(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD").strip()
    (repo / "api/routes.py").write_bytes(b"def route():\n    return 2\n")
    git(repo, "commit", "-q", "-m", "second", "--", "api/routes.py")

    outcomes = create_branches(repo, [result(repo, "tool.py", ("SF005", 2))], base=first)
    assert git(repo, "rev-parse", f"{outcomes[0].branch}^").strip() == first

    # The fix was made for HEAD's api/routes.py; on the old base it would carry HEAD's edit too.
    with pytest.raises(BranchError, match=r"api/routes\.py \(differs between the base and HEAD\)"):
        create_branches(repo, [result(repo, "api/routes.py", ("SF001", 2))], base=first)
    with pytest.raises(BranchError, match="base 'nope': not a commit"):
        create_branches(repo, fixed(repo), base="nope")


def test_repository_without_commits(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    git(root, "init", "-q")
    (root / "a.py").write_bytes(b"a\n")
    with pytest.raises(BranchError, match="no commits yet"):
        create_branches(root, [FileResult(root / "a.py", "a.py", b"a\n", b"b\n")])


def test_not_a_repository(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "a.py").write_bytes(b"a\n")
    with pytest.raises(BranchError, match="not a git repository") as error:
        create_branches(plain, [FileResult(plain / "a.py", "a.py", b"a\n", b"b\n")])
    assert "\n" not in str(error.value)
    assert error.value.exit_code == 2


def test_detached_head_is_refused_unless_a_base_is_given(repo: Path) -> None:
    git(repo, "checkout", "-q", "--detach")
    with pytest.raises(BranchError, match="HEAD is detached"):
        create_branches(repo, fixed(repo))
    assert prefixed_refs(repo) == []

    sha = git(repo, "rev-parse", "HEAD").strip()
    outcomes = create_branches(repo, fixed(repo), base=sha)
    assert len(outcomes) == 4
    assert (repo / ".git" / "HEAD").read_text().strip() == sha


def test_missing_identity_is_refused_before_anything_is_written(repo: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    git(repo, "config", "--unset", "user.name")
    git(repo, "config", "--unset", "user.email")
    # useConfigOnly: without it git may guess an identity from the host name on some machines.
    global_config = tmp_path / "gitconfig"
    global_config.write_text("[user]\n\tuseConfigOnly = true\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(global_config))
    objects = git(repo, "cat-file", "--batch-all-objects", "--batch-check")

    with pytest.raises(BranchError, match="no git identity for the commits") as error:
        create_branches(repo, fixed(repo))

    assert "\n" not in str(error.value)
    assert git(repo, "cat-file", "--batch-all-objects", "--batch-check") == objects
    assert prefixed_refs(repo) == []


def test_invalid_prefix_and_outside_file(repo: Path, tmp_path: Path) -> None:
    with pytest.raises(BranchError, match="branch prefix 'bad..name/'"):
        create_branches(repo, fixed(repo), prefix="bad..name/")
    outside = tmp_path / "elsewhere.py"
    outside.write_bytes(b"x\n")
    with pytest.raises(BranchError, match="elsewhere.py: outside the repository"):
        create_branches(repo, [FileResult(outside, "elsewhere.py", b"x\n", b"y\n")])


def test_nothing_changed_creates_nothing(repo: Path) -> None:
    assert create_branches(repo, [FileResult(repo / "untouched.py", "untouched.py", FILES["untouched.py"])]) == []
    assert prefixed_refs(repo) == []


def test_crash_mid_way_leaves_no_branch(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def crash_on_third_step() -> None:
        calls.append(1)
        if len(calls) == 6:  # four trees done, second commit built
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(branches, "_test_pause", crash_on_third_step)
    before = snapshot(repo)
    with pytest.raises(RuntimeError):
        create_branches(repo, fixed(repo))
    assert prefixed_refs(repo) == []
    assert snapshot(repo) == before


def test_ref_transaction_is_all_or_nothing(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ref that appears after the checks fails the transaction: none of the others move either."""
    git(repo, "branch", "sessionfix/tool-py", "HEAD")
    monkeypatch.setattr(branches, "_existing_branches", lambda repo: {})  # as if it appeared later
    with pytest.raises(BranchError, match="cannot move the branches") as error:
        create_branches(repo, fixed(repo))
    assert "\n" not in str(error.value)
    assert prefixed_refs(repo) == ["sessionfix/tool-py"]
    assert git(repo, "rev-parse", "sessionfix/tool-py") == git(repo, "rev-parse", "HEAD")


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from sessionfix.branches import create_branches
    from sessionfix.model import Applicability, Change, FileResult, Location

    root = Path(sys.argv[1])
    results = []
    for path in sorted(root.glob("pkg*/*.py")):
        rel = path.relative_to(root).as_posix()
        raw = path.read_bytes()
        change = Change("SF001", Location(rel, 1), Applicability.SAFE, "test")
        results.append(FileResult(path, rel, raw, raw + b"# fixed\\n", [change]))
    print("ready", flush=True)
    create_branches(root, results)
    print("done", flush=True)
    """
)


@pytest.mark.parametrize("phase", ["tree", "commit"])
def test_interrupt_mid_way_leaves_repository_as_it_was(repo: Path, tmp_path: Path, phase: str) -> None:
    for number in range(8):
        (repo / f"pkg{number}").mkdir()
        (repo / f"pkg{number}" / "mod.py").write_bytes(f"value = {number}\n".encode())
    packages = [f"pkg{number}" for number in range(8)]
    git(repo, "add", *packages)
    git(repo, "commit", "-q", "-m", "packages", "--", *packages)
    before = snapshot(repo)
    objects_before = object_count(repo, phase)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, branches.DELAY_ENV: "0.15", "TMPDIR": str(scratch),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}

    # A new process group, as a terminal has: Ctrl-C reaches python and its git children alike.
    child = subprocess.Popen([sys.executable, str(script), str(repo)], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 30
        # Two new objects: past the first branch, so a ref moved early would already show.
        while object_count(repo, phase) < objects_before + 2:
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.02)
        os.killpg(child.pid, signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()

    assert b"KeyboardInterrupt" in err
    assert b"done" not in out
    assert child.returncode != 0
    assert prefixed_refs(repo) == []
    assert snapshot(repo) == before
    assert list(scratch.iterdir()) == []  # the temporary index went with the interrupt
