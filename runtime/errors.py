"""The one exception type for problems a user can fix."""


class UserError(Exception):
    """A bad path, model name, shape, weight file, ... — something the user can fix.

    The message says what is wrong and how to fix it. The CLI prints it without a traceback and exits 2.
    """
