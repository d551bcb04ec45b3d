"""One exception type for problems a user can fix, so the CLI can print them as one line."""


class InputError(ValueError):
    """Bad input named by file or field: printed as one line by the CLI, never a traceback."""
