"""One exception type for every problem a user can fix (bad file, bad row, bad recipe...).

The CLI turns it into one line on stderr and a non-zero exit code, never a traceback.
"""

import contextlib
import os
import sys


class VrferError(Exception):
    """A user-facing error: the message says what is wrong and where (file, row, key)."""


@contextlib.contextmanager
def native_stderr_silenced():
    """Point file descriptor 2 at /dev/null for the block. Native code writes its own complaints straight
    to it (FFmpeg inside OpenCV: "moov atom not found"...; the TorchScript ONNX exporter: a whole graph);
    vrfer reports the problem in one line of its own. Python's stderr is flushed first and is unaffected
    outside the block; where fd 2 cannot be redirected, the block runs as it is."""
    saved = None
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        if saved is not None:
            os.close(saved)
        saved = None
    try:
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)


class NoFaceError(VrferError):
    """No face was found in an image (face="detect"): predict reports it for that item, a video frame
    or a server frame simply has no face."""


class ImageTooLargeError(VrferError):
    """An image over the pixel limit, refused before it is decoded."""
