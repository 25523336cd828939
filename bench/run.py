"""Benchmark `sessionfix diff` against `python -m libcst.tool codemod` on a synthetic tree (issue 6).

One invocation generates (or reuses) a tree and measures, in this order:

1. floor: a child process that reads every .py file's bytes;
2. `sessionfix diff --no-cache --jobs 1 .` and `--jobs N .` (cold);
3. `sessionfix diff .` twice after deleting `.sessionfix_cache/`: the first run fills the cache
   ("populate", shown for information), the second is the warm run;
4. `python -m libcst.tool codemod` with each command in LIBCST_COMMANDS, `--jobs N`, `--no-format`
   and `--unified-diff` (so it prints diffs like `sessionfix diff` and never writes the tree).
   libcst.tool runs one codemod per invocation, so the row is the SUM of wall and CPU over the
   commands and the MAX of their memory.

Every child runs with the tree as its working directory. See measure.py for what wall, CPU,
peak MB (largest single process) and tree MB (sampled sum over the process tree) cover.
Exit status: 0 when every run succeeded (`sessionfix diff` exiting 0 or 1), 1 when one failed,
2 for a usage error. Missed targets are reported, never turned into a failure.

    /work/venv/bin/python bench/run.py                 # 5,000 files, everything
    /work/venv/bin/python bench/run.py --files 500 --skip-libcst
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from rich.console import Console
from rich.table import Table

from generate import MANIFEST, generate, write_tree
from measure import Measurement, combine, measure

#: libcst.tool commands (module.Class under a module listed in .libcst.codemod.yaml), each with
#: its extra arguments; the rules read [tool.sessionfix] from the tree's pyproject.toml themselves.
LIBCST_COMMANDS: tuple[tuple[str, ...], ...] = (
    ("with_raw_factory.WithRawFactory",),
)

#: libcst.tool finds this by walking up from its working directory (the tree). libcst's own
#: commands come second so `--libcst-command noop.NOOPCommand` can exercise the harness alone;
#: a sessionfix module of the same name wins.
CODEMOD_CONFIG = """\
modules:
- 'sessionfix.codemods'
- 'libcst.codemod.commands'
repo_root: '.'
formatter: []
"""

#: the floor: what any tool must do at least, in a fresh interpreter like the others
FLOOR_SCRIPT = """\
import os, sys
total = 0
for directory, subdirectories, names in os.walk(sys.argv[1]):
    subdirectories[:] = [d for d in subdirectories if not d.startswith(".")]
    for name in names:
        if name.endswith(".py"):
            with open(os.path.join(directory, name), "rb") as fh:
                total += len(fh.read())
