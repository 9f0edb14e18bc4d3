"""The package's one exception class for a user's bad input (imports nothing of the package).

``UserInputError`` is what config, data, methods, engine and CLI raise when what the user gave cannot work:
an unknown key or model, a missing path, an unreachable Hub, an occupied ``output_dir``. The CLI prints it as
one ``error:`` line (exit code 2); every other exception keeps its traceback, since it is a bug to report.
It subclasses ``ValueError`` so callers that catch ``ValueError`` keep working.
"""
from __future__ import annotations

import os

__all__ = ["UserInputError", "hub_error"]


class UserInputError(ValueError):
    """Bad user input: the message names the bad value and what was expected."""


def hub_error(err: BaseException, what: str) -> UserInputError | None:
    """A :class:`UserInputError` for a Hub that cannot be reached or has no such repository, else None."""
    from huggingface_hub.errors import EntryNotFoundError, OfflineModeIsEnabled, RepositoryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if isinstance(err, RepositoryNotFoundError):
        return UserInputError(f"{what!r}: no such repository on the Hugging Face Hub (or it is private: log in "
                              "with `hf auth login`)")
    if isinstance(err, (ConnectionError, OfflineModeIsEnabled, EntryNotFoundError)) or (
            type(err).__name__ in ("ConnectError", "ConnectTimeout", "DatasetNotFoundError")):
        why = "HF_HUB_OFFLINE=1 is set and it is not in the local cache" if offline else (
            "no connection, or it is not there")
        return UserInputError(f"cannot load {what!r} from the Hugging Face Hub ({why}: {type(err).__name__}); "
                              "check the id and the connection, or give a local path")
    return None
