"""The base of every error segbench reports to a user as one line (bad data, settings, files)."""


class SegbenchError(Exception):
    """An error caused by input the user can fix; its message says what and where."""
