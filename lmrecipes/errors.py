"""The error of bad input (a recipe, its data or its output folder), and how a script reports it: in one line.

Errors raised on purpose for something the user can fix are `RecipeError`s; a script run under
`one_line_errors()` prints them as one line naming the field, file or row and exits with status 2. Every other
exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

EXIT_BAD_INPUT = 2  # argparse's status for a bad command line: ours is the same kind of failure


class RecipeError(ValueError):
    """A recipe, its data or its output folder cannot be used as written; the message says which and why."""


@contextmanager
def one_line_errors() -> Iterator[None]:
    """End the script with `error: <message>` and status 2 on a RecipeError, instead of a traceback."""
    try:
        yield
    except RecipeError as error:
        print(f"error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_BAD_INPUT) from None


class MissingFileError(RecipeError, FileNotFoundError):
    """A file or folder the recipe names does not exist."""
