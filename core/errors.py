"""The root of Rekindle's own exceptions: anything the user can fix from the
message. The CLI prints these as one line (exit code 2) instead of a traceback."""


class RekindleError(Exception):
    """A failure whose message names the bad value and what was expected."""
