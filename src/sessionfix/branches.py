"""One reviewable branch per fixed file (or per top-level directory), built without a checkout.

Blobs, trees and commits are written first, through a temporary index file; the branch refs
move last, in one `git update-ref --stdin` transaction. An interrupt or a crash therefore
leaves every branch or none (unreferenced objects are harmless and git gc drops them), and
the user's working tree, index, stash, HEAD and current branch are never touched.

Dirty files: the whole run is refused, before anything is written, when any fixed file has
uncommitted changes (or is untracked, changed since it was read, or differs between the base
and HEAD); the error lists them all.

Tests only: SESSIONFIX_TEST_BRANCH_DELAY=<seconds> sleeps after each branch's tree and after
each branch's commit is built, so a test can interrupt the process while it is surely mid-way.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from git import Repo
from git.exc import InvalidGitRepositoryError, NoSuchPathError

from sessionfix.errors import UserError
from sessionfix.model import FileResult

GroupBy = Literal["file", "directory"]
DEFAULT_PREFIX = "sessionfix/"
DELAY_ENV = "SESSIONFIX_TEST_BRANCH_DELAY"
_ROOT_GROUP = "top-level"  # slug of the group holding files at the repository root
_MAX_SLUG = 80
_REGULAR_MODES = (0o100644, 0o100755)
_NOTHING_CREATED = "no branch created"


class BranchError(UserError):
    """Why no branch was created; one line, exit 2."""


@dataclass(frozen=True)
class BranchPlan:
    branch: str  # without refs/heads/
    files: tuple[str, ...]  # repository-relative POSIX paths, sorted
    subject: str
    body: str

    @property
    def message(self) -> str:
        return f"{self.subject}\n\n{self.body}\n" if self.body else f"{self.subject}\n"


@dataclass(frozen=True)
class BranchOutcome:
    branch: str
    files: tuple[str, ...]
    changes: int
    status: str  # "created" | "skipped-same" | "replaced"
    commit: str


@dataclass(frozen=True)
class _Existing:
    commit: str
    tree: str
    parents: tuple[str, ...]


# --- planning (pure) ---------------------------------------------------------------------


def plan_branches(
    results: Sequence[FileResult],
    *,
    repo_root: Path,
    prefix: str = DEFAULT_PREFIX,
    group_by: GroupBy = "file",
) -> list[BranchPlan]:
    """Which branch each changed file goes to, and its commit message; sorted by branch."""
    changed = _changed_by_path(results, repo_root)
    groups: dict[str, list[str]] = {}
    for path in sorted(changed):
        groups.setdefault(_group_key(path, group_by), []).append(path)
    names = _branch_names(list(groups), prefix)
    plans = []
    for key, paths in groups.items():
        members = [(path, changed[path]) for path in paths]
        subject, body = _message(key, members, group_by)
        plans.append(BranchPlan(names[key], tuple(paths), subject, body))
    return sorted(plans, key=lambda plan: plan.branch)


def _changed_by_path(results: Sequence[FileResult], repo_root: Path) -> dict[str, FileResult]:
    root = repo_root.resolve()
    changed: dict[str, FileResult] = {}
    for result in results:
        if not result.changed:
            continue
        # Resolve the directory, not the file: a symlinked file must stay at its own path.
        path = result.path.parent.resolve() / result.path.name
        try:
            relative = path.relative_to(root).as_posix()
        except ValueError:
            where = f"{result.display_path}: outside the repository {root}"
            raise BranchError(f"{where}; {_NOTHING_CREATED}") from None
        if relative in changed:
            raise BranchError(f"{result.display_path}: given twice; {_NOTHING_CREATED}")
        changed[relative] = result
    return changed


def _group_key(path: str, group_by: GroupBy) -> str:
    if group_by == "file":
        return path
    if group_by == "directory":
        head, _, rest = path.partition("/")
        return head if rest else ""
    raise ValueError(f"group_by must be 'file' or 'directory', not {group_by!r}")


def _slug(text: str) -> str:
    """Lower-case ASCII letters and digits, every other run of characters one '-'."""
    out: list[str] = []
    for char in text.lower():
        keep = char.isascii() and char.isalnum()
        if keep or (out and out[-1] != "-"):
            out.append(char if keep else "-")
    return "".join(out)[:_MAX_SLUG].strip("-") or "file"


def _branch_names(keys: list[str], prefix: str) -> dict[str, str]:
    """prefix + slug; keys whose slugs collide each get a short hash of their own key."""
    slugs = {key: _slug(key) if key else _ROOT_GROUP for key in keys}
    taken: dict[str, int] = {}
    for slug in slugs.values():
        taken[slug] = taken.get(slug, 0) + 1
    names = {}
    for key, slug in slugs.items():
        if taken[slug] > 1:
            slug = f"{slug}-{hashlib.sha1(key.encode()).hexdigest()[:7]}"
        names[key] = prefix + slug
    return names


def _message(key: str, members: list[tuple[str, FileResult]], group_by: GroupBy) -> tuple[str, str]:
    rules = sorted({change.rule for _, result in members for change in result.changes})
    if group_by == "file":
        what = key
    else:
        what = f"{key}/" if key else "top-level files"
        what += f" ({len(members)} file{'s' if len(members) != 1 else ''})"
    subject = f"sessionfix: {what}" + (f" ({', '.join(rules)})" if rules else "")
    lines = []
    for path, result in members:
        where = "line " if group_by == "file" else f"{path}:"
        for change in sorted(result.changes, key=lambda c: (c.line, c.rule)):
            reason = " ".join(change.reason.split())
            lines.append(f"{where}{change.line}: {change.rule} ({change.applicability.value}): {reason}")
    return subject, "\n".join(lines)


# --- git side ----------------------------------------------------------------------------


def create_branches(
    repo_root: Path,
    results: Sequence[FileResult],
    *,
    base: str = "HEAD",
    prefix: str = DEFAULT_PREFIX,
    group_by: GroupBy = "file",
    force: bool = False,
) -> list[BranchOutcome]:
    """Create one single-commit branch on `base` per changed file (or directory group).

    All checks run before anything is written; the refs move together at the end, or not at all.
    """
    with _open_repo(repo_root) as repo:
        root = Path(str(repo.working_tree_dir)).resolve()
        head = _check_head(repo, base)
        base_sha = _resolve_base(repo, base)
        _check_identity(repo)
        _check_prefix(repo, prefix)
        plans = plan_branches(results, repo_root=root, prefix=prefix, group_by=group_by)
        if not plans:
            return []
        changed = _changed_by_path(results, root)
        modes = _check_files(repo, root, changed, head, base_sha)
        existing = _existing_branches(repo)
        blobs = {path: _hash_blob(repo, path, changed[path].new_source or b"") for path in sorted(changed)}
        trees: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="sessionfix-") as scratch:
            for plan in plans:
                trees[plan.branch] = _write_tree(repo, Path(scratch) / "index", base_sha, plan.files, modes, blobs)
                _test_pause()
        _check_existing(repo, plans, trees, existing, base_sha, force)

        outcomes: list[BranchOutcome] = []
        updates: list[tuple[str, str, str | None]] = []
        for plan in plans:
            changes = sum(len(changed[path].changes) for path in plan.files)
            old = existing.get(plan.branch)
            if old is not None and old.tree == trees[plan.branch] and old.parents == (base_sha,):
                outcomes.append(BranchOutcome(plan.branch, plan.files, changes, "skipped-same", old.commit))
                continue
            commit = _git(repo, "commit-tree", trees[plan.branch], "-p", base_sha, "-m", plan.message)
            _test_pause()
            status = "created" if old is None else "replaced"
            outcomes.append(BranchOutcome(plan.branch, plan.files, changes, status, commit))
            updates.append((plan.branch, commit, old.commit if old else None))
        _move_refs(repo, updates, zero="0" * len(base_sha))
        return outcomes


@contextmanager
def _open_repo(repo_root: Path) -> Iterator[Repo]:
    try:
        repo = Repo(repo_root, search_parent_directories=True)
    except (InvalidGitRepositoryError, NoSuchPathError):
        raise BranchError(f"{repo_root}: not a git repository; branches need one; {_NOTHING_CREATED}") from None
    try:
        if repo.bare or repo.working_tree_dir is None:
            raise BranchError(f"{repo_root}: bare git repository, nothing to branch from; {_NOTHING_CREATED}")
        yield repo
    finally:
        repo.close()


def _check_head(repo: Repo, base: str) -> str:
    """HEAD's commit; a detached HEAD is refused unless an explicit base was given."""
    if not repo.head.is_valid():
        raise BranchError(f"{repo.working_tree_dir}: no commits yet; commit first; {_NOTHING_CREATED}")
    sha = repo.head.commit.hexsha
    if repo.head.is_detached and base in ("HEAD", "@"):
        raise BranchError(
            f"HEAD is detached (at {sha[:10]}); check out a branch or pass an explicit base; {_NOTHING_CREATED}"
        )
    return sha


