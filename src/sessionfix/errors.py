"""User-facing errors: one line, a location, and exit code 2; never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the input (path, config, option); reported as one line, exit 2."""

    exit_code = 2


#: set by `--debug` (and inherited by worker processes): internal errors raise instead
DEBUG_ENV = "SESSIONFIX_DEBUG"
