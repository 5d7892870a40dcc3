"""The `vrfer` command line: one subcommand per module in vrfer.commands.

Nothing heavy is imported here or in the commands' `add_parser`: `vrfer --help` answers without loading
torch. Every problem ends as one line on stderr and an exit code from EXIT_CODES, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from .errors import VrferError

EXIT_CODES = """exit codes (every command):
  0    done
  1    done, but some inputs (images, videos, frames) could not be used; each is named on stderr
  2    stopped: a bad option or value, an unknown model, recipe or key, or an input or output that the
       command cannot go past; one line on stderr says which file, row or key
  130  interrupted (Ctrl-C)
A reader that stops early (`vrfer predict --json DIR | head -1`) ends the command quietly with 0, as grep
and other Unix tools do: what was written is what it asked for."""


class HelpFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to every option whose help text does not state its default already; wraps
    one-paragraph descriptions and keeps laid-out text (the exit codes) as it is."""

    def _fill_text(self, text, width, indent):
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.option_strings and action.default not in (None, False, argparse.SUPPRESS)
                and "default" not in text):
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """Every vrfer (sub)command parser: defaults in the help, and the exit-code rule below it."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        kwargs.setdefault("epilog", EXIT_CODES)
        super().__init__(*args, **kwargs)

    def error(self, message):
        """A bad option or value: one line naming it (argparse would print the whole usage first)."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    p = Parser(prog="vrfer", description="Facial expressions of people wearing VR headsets "
               "(the model sees the lower half of the face). `vrfer COMMAND --help` explains each command.")
    p.add_argument("--version", action="version", version=f"vrfer {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in _command_modules():
        mod.add_parser(sub)
    return p


def _command_modules():
    import importlib
    import pkgutil

    from . import commands
    return [importlib.import_module(f"vrfer.commands.{m.name}")      # one module a command; _name: shared parts
            for m in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name) if not m.name.startswith("_")]


_NEGATIVE_BOX = re.compile(r"^-\d")


def _join_negative_values(argv: list[str]) -> list[str]:
    """`--face -10,-10,100,100` -> `--face=-10,-10,100,100`: argparse would take the box for an option."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--face" and i + 1 < len(argv) and _NEGATIVE_BOX.match(argv[i + 1]):
            out.append(f"--face={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out


def _stdout_gone() -> None:
    """The reader of stdout went away (`| head`): stop writing, and let Python exit without a second error
    (its final flush of stdout would raise again)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def main(argv=None) -> int:
    argv = _join_negative_values(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:       # an unknown option belongs to the command's parser: point at its --help, not vrfer's
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    if sys.stdout is None:  # started with stdout closed (`>&-`): results would be lost
        print("vrfer: error: stdout is closed; results have nowhere to go (redirect it to a file)",
              file=sys.stderr)
        return 2
    try:
        code = args.fn(args)
        sys.stdout.flush()
        return code
    except VrferError as e:
        print(f"vrfer: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader has all it wants (`| head`): stop quietly, as grep does
        _stdout_gone()
        return 0
    except KeyboardInterrupt:
        print("vrfer: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("vrfer: error: out of memory", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: still one line, unless VRFER_DEBUG asks for the traceback
        if os.environ.get("VRFER_DEBUG"):
            raise
        print(f"vrfer: error: internal error {type(e).__name__}: {e} (run with VRFER_DEBUG=1 for the "
              "traceback, and please report it)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
