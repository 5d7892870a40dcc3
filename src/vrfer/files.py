"""Reading the small files a user brings (profiles, --prior files): a regular file (a pipe or device is refused from
its stat, never opened), bounded in size, UTF-8 (a BOM is accepted), JSON nested at most MAX_DEPTH deep, no NaN or
Infinity, no key written twice. One wording for what a path is (`kind`), for images, videos, models and these.
No vrfer imports but errors: every module may use it (vrfer.personal.profile_check, vrfer.inference.postprocess, vrfer.inference.pipeline...)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from .errors import VrferError

MAX_DEPTH = 20                    # a profile nests 3 deep ({"weight": [[...]]}); a prior file 1 or 2


def kind(mode: int) -> str:
    return ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
            else "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "a folder" if stat.S_ISDIR(mode) else "not a plain file")


def regular_file(path, what: str) -> os.stat_result:
    """The stat of a regular file; VrferError naming the path for a missing one ("{what} not found"), a folder,
    pipe or device (said as such: "/dev/null: model file not found" misled), or one that cannot be looked at."""
    path = Path(path)
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise VrferError(f"{path}: {what} not found") from None
    except OSError as e:
        raise VrferError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        article = "an" if what[:1].lower() in "aeio" else "a"
        raise VrferError(f"{path}: not a regular file ({kind(st.st_mode)}); {article} {what} is a file")
    return st


def read_regular(path, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes; VrferError (naming the path) for anything else.
    A pipe or device is refused from its stat, never opened (opening a FIFO blocks until a writer comes)."""
    path = Path(path)
    st = regular_file(path, what)
    if st.st_size > max_bytes:
        raise VrferError(f"{path}: {st.st_size / 2 ** 20:.1f} MB; a {what} is at most {max_bytes // 2 ** 20} MB")
    try:
        with open(path, "rb", opener=lambda p, f: os.open(p, f | getattr(os, "O_NONBLOCK", 0))) as fh:
            data = fh.read(max_bytes + 1)
    except OSError as e:
        raise VrferError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise VrferError(f"{path}: over {max_bytes // 2 ** 20} MB; a {what} is at most {max_bytes // 2 ** 20} MB")
    return data


def _depth(text: str) -> int:
    """The deepest nesting of [ and { outside strings (checked before parsing: json recurses per level)."""
    depth = deepest = 0
    in_str = esc = False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def parse_json(data, where: str, what: str = "profile"):
    """JSON bytes or text -> the value; a UTF-8 BOM accepted; nesting over MAX_DEPTH, NaN/Infinity and bad
    UTF-8 refused in one line naming `where`."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise VrferError(f"{where}: damaged {what} (not UTF-8 text: byte {e.start})") from None
    elif data.startswith("\ufeff"):
        data = data[1:]
    if _depth(data) > MAX_DEPTH:
        raise VrferError(f"{where}: damaged {what} (nested over {MAX_DEPTH} deep)")

    def no_constant(name):
        raise ValueError(f"{name}: numbers must be finite")

    def once(pairs):        # a key written twice by hand: json would keep the last one silently
        keys = [k for k, _ in pairs]
        twice = next((k for k in keys if keys.count(k) > 1), None)
        if twice is not None:
            raise ValueError(f"key {twice[:40]!r} given twice")
        return dict(pairs)
    try:
        return json.loads(data, parse_constant=no_constant, object_pairs_hook=once)
    except RecursionError:      # unreachable after the depth check; kept as the last guard
        raise VrferError(f"{where}: damaged {what} (nested too deep)") from None
    except ValueError as e:
        raise VrferError(f"{where}: damaged {what} (not JSON: {e})") from None
