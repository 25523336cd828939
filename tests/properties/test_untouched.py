"""Property: a file with nothing to fix comes out byte-identical, with no error, whatever
valid Python it holds (random programs from hypothesmith)."""

from __future__ import annotations

from pathlib import Path

import hypothesmith
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionfix.config import load_config
from sessionfix.index import ProjectIndex
from sessionfix.runner import Job, process_source
from tests.conftest import write_project

_STATE: dict[str, object] = {}


def _project(tmp_path_factory: object) -> tuple[Path, ProjectIndex]:
    if "root" not in _STATE:
        root = write_project(tmp_path_factory.mktemp("untouched"))  # type: ignore[attr-defined]
        _STATE["root"], _STATE["index"] = root, ProjectIndex(root)
    return _STATE["root"], _STATE["index"]  # type: ignore[return-value]


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much])
@given(source=hypothesmith.from_grammar(), newline=st.sampled_from(["\n", "\r\n"]))
def test_programs_without_matches_are_untouched(tmp_path_factory: object, source: str, newline: str) -> None:
    root, index = _project(tmp_path_factory)
    raw = source.replace("\n", newline).encode("utf-8")
    settings_ = load_config(root).settings
    result = process_source(raw, Job(root / "random_module.py", "random_module.py"), index, settings_)
    assert result.error is None or "syntax error" in result.error
    assert result.new_source is None
    assert not result.changes
