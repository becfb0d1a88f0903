"""The two ways a command can fail, and the warnings the CLI shows as one line.

- `UserError`: something the user can fix (a bad path, model name, shape, option). The CLI prints it and exits 2.
- `CheckFailed`: a check onebyone ran failed — an artifact out of its tolerance of the torch reference, a rewrite
  that changed the outputs, int8 kernels that compute something other than the file. The CLI prints it and exits
  1. Nothing is half-written when either is raised.

The stages are called from Python as well as from the command line, so a message names an option through
`option(name, value)`: a Python caller reads `calib=DATA`, the CLI reader `--calib DATA` (`UserError.spelled`).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_MARK, _VALUE = "\x1f", "\x1e"
_OPTION = re.compile(f"{_MARK}(\\w+)(?:{_VALUE}([^{_MARK}]*))?{_MARK}")


def option(name: str, value: object = None) -> str:
    """An option (an options-object field, the CLI flag's dest) as an error message names it, with its value."""
    return f"{_MARK}{name}{'' if value is None else _VALUE + str(value)}{_MARK}"


def python_spelling(name: str, value: str | None) -> str:
    return name if value is None else f"{name}={value}"


class UserError(Exception):
    """A bad path, model name, shape, weight file, ... — something the user can fix.

    The message says what is wrong and how to fix it. The CLI prints it without a traceback and exits 2.
    """

    def __str__(self) -> str:
        return self.spelled(python_spelling)

    def spelled(self, spelling: Callable[[str, str | None], str]) -> str:
        """The message with each `option(...)` written by `spelling(name, value)`."""
        return _OPTION.sub(lambda found: spelling(found.group(1), found.group(2)), super().__str__())


class CheckFailed(Exception):
    """A check failed; the message names the artifact, what was measured and the bound. The CLI exits 1."""


class OnebyoneWarning(UserWarning):
    """Something the user should know that does not stop the work; the CLI prints it as one `warning:` line."""


class Int8OverflowWarning(OnebyoneWarning):
    """A file with INT8 weights that can overflow this CPU's int8 dot products was opened to run on it."""