print(total)
"""

CACHE_DIR = ".sessionfix_cache"
DIFF_OK = (0, 1)  # `sessionfix diff`: 0 = nothing to change, 1 = changes pending; 2 = error
TARGETS_TEXT = {
    "cold": "cold diff --jobs N <= 0.05x libcst.tool wall",
    "warm": "warm diff <= 1 s",
    "warm-floor": "warm diff <= 3x floor",
    "memory": "peak memory (largest process) <= 300 MB",
    "double": "doubling non-matching files adds < 10% cold time beyond the extra read time",
}


class UsageError(Exception):
    """A mistake in how the benchmark was invoked: one line, exit 2."""


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    ok: bool
    result: Measurement


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def sessionfix_command(override: str | None) -> list[str]:
    """The `sessionfix` executable next to this interpreter, else `python -m sessionfix`."""
    if override:
        return shlex.split(override)
    beside = Path(sys.executable).parent / "sessionfix"
    if beside.is_file():
        return [str(beside)]
    try:
        found = importlib.util.find_spec("sessionfix.cli") is not None
    except ImportError:
        found = False
    if found:
        return [sys.executable, "-m", "sessionfix"]
    raise UsageError(
        f"sessionfix is neither installed next to {sys.executable} nor importable; "
        "run `pip install -e .` first (or pass --sessionfix CMD)"
    )


def libcst_argvs(jobs: int, commands: Sequence[Sequence[str]]) -> list[list[str]]:
    return [
        # the command comes first: libcst.tool finds it with a first parser that knows no options
        [sys.executable, "-m", "libcst.tool", "codemod", command[0], "--no-format", "--unified-diff=3",
         "--hide-progress", "--jobs", str(jobs), *command[1:], "."]
        for command in commands
    ]


def floor_argv() -> list[str]:
    return [sys.executable, "-c", FLOOR_SCRIPT, "."]


def best_of(argv: Sequence[str], repeat: int, tree: Path) -> Measurement:
    """The fastest of `repeat` runs; a run whose exit status differs from the first wins instead."""
    runs = [measure(argv, cwd=tree) for _ in range(max(1, repeat))]
    failed = [r for r in runs if r.returncode != runs[0].returncode]
    return failed[0] if failed else min(runs, key=lambda r: r.wall)


def clear_cache(tree: Path) -> None:
    shutil.rmtree(tree / CACHE_DIR, ignore_errors=True)


def read_manifest(tree: Path) -> dict[str, Any] | None:
    try:
        return json.loads((tree / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def scan_tree(tree: Path) -> dict[str, Any]:
    """Sizes of a tree the generator did not describe (a --tree without a manifest)."""
    files = lines = size = 0
    for path in tree.rglob("*.py"):
        if any(part.startswith(".") for part in path.relative_to(tree).parts):
            continue
        data = path.read_bytes()
        files += 1
        lines += data.count(b"\n")
        size += len(data)
    return {"files": files, "lines": lines, "bytes": size, "matching": None, "plain": None, "seed": None}


class Bench:
    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args = args
        self.console = console
        self.sessionfix = sessionfix_command(args.sessionfix)
        self.commands: list[tuple[str, ...]] = (
            [tuple(shlex.split(c)) for c in args.libcst_command] if args.libcst_command else list(LIBCST_COMMANDS)
        )
        self.temporary: list[Path] = []

    def say(self, text: str) -> None:
        self.console.print(f"[dim]{text}[/dim]")

    # -- trees --------------------------------------------------------------------------------

    def make_tree(self, stats_for: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
        root = Path(tempfile.mkdtemp(prefix="sessionfix-bench-"))
        self.temporary.append(root)
        return root, stats_for(root)

    def base_tree(self) -> tuple[Path, dict[str, Any]]:
        args = self.args
        if args.tree is not None:
            tree = args.tree.resolve()
            if not (tree / "pyproject.toml").is_file():
                raise UsageError(f"{tree}: no pyproject.toml; pass a tree made by bench/generate.py")
            return tree, read_manifest(tree) or scan_tree(tree)
        self.say(f"generating {args.files} files (ratio {args.ratio}, seed {args.seed})")
        return self.make_tree(lambda root: generate(root, args.files, args.ratio, args.seed))

    def double_tree(self, base: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
        if base.get("plain") is None:
            raise UsageError("--double needs a tree with bench-manifest.json (made by bench/generate.py)")
        self.say(f"generating the doubled tree ({base['matching']} matching, {2 * base['plain']} non-matching)")
        return self.make_tree(
            lambda root: write_tree(root, matching=base["matching"], plain=2 * base["plain"], seed=base["seed"])
        )

    # -- runs ---------------------------------------------------------------------------------

    def diff(self, tree: Path, *flags: str) -> Measurement:
        return best_of([*self.sessionfix, "diff", *flags, "."], self.args.repeat, tree)

    def run_tree(self, tree: Path) -> list[Row]:
        args = self.args
        jobs = str(args.jobs)
        (tree / ".libcst.codemod.yaml").write_text(CODEMOD_CONFIG, encoding="utf-8")
        self.say("warming the page cache (untimed read of every file)")
        measure(floor_argv(), cwd=tree)
        rows: list[Row] = []

        def add(key: str, label: str, result: Measurement, ok_codes: tuple[int, ...]) -> None:
            row = Row(key, label, result.returncode in ok_codes, result)
            rows.append(row)
            status = "ok" if row.ok else f"FAILED (exit {result.returncode})"
            self.say(f"{label}: {result.wall:.2f} s wall, {result.cpu:.2f} s CPU, {status}")

        add("floor", "floor: read every .py file", best_of(floor_argv(), args.repeat, tree), (0,))
        add("cold-1", "sessionfix diff --no-cache --jobs 1", self.diff(tree, "--no-cache", "--jobs", "1"), DIFF_OK)
        add("cold-n", f"sessionfix diff --no-cache --jobs {jobs}",
            self.diff(tree, "--no-cache", "--jobs", jobs), DIFF_OK)
        clear_cache(tree)
        add("populate", "sessionfix diff (fills cache)", measure([*self.sessionfix, "diff", "."], cwd=tree),
            DIFF_OK)
        add("warm", "sessionfix diff (warm cache)", self.diff(tree), DIFF_OK)
        if not args.skip_libcst:
            self.say(f"libcst.tool codemod, {len(self.commands)} command(s), --jobs {jobs} (slow)")
            parts = [measure(argv, cwd=tree) for argv in libcst_argvs(args.jobs, self.commands)]
            add("libcst", f"libcst.tool codemod --jobs {jobs} ({len(parts)} cmd)", combine(parts), (0,))
        return rows

    def run_double(self, base_rows: list[Row], base: dict[str, Any]) -> dict[str, Any]:
        tree, stats = self.double_tree(base)
        (tree / ".libcst.codemod.yaml").write_text(CODEMOD_CONFIG, encoding="utf-8")
        measure(floor_argv(), cwd=tree)
        jobs = str(self.args.jobs)
        floor2 = best_of(floor_argv(), self.args.repeat, tree)
        cold2 = self.diff(tree, "--no-cache", "--jobs", jobs)
        by_key = {row.key: row for row in base_rows}
        floor1, cold1 = by_key["floor"].result, by_key["cold-n"].result
        extra_read = floor2.wall - floor1.wall
        extra_cold = cold2.wall - cold1.wall
        excess = (extra_cold - extra_read) / cold1.wall if cold1.wall > 0 else float("nan")
        return {
            "tree": {k: v for k, v in stats.items() if k != "matching_paths"},
            "rows": [Row("floor-x2", "floor, 2x non-matching", floor2.returncode == 0, floor2),
                     Row("cold-n-x2", f"cold --jobs {jobs}, 2x non-matching",
                         cold2.returncode in DIFF_OK, cold2)],
            "cold_delta": extra_cold,
            "read_delta": extra_read,
            "excess_ratio": excess,
            "same_output": cold2.stdout_sha256 == cold1.stdout_sha256,
        }

    def cleanup(self) -> None:
        for root in self.temporary:
            if self.args.keep:
                self.say(f"kept {root}")
            else:
                shutil.rmtree(root, ignore_errors=True)


# -- report -----------------------------------------------------------------------------------


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "pass" if ok else "FAIL"


def evaluate(rows: list[Row], double: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The issue's targets, each with the measured value and pass / FAIL / n/a."""
    by_key = {row.key: row.result for row in rows if row.ok}
    cold, warm, floor, lib = (by_key.get(k) for k in ("cold-n", "warm", "floor", "libcst"))
    sessionfix_peaks = [row.result.peak_mb for row in rows if row.ok and row.key in ("cold-1", "cold-n", "populate", "warm")]
    checks: list[tuple[str, str, bool | None]] = [
        ("cold", f"{cold.wall / lib.wall:.3f}x" if cold and lib else "-",
         cold.wall <= 0.05 * lib.wall if cold and lib else None),
        ("warm", f"{warm.wall:.2f} s" if warm else "-", warm.wall <= 1.0 if warm else None),
        ("warm-floor", f"{warm.wall / floor.wall:.2f}x" if warm and floor else "-",
         warm.wall <= 3 * floor.wall if warm and floor else None),
        ("memory", f"{max(sessionfix_peaks):.0f} MB" if sessionfix_peaks else "-",
         max(sessionfix_peaks) <= 300 if sessionfix_peaks else None),
    ]
    if double is not None:
        ok = all(row.ok for row in double["rows"]) and cold is not None
        excess = double["excess_ratio"]
        checks.append(("double", f"{excess:+.1%}" if ok else "-", excess < 0.10 if ok else None))
    return [{"target": TARGETS_TEXT[key], "key": key, "measured": value, "verdict": _verdict(ok)}
            for key, value, ok in checks]


