"""Output paths checked before the work starts, so a bad --out fails in one line and not after an hour.

The check creates the folders the user named (the output goes there anyway) and probes them with a
temporary file that is removed at once; nothing else is written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import VrferError


def output_dir(path, option: str = "--out", create: bool = True) -> Path:
    """A folder that results can be written into. create=False: only check that it could be created
    (for commands that may still fail before writing anything: no empty folder is left behind)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise VrferError(f"{option} {path}: is a file, not a folder")
    try:
        if create or path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=path):
                pass
        else:
            base = path.absolute()
            while not base.exists():
                base = base.parent
            if not base.is_dir():
                raise VrferError(f"{option} {path}: {base} is a file, not a folder")
            os.rmdir(tempfile.mkdtemp(dir=base))   # a folder can be made here
    except OSError as e:
        raise VrferError(f"{option} {path}: cannot write there ({e.strerror or e})") from None
    return path


def output_file(path, option: str = "--out", suffix: str | None = None, what: str = "") -> Path:
    """A file path that can be written (its folder created if missing); an existing folder is refused, and with
    `suffix` a name with another ending (a profile written over face.png was a photo lost)."""
    path = Path(path)
    if suffix and path.suffix.lower() != suffix:
        raise VrferError(f"{option} {path}: {what or 'the output'} is a {suffix} file; give a name ending in {suffix}")
    if path.is_dir():
        raise VrferError(f"{option} {path}: is a folder; give a file name")
    output_dir(path.parent if str(path.parent) else Path("."), option=f"{option} {path}: folder")
    if path.exists() and not os.access(path, os.W_OK):
        raise VrferError(f"{option} {path}: exists and cannot be overwritten")
    return path


def public_mode(path) -> None:
    """Give a file written through a private temporary file the permissions the user's umask asks for."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def plural(n: int, one: str, many: str | None = None) -> str:
    """'1 person', '4 people'; '1 face', '2 faces': counts in messages."""
    return f"{n} {one if n == 1 else (many or ('people' if one == 'person' else one + 's'))}"
