"""The two ways a command can fail, and the warnings the CLI shows as one line.

- `UserError`: something the user can fix (a bad path, model name, shape, option). The CLI prints it and exits 2.
- `CheckFailed`: a check onebyone ran failed — an artifact out of its tolerance of the torch reference, a rewrite
  that changed the outputs, int8 kernels that compute something other than the file. The CLI prints it and exits
  1. Nothing is half-written when either is raised.
"""


class UserError(Exception):
    """A bad path, model name, shape, weight file, ... — something the user can fix.

    The message says what is wrong and how to fix it. The CLI prints it without a traceback and exits 2.
    """


class CheckFailed(Exception):
    """A check failed; the message names the artifact, what was measured and the bound. The CLI exits 1."""


class OnebyoneWarning(UserWarning):
    """Something the user should know that does not stop the work; the CLI prints it as one `warning:` line."""


class Int8OverflowWarning(OnebyoneWarning):
    """A file with INT8 weights that can overflow this CPU's int8 dot products was opened to run on it."""
