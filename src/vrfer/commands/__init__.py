"""CLI subcommands. Each module here exposes `add_parser(subparsers)`; vrfer.cli loads them all.

The parser's `fn(args) -> int` runs the command; raising VrferError gives one clean error line.
"""
