"""The one exception type for problems a user can fix, and the warnings the CLI shows as one line."""


class UserError(Exception):
    """A bad path, model name, shape, weight file, ... — something the user can fix.

    The message says what is wrong and how to fix it. The CLI prints it without a traceback and exits 2.
    """


class Int8OverflowWarning(UserWarning):
    """A file with INT8 weights that can overflow this CPU's int8 dot products was opened to run on it."""
