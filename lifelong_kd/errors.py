"""The one exception type for input a user can fix."""


class UsageError(Exception):
    """Bad input, detected before or during a run; the message names the fix.

    The CLI prints it as one line and exits with status 2.
    """
