"""The package's one exception class for a user's bad input (imports nothing of the package).

``UserInputError`` is what config, data, methods, engine and CLI raise when what the user gave cannot work:
an unknown key or model, a missing path, an unreachable Hub, an occupied ``output_dir``. The CLI prints it as
one ``error:`` line (exit code 2); every other exception keeps its traceback, since it is a bug to report.
It subclasses ``ValueError`` so callers that catch ``ValueError`` keep working.
"""
from __future__ import annotations

__all__ = ["UserInputError"]


class UserInputError(ValueError):
    """Bad user input: the message names the bad value and what was expected."""
