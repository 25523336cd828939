from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping

import pytest

from sessionfix.rule import DEFAULT_PROJECT


def write_project(root: Path, files: Mapping[str, str] | None = None, **code: str) -> Path:
    """Lay out a small project: the default one (or `files`) plus `code` as name=source."""
    for name, text in (files if files is not None else DEFAULT_PROJECT).items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    for name, text in code.items():
        target = root / name.replace("__", "/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path)