def _resolve_base(repo: Repo, base: str) -> str:
    status, out, _ = _run(repo, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{base}^{{commit}}"])
    if status != 0:
        raise BranchError(f"base {base!r}: not a commit in this repository; {_NOTHING_CREATED}")
    return out.decode().strip()


def _check_identity(repo: Repo) -> None:
    """The commits need an author and a committer; git decides, as `git commit` would."""
    for variable in ("GIT_AUTHOR_IDENT", "GIT_COMMITTER_IDENT"):
        status, _, err = _run(repo, ["var", variable])
        if status != 0:
            raise BranchError(
                f"no git identity for the commits ({_last_line(err)}); set user.name and user.email "
                f"with `git config`; {_NOTHING_CREATED}"
            )


def _check_prefix(repo: Repo, prefix: str) -> None:
    # Slugs are [a-z0-9-] without dashes at either end, so the prefix decides validity.
    if _run(repo, ["check-ref-format", f"refs/heads/{prefix}x"])[0] != 0:
        raise BranchError(f"branch prefix {prefix!r}: not valid in a git branch name; {_NOTHING_CREATED}")


def _check_files(
    repo: Repo, root: Path, changed: dict[str, FileResult], head: str, base: str
) -> dict[str, int]:
    """The base mode of every file; refuses the run, listing each file that cannot be branched."""
    dirty = _dirty_paths(repo, sorted(changed))
    head_tree, base_tree = repo.commit(head).tree, repo.commit(base).tree
    problems: list[str] = []
    modes: dict[str, int] = {}
    for path in sorted(changed):
        in_head, in_base = _blob(head_tree, path), _blob(base_tree, path)
        if in_head is None:
            problems.append(f"{path} (not committed)")
        elif path in dirty:
            problems.append(f"{path} (uncommitted changes)")
        elif in_head[0] not in _REGULAR_MODES:
            problems.append(f"{path} (not a regular file in git)")
        elif _read(root / path) != changed[path].original:
            problems.append(f"{path} (changed on disk since it was read)")
        elif in_base is None or in_base[1] != in_head[1]:
            problems.append(f"{path} (differs between the base and HEAD)")
        else:
            modes[path] = in_base[0]
    if problems:
        count = f"{len(problems)} file{'s' if len(problems) != 1 else ''}"
        raise BranchError(
            f"refusing {count}: {', '.join(problems)}; commit or stash them first; {_NOTHING_CREATED}"
        )
    return modes


def _dirty_paths(repo: Repo, paths: list[str]) -> set[str]:
    """Paths whose worktree or index differs from HEAD, or that git does not track."""
    dirty: set[str] = set()
    for start in range(0, len(paths), 500):
        args = ["status", "--porcelain=v1", "-z", "--no-renames", "--untracked-files=all", "--"]
        status, out, err = _run(repo, [*args, *paths[start : start + 500]], options=["--literal-pathspecs"])
        if status != 0:
            raise BranchError(f"git status failed ({_last_line(err)}); {_NOTHING_CREATED}")
        dirty.update(os.fsdecode(entry[3:]) for entry in out.split(b"\0") if entry)
    return dirty


def _blob(tree: object, path: str) -> tuple[int, str] | None:
    """(mode, sha) of a blob in a gitpython tree, or None when the path holds no blob."""
    try:
        item = tree / path  # type: ignore[operator]
    except (KeyError, TypeError, AttributeError):
        return None
    if getattr(item, "type", None) != "blob":
        return None
    return int(item.mode), str(item.hexsha)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _hash_blob(repo: Repo, path: str, data: bytes) -> str:
    """Store `data` as the blob for `path`, through the path's clean filters (e.g. autocrlf)."""
    return _git(repo, "hash-object", "-w", f"--path={path}", "--stdin", stdin=data)


def _write_tree(
    repo: Repo, index: Path, base: str, files: tuple[str, ...], modes: dict[str, int], blobs: dict[str, str]
) -> str:
    """The base tree with `files` replaced, via a private index file; the real one is never read."""
    env = {"GIT_INDEX_FILE": str(index)}
    options = ["-c", "core.splitIndex=false"]
    _git(repo, "read-tree", base, env=env, options=options)
    entries = "".join(f"{modes[path]:o} {blobs[path]}\t{path}\0" for path in files)
    _git(repo, "update-index", "-z", "--index-info", stdin=os.fsencode(entries), env=env, options=options)
    return _git(repo, "write-tree", env=env, options=options)


def _existing_branches(repo: Repo) -> dict[str, _Existing]:
    fmt = "%(refname:strip=2)%00%(objectname)%00%(tree)%00%(parent)"
    out = _git(repo, "for-each-ref", f"--format={fmt}", "refs/heads/")
    branches = {}
    for line in out.splitlines():
        name, commit, tree, parents = line.split("\0")
        branches[name] = _Existing(commit, tree, tuple(parents.split()))
    return branches


def _checked_out(repo: Repo) -> set[str]:
    """Branches checked out in any worktree: moving one would change someone's HEAD."""
    out = _git(repo, "worktree", "list", "--porcelain")
    return {line.removeprefix("branch refs/heads/") for line in out.splitlines() if line.startswith("branch ")}


def _check_existing(
    repo: Repo,
    plans: list[BranchPlan],
    trees: dict[str, str],
    existing: dict[str, _Existing],
    base: str,
    force: bool,
) -> None:
    differing = [
        plan.branch
        for plan in plans
        if plan.branch in existing
        and (existing[plan.branch].tree, existing[plan.branch].parents) != (trees[plan.branch], (base,))
    ]
    if not differing:
        return
    busy = sorted(set(differing) & _checked_out(repo))
    if busy:
        raise BranchError(
            f"branch {', '.join(busy)} is checked out and would change; "
            f"switch away from it first; {_NOTHING_CREATED}"
        )
    if not force:
        raise BranchError(
            f"branch {', '.join(differing)} already exists with different content; "
            f"use --force to replace it; {_NOTHING_CREATED}"
        )


def _move_refs(repo: Repo, updates: list[tuple[str, str, str | None]], zero: str) -> None:
    """Every ref or none: one transaction, each update checked against the value we saw."""
    if not updates:
        return
    lines = ["start"]
    lines += [f"update refs/heads/{branch} {new} {old or zero}" for branch, new, old in updates]
    lines += ["prepare", "commit", ""]
    command = ["update-ref", "-m", "sessionfix: branch per file", "--stdin"]
    status, _, err = _run(repo, command, stdin="\n".join(lines).encode())
    if status != 0:
        raise BranchError(f"cannot move the branches ({_last_line(err)}); {_NOTHING_CREATED}")


def _test_pause() -> None:
    delay = os.environ.get(DELAY_ENV)
    if delay:
        time.sleep(float(delay))


# --- running git -------------------------------------------------------------------------


def _run(
    repo: Repo,
    args: list[str],
    *,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    options: Sequence[str] = (),
) -> tuple[int, bytes, str]:
    """(status, stdout bytes, stderr) of one git command in the work tree; never raises on status.

    --no-optional-locks everywhere: git must not even refresh the user's index.
    """
    command = [repo.git.GIT_PYTHON_GIT_EXECUTABLE, "--no-optional-locks", *options, *args]
    with _stdin_file(stdin) as handle:
        status, out, err = repo.git.execute(
            command,
            istream=handle,
            env=env,
            with_extended_output=True,
            with_exceptions=False,
            stdout_as_string=False,
            strip_newline_in_stdout=False,
        )
    return int(status), bytes(out), str(err)


def _git(
    repo: Repo,
    *args: str,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
    options: Sequence[str] = (),
) -> str:
    status, out, err = _run(repo, list(args), stdin=stdin, env=env, options=options)
    if status != 0:
        raise BranchError(f"git {args[0]} failed ({_last_line(err)}); {_NOTHING_CREATED}")
    return out.decode().strip()


@contextmanager
def _stdin_file(data: bytes | None) -> Iterator[IO[bytes] | None]:
    if data is None:
        yield None
        return
    with tempfile.TemporaryFile() as handle:
        handle.write(data)
        handle.seek(0)
        yield handle


def _last_line(err: str) -> str:
    lines = [line.strip() for line in err.splitlines() if line.strip()]
    return lines[-1].removeprefix("fatal: ").removeprefix("error: ") if lines else "no message"