def report(bench: Bench, tree_stats: dict[str, Any], rows: list[Row], double: dict[str, Any] | None) -> dict[str, Any]:
    lib = next((row.result for row in rows if row.key == "libcst" and row.ok), None)
    diff_hashes = {row.result.stdout_sha256 for row in rows
                   if row.ok and row.key in ("cold-1", "cold-n", "populate", "warm")}

    def as_dict(row: Row) -> dict[str, Any]:
        result = asdict(row.result)
        result["argv"] = shlex.join(row.result.argv)
        return {"key": row.key, "label": row.label, "ok": row.ok, **result,
                "peak_mb": round(row.result.peak_mb, 1), "tree_mb": round(row.result.tree_mb, 1),
                "wall_vs_libcst": row.result.wall / lib.wall if lib else None}

    data: dict[str, Any] = {
        "machine": {"cores": cores(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "jobs": bench.args.jobs,
        "repeat": bench.args.repeat,
        "tree": {k: v for k, v in tree_stats.items() if k != "matching_paths"},
        "sessionfix": shlex.join(bench.sessionfix),
        "libcst_commands": [shlex.join(c) for c in bench.commands] if not bench.args.skip_libcst else [],
        "runs": [as_dict(row) for row in rows],
        "diff_outputs_identical": len(diff_hashes) <= 1,
        "double": None,
        "targets": evaluate(rows, double),
    }
    if double is not None:
        data["double"] = {**{k: v for k, v in double.items() if k != "rows"},
                          "runs": [as_dict(row) for row in double["rows"]]}
    return data


def print_table(console: Console, data: dict[str, Any]) -> None:
    tree, machine = data["tree"], data["machine"]
    matching = "?" if tree.get("matching") is None else tree["matching"]
    console.print(
        f"[bold]sessionfix benchmark[/bold]: {tree['files']} .py files, {tree['lines']:,} lines, "
        f"{tree['bytes'] / 2**20:.1f} MB, {matching} matching; {machine['cores']} cores, "
        f"--jobs {data['jobs']}, Python {machine['python']}, best of {data['repeat']}"
    )
    table = Table(show_lines=False)
    for name in ("run", "wall s", "CPU s", "peak MB", "tree MB", "wall / libcst", "exit"):
        table.add_column(name, justify="left" if name == "run" else "right", no_wrap=True)
    runs = list(data["runs"]) + (data["double"]["runs"] if data["double"] else [])
    for run in runs:
        ratio = "-" if run["wall_vs_libcst"] is None else f"{run['wall_vs_libcst']:.3f}x"
        code = str(run["returncode"]) if run["ok"] else f"[red]{run['returncode']} FAILED[/red]"
        table.add_row(run["label"], f"{run['wall']:.2f}", f"{run['cpu']:.2f}", f"{run['peak_mb']:.0f}",
                      f"{run['tree_mb']:.0f}" if run["tree_mb"] else "-", ratio, code)
    console.print(table)
    console.print("peak MB = largest single process (kernel ru_maxrss); tree MB = largest sampled sum "
                  "over the process tree; CPU = user+sys of the whole tree.")
    if data["double"]:
        d = data["double"]
        console.print(f"doubling non-matching files: cold {d['cold_delta']:+.2f} s, read {d['read_delta']:+.2f} s, "
                      f"excess {d['excess_ratio']:+.1%} of cold time; same diff output: {d['same_output']}")
    console.print(f"diff output identical across sessionfix runs: {data['diff_outputs_identical']}")
    targets = Table(title="targets (issue 6)")
    for name in ("target", "measured", "verdict"):
        targets.add_column(name)
    for target in data["targets"]:
        colour = {"pass": "green", "FAIL": "red"}.get(target["verdict"], "dim")
        targets.add_row(target["target"], target["measured"], f"[{colour}]{target['verdict']}[/{colour}]")
    console.print(targets)
    for run in runs:
        if not run["ok"]:
            last = run["stderr_tail"].strip().splitlines()[-1:] or ["(no stderr)"]
            console.print(f"[red]{run['label']} failed (exit {run['returncode']}): {last[0]}[/red]")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark sessionfix diff against libcst.tool (issue 6).")
    parser.add_argument("--files", type=int, default=5000, help="modules to generate (default: 5000)")
    parser.add_argument("--ratio", type=float, default=0.03, help="share of matching modules (default: 0.03)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument("--jobs", type=int, default=cores(), help="N for the --jobs N runs (default: cores)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per measurement, fastest kept; libcst.tool always runs once (default: 1)")
    parser.add_argument("--tree", type=Path, default=None, help="reuse this tree instead of generating one")
    parser.add_argument("--keep", action="store_true", help="keep the generated tree(s) (default: deleted)")
    parser.add_argument("--skip-libcst", action="store_true", help="skip the libcst.tool run (default: run it)")
    parser.add_argument("--double", action="store_true",
                        help="also measure a tree with twice the non-matching files (default: off)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables (default: tables)")
    parser.add_argument("--sessionfix", default=None,
                        help="command that runs sessionfix (default: the executable next to this Python)")
    parser.add_argument("--libcst-command", action="append", default=None, metavar="'MODULE.CLASS [ARGS]'",
                        help="libcst.tool command, repeatable (default: LIBCST_COMMANDS in this file)")
    args = parser.parse_args(argv)
    if args.files < 1 or not 0 <= args.ratio <= 1 or args.jobs < 1 or args.repeat < 1:
        parser.error("--files, --jobs and --repeat must be >= 1 and --ratio within [0, 1]")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    console = Console(stderr=True)
    try:
        bench = Bench(args, console)
    except UsageError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        return 2
    try:
        tree, stats = bench.base_tree()
        rows = bench.run_tree(tree)
        double = bench.run_double(rows, stats) if args.double else None
    except UsageError as exc:
        console.print(f"error: {exc}", markup=False, highlight=False)
        return 2
    finally:
        bench.cleanup()
    data = report(bench, stats, rows, double)
    if args.json:
        print(json.dumps(data, indent=1))
    else:
        stdout = Console()
        if not stdout.is_terminal:
            stdout = Console(width=120)  # piped or redirected: rich would wrap at 80 columns
        print_table(stdout, data)
    every = rows + (double["rows"] if double else [])
    return 0 if all(row.ok for row in every) else 1


if __name__ == "__main__":
    sys.exit(main())
