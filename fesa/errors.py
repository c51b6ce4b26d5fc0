"""The exceptions the `fesa` command turns into a one-line error instead of a traceback."""


class FesaError(Exception):
    """Bad input or a failed precondition, with a message that names the file and the fix (exit code 2)."""

    exit_code = 2


class StageFailed(FesaError):
    """A pipeline stage's command failed; its message names the command and its log (exit code 1)."""

    exit_code = 1
