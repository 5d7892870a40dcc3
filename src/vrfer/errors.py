"""One exception type for every problem a user can fix (bad file, bad row, bad recipe...).

The CLI turns it into one line on stderr and a non-zero exit code, never a traceback.
"""


class VrferError(Exception):
    """A user-facing error: the message says what is wrong and where (file, row, key)."""
