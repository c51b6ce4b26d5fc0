"""The exceptions the `fesa` command turns into a one-line error instead of a traceback."""

import signal


class FesaError(Exception):
    """Bad input or a failed precondition, with a message that names the file and the fix (exit code 2)."""

    exit_code = 2


class StageFailed(FesaError):
    """A pipeline stage's command failed; its message names the command and its log (exit code 1)."""

    exit_code = 1


class Stopped(Exception):
    """fesa run was asked to stop by SIGINT or SIGTERM (``fesa.stop``); exit code 128 + the signal's number (130, 143).

    Not a FesaError: a stop ends the whole run, where a stage's failure ends only its fold."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name}: no stage is left running or locked, and none is marked complete "
            "that did not complete; run the same command again to resume"
        )
