"""The plugin's one exception: bad input it found while fairseq loads a task, a model or a dataset.

The plugin imports nothing of the application (``fesa``); the ``fesa`` command reports an ``InputError`` as it
reports its own errors: one line, exit code 2 (``fesa.errors.user_errors``).
"""


class InputError(Exception):
    """Bad input or a failed precondition, with a message that names the file and the fix."""

    exit_code = 2
