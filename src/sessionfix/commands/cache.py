"""`sessionfix cache clear`: remove `.sessionfix_cache/` at the project root."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

cache_app = typer.Typer(help="Manage the results cache in .sessionfix_cache/ at the project root.",
                        no_args_is_help=True)


@cache_app.command("clear")
def clear(
    path: Annotated[Optional[Path], typer.Argument(help="A path inside the project (default: the current directory).")] = None,
) -> None:
    """Remove the cache of the project that holds PATH."""
    from sessionfix.cache import CACHE_DIR, clear as clear_cache
    from sessionfix.cli import _consoles, _fail
    from sessionfix.config import load_config
    from sessionfix.errors import UserError

    out, err = _consoles(False)
    try:
        target = path or Path.cwd()
        if not target.exists():
            raise UserError(f"{target}: no such file or directory")
        root = load_config(target).root
        removed = clear_cache(root)
    except UserError as error:
        raise _fail(err, error, False)
    except OSError as exc:
        raise _fail(err, UserError(f"{root / CACHE_DIR}: cannot remove ({exc.strerror})"), False)
    out.print(f"removed {root / CACHE_DIR} ({removed} file(s))" if removed else f"no cache at {root / CACHE_DIR}",
              markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
