"""The exception for problems a user can fix, and its variants.

`UserError` is a problem the user can fix: a bad argument, config value or
input file; the recipes print it as one line and exit 2. Everything else is
a bug (or the machine) and keeps its traceback.

Each variant is also the built-in exception Python code would raise for the
same problem, so callers that catch `ValueError`, `TypeError`,
`FileNotFoundError` or `IsADirectoryError` keep working.
"""


class UserError(ValueError):
    """A problem the user can fix: a bad argument, config value or input file.

    The recipes print it as one line and exit 2. The message names what was
    received and what was expected.
    """


class UserTypeError(UserError, TypeError):
    """A value of the wrong type, e.g. a float where an integer is needed."""


class UserFileNotFoundError(UserError, FileNotFoundError):
    """A file or directory the user named does not exist."""


class UserIsADirectoryError(UserError, IsADirectoryError):
    """The user named a directory where a file is needed."""
