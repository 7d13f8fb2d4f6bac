"""Exit codes and the one error type that the CLI turns into a single line."""

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes; CI jobs branch on these. 130 / 143: SIGINT / SIGTERM (128 + the signal)."""

    OK = 0
    INTERNAL = 1
    USAGE = 2
    ROBUSTNESS_FAILED = 3
    INCONCLUSIVE = 4
    DIVERGED = 5
    INTERRUPTED = 130
    TERMINATED = 143


class UserError(Exception):
    """A problem the user can fix (bad recipe, missing model, no access).

    The CLI prints ``error: <message>`` on one line and exits with ``exit_code``;
    anything else is an internal error and keeps its traceback.
    """

    def __init__(self, message: str, exit_code: int = ExitCode.USAGE):
        super().__init__(message)
        self.exit_code = int(exit_code)
