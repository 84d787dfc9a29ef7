"""The project's own error types.

Every failure caused by bad input (params, archives, checkpoints, weights) is raised as a
`CifarlabError` subclass whose message is ONE line naming the bad value and what is allowed.
Stage entry points turn it into that line on stderr and exit code 2 (see `cifarlab.core.stage_main`).
"""

import re

ANSI_ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-_]")  # terminal control sequences


def one_line(obj: object, limit: int | None = None) -> str:
    """`str(obj)` with its whitespace runs (line breaks included) squeezed to single spaces, cut
    to `limit` characters ("..." marks a cut); an exception with no message gives its type name."""
    text = " ".join(ANSI_ESCAPE.sub("", str(obj)).split())
    if not text and isinstance(obj, BaseException):
        text = type(obj).__name__
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


class CifarlabError(Exception):
    """Base class: a clear, one-line, user-facing failure."""

    exit_code = 1

    def __init__(self, message: str = "", *args: object) -> None:
        # One line whatever the message quotes (a key named "a\nb", a file's garbled text):
        # line breaks are shown escaped, as repr() would.
        message = str(message).replace("\r", "\\r").replace("\n", "\\n")
        message = ANSI_ESCAPE.sub("", message)  # a quoted library message's colours, cursor moves
        super().__init__(message, *args)


class ParamsError(CifarlabError):
    """params.yaml holds an unknown key, a wrong type or an out-of-range value."""

    exit_code = 2


class DataError(CifarlabError):
    """The CIFAR-10 archive or a prepared file is missing, corrupt or malformed."""


class FetchError(DataError):
    """The archive could not be downloaded/copied or failed its checksum."""


class WeightsError(CifarlabError):
    """Pretrained weights are needed but neither a local file nor the torch hub cache has them."""
