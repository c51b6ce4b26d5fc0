"""The one exception the `fesa` command turns into a one-line error instead of a traceback."""


class FesaError(Exception):
    """Bad input or a failed precondition, with a message that names the file and the fix."""
