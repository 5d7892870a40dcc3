"""Numeric options whose allowed range is part of their declaration: `add_argument(..., type=int_in(0, 8))`.

A value outside the range stops the command in argparse, before anything loads, with one line that names
the option, the value and the range (vrfer.cli.Parser.error; exit code 2). The Python API checks the same
ranges with `out_of_range`, so a value means the same on the command line and in code.
"""

from __future__ import annotations

import argparse


def range_text(lo: int | float, hi: int | float | None = None, note: str = "") -> str:
    """'0 to 8 (0: one per core)' / 'at least 10'."""
    text = f"at least {lo}" if hi is None else f"{lo} to {hi}"
    return f"{text} ({note})" if note else text


def out_of_range(value, lo, hi=None, note: str = "") -> str | None:
    """None when lo <= value <= hi (hi None: no upper end), else what is allowed, said in words."""
    if value < lo or (hi is not None and value > hi):
        return f"expected {range_text(lo, hi, note)}"
    return None


def int_in(lo: int, hi: int | None = None, note: str = ""):
    """An argparse `type`: a whole number from lo to hi (hi None: no upper end)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; "
                                             f"expected {range_text(lo, hi, note)}") from None
        why = out_of_range(value, lo, hi, note)
        if why:
            raise argparse.ArgumentTypeError(f"{value}: {why}")
        return value
    return parse


__all__ = ["int_in", "out_of_range", "range_text"]
