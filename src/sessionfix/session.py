"""One run over a set of paths: configuration, validation, discovery, processing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from sessionfix.config import ProjectConfig, Settings, declared_dependencies, load_config
from sessionfix.discover import discover
from sessionfix.index import ProjectIndex
from sessionfix.model import FileResult
from sessionfix.registry import RULES
from sessionfix.rule import Rule
from sessionfix.runner import Job, process_file

#: configured names that must resolve before anything is written
HELPER_OPTIONS = (("sync-context", "sync_context"), ("sync-factory", "sync_factory"),
                  ("async-context", "async_context"))


@dataclass
class Run:
    config: ProjectConfig
    settings: Settings
    project: ProjectIndex
    files: list[Path]
    rules: Sequence[type[Rule]] = RULES
    results: list[FileResult] = field(default_factory=list)

    def display(self, path: Path) -> str:
        return self.project.display(path)

    def process(self) -> Iterator[FileResult]:
        for path in self.files:
            result = process_file(Job(path, self.display(path)), self.project, self.settings, self.rules)
            self.results.append(result)
            yield result


def prepare(paths: Sequence[Path], overrides: dict[str, object], rules: Sequence[type[Rule]] = RULES) -> Run:
    """Load config, apply CLI overrides, check helpers resolve, and find the files."""
    targets = list(paths) or [Path.cwd()]
    config = load_config(targets[0])
    settings = config.settings.with_overrides(**overrides)
    project = ProjectIndex(config.root, declared=declared_dependencies(config.pyproject))
    for option, attribute in HELPER_OPTIONS:
        value = getattr(settings, attribute)
        if value is not None:
            project.require(option, value)
    files = discover(targets, config.root, settings.exclude)
    return Run(config, settings, project, files, rules)
