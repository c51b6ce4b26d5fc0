"""The exceptions the `fesa` command turns into a one-line error instead of a traceback."""

import signal
import sys
from typing import Tuple, Type


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


def user_errors() -> Tuple[Type[Exception], ...]:
    """What a command reports as one line: FesaError, and the plugin's InputError once the plugin is loaded (it can be
    raised only then; importing it here would import torch and fairseq for ``fesa --help``)."""
    plugin = sys.modules.get("fesa_fairseq.errors")
    return (FesaError,) if plugin is None else (FesaError, plugin.InputError)
