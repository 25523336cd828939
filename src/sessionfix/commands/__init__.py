"""Extra CLI commands, one module each; every module defines `register(app)`.

cli.py calls `register` on each module found here, so a command is added by adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil

import typer


def register_all(app: typer.Typer) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(app)
